import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { AvroCodec } from '../../services/common/avro.ts';
import { MessageProducer } from '../../services/common/message-producer.ts';
import { SCHEMAS_DIR } from '../../services/common/paths.ts';
import { createTestEnv, randomName } from '../helpers/env.ts';
import { producerFor, startSink, waitFor } from './sink-harness.ts';
import { buildJob, dataMessages, sendEvent } from './synthetic-job.ts';

/** schemas/ plus an ImageResult version newer than any this code ships: what a rolling upgrade looks like. */
function newerSchemaDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 't2i-schemas-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const file of fs.readdirSync(SCHEMAS_DIR)) fs.copyFileSync(path.join(SCHEMAS_DIR, file), path.join(dir, file));
  const versions = fs.readdirSync(SCHEMAS_DIR).filter((f) => f.startsWith('ImageResult.v'));
  const latest = versions.sort().at(-1)!;
  const schema = JSON.parse(fs.readFileSync(path.join(SCHEMAS_DIR, latest), 'utf8')) as { fields: unknown[] };
  schema.fields.push({ name: 'futureField', type: ['null', 'string'], default: null });
  fs.writeFileSync(path.join(dir, `ImageResult.v${versions.length + 1}.avsc`), JSON.stringify(schema));
  return dir;
}

test('a result the sink cannot decode (newer schema) is never skipped: the partition pauses, the job waits, an upgraded sink completes it (issue 15, item 1)', async () => {
  const env = await createTestEnv({ promptPartitions: 1 });
  const producer = await producerFor(env);
  const newCodec = new AvroCodec(newerSchemaDir());
  const newProducer = new MessageProducer(env.kafka, newCodec);
  await newProducer.connect();
  after(() => newProducer.disconnect());

  const job = buildJob('job-upgrade', [{ row: 1, prompts: ['a', 'b'] }]);
  const [first, second] = dataMessages(job);
  await sendEvent(producer, env.topics, job.started);
  await sendEvent(producer, env.topics, job.produced);
  // Row 1's first result written by a newer worker, its second by an old one, same partition.
  assert.ok(first?.kind === 'result' && second?.kind === 'result');
  for (const [p, value] of [
    [newProducer, first.value],
    [producer, second.value],
  ] as const) {
    await p.producer.send({
      topic: env.topics.results,
      acks: -1,
      messages: [{ ...p.encode('ImageResult', { key: 'job-upgrade/1', value }), partition: 0 }],
    });
  }

  const group = randomName('sink-');
  const old = await startSink(env, { groupId: group });
  await waitFor(async () => (old.sink.stats().blockedPartitions === 1 ? true : undefined), 30_000, 'the old sink never blocked');
  assert.equal(old.sink.isReady(), false, 'not ready while blocked');
  assert.equal(await old.store.head('jobs/job-upgrade/manifest.json'), undefined, 'the job is not completed one result short');
  await old.sink.close();
  const admin = env.kafka.admin();
  await admin.connect();
  const [committed] = await admin.fetchOffsets({ groupId: group, topics: [env.topics.results] });
  await admin.disconnect();
  const partition0 = committed?.partitions.find((p) => p.partition === 0);
  assert.ok(Number(partition0?.offset ?? '-1') <= 0, `nothing committed past the undecodable message (${JSON.stringify(committed)})`);

  // The upgraded sink (knows the newer schema) takes over from that offset and completes the job.
  const upgraded = await startSink(env, { groupId: group, codec: newCodec });
  const manifest = await upgraded.completion('job-upgrade');
  assert.equal(manifest.counts.images, 2);
});
