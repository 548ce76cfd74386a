/**
 * ensureTopics at a seam (a scripted admin): a broker that answers "does not host this topic-partition"
 * while it creates topics (seen on a busy shared broker) is asked again; other errors are not retried.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Admin } from 'kafkajs';
import { topicNames } from '../../services/common/config.ts';
import { ensureTopics } from '../../services/common/kafka.ts';

function protocolError(type: string): Error {
  return Object.assign(new Error(`broker says ${type}`), { type, retriable: true });
}

/** An admin whose createTopics fails with `failures` first, then creates what it is asked for. */
function scriptedAdmin(failures: Error[]): { admin: Admin; created: string[]; calls: () => number } {
  const created: string[] = [];
  let calls = 0;
  const admin = {
    listTopics: async () => [...created],
    createTopics: async ({ topics }: { topics: { topic: string }[] }) => {
      calls++;
      const failure = failures.shift();
      if (failure) {
        created.push(topics[0]!.topic); // the broker made one before it failed
        throw failure;
      }
      created.push(...topics.map((t) => t.topic));
      return true;
    },
  } as unknown as Admin;
  return { admin, created, calls: () => calls };
}

test('ensureTopics asks again after "does not host this topic-partition", creating only what is still missing', async () => {
  const { admin, created, calls } = scriptedAdmin([protocolError('UNKNOWN_TOPIC_OR_PARTITION')]);
  const names = await ensureTopics(admin, 'p.', { promptPartitions: 2 });
  assert.deepEqual(names, topicNames('p.'));
  assert.equal(calls(), 2);
  assert.deepEqual([...created].sort(), Object.values(topicNames('p.')).sort(), 'every topic created once');
});

test('ensureTopics does not retry other errors', async () => {
  const { admin, calls } = scriptedAdmin([protocolError('TOPIC_AUTHORIZATION_FAILED')]);
  await assert.rejects(ensureTopics(admin, 'p.', { promptPartitions: 2 }), /TOPIC_AUTHORIZATION_FAILED/);
  assert.equal(calls(), 1);
});
