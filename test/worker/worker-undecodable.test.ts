import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { AvroCodec } from '../../services/common/avro.ts';
import { MessageProducer } from '../../services/common/message-producer.ts';
import { SCHEMAS_DIR } from '../../services/common/paths.ts';
import type { PromptRequest } from '../../services/common/messages.ts';
import { createTestEnv, randomName } from '../helpers/env.ts';
import { topicSize } from '../helpers/topic-reader.ts';
import { startTestWorker } from '../helpers/worker.ts';

test('a prompt the worker cannot decode (newer schema) is neither dead-lettered nor skipped: the partition pauses and readiness goes false (issue 15, item 1)', async () => {
  const t = await createTestEnv({ promptPartitions: 1 });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 't2i-schemas-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const file of fs.readdirSync(SCHEMAS_DIR)) fs.copyFileSync(path.join(SCHEMAS_DIR, file), path.join(dir, file));
  const latest = fs
    .readdirSync(SCHEMAS_DIR)
    .filter((f) => f.startsWith('PromptRequest.v'))
    .sort();
  const schema = JSON.parse(fs.readFileSync(path.join(SCHEMAS_DIR, latest.at(-1)!), 'utf8')) as { fields: unknown[] };
  schema.fields.push({ name: 'futureField', type: ['null', 'string'], default: null });
  fs.writeFileSync(path.join(dir, `PromptRequest.v${latest.length + 1}.avsc`), JSON.stringify(schema));

  const request = (row: number): PromptRequest => ({
    jobId: 'job-new',
    row,
    promptIndex: 0,
    promptCount: 1,
    prompt: `prompt ${row}`,
    seed: row,
    width: null,
    height: null,
    steps: null,
    guidance: null,
    rowJson: '{}',
    createdAt: Date.now(),
  });
  const newer = new MessageProducer(t.kafka, new AvroCodec(dir));
  const current = new MessageProducer(t.kafka, new AvroCodec());
  for (const p of [newer, current]) await p.connect();
  after(() => Promise.all([newer.disconnect(), current.disconnect()]));
  await newer.send(t.topics.prompts, 'PromptRequest', [{ key: 'job-new/1', value: request(1) }]);
  await current.send(t.topics.prompts, 'PromptRequest', [{ key: 'job-new/2', value: request(2) }]);

  const { worker, stop } = await startTestWorker(t.config, { groupId: randomName('workers-') });
  after(stop);
  const blocked = async () => (await worker.metrics.blockedPartitions.get()).values[0]?.value ?? 0;
  const deadline = Date.now() + 60_000;
  while ((await blocked()) !== 1) {
    assert.ok(Date.now() < deadline, 'the worker never paused the partition');
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(worker.isReady(), false);
  assert.equal(await topicSize(t.kafka, t.topics.errors), 0, 'nothing dead-lettered');
  assert.equal(await topicSize(t.kafka, t.topics.results), 0, 'the prompt after it waits too (order kept)');
});
