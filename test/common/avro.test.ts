import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { AvroCodec, SCHEMA_HEADER } from '../../services/common/avro.ts';
import type { PromptRequest } from '../../services/common/messages.ts';
import { SCHEMAS_DIR } from '../../services/common/paths.ts';

const request: PromptRequest = {
  jobId: 'job1',
  row: 3,
  promptIndex: 1,
  promptCount: 2,
  prompt: 'a red fox in snow',
  seed: 2 ** 40 + 7,
  width: null,
  height: 64,
  steps: null,
  guidance: 3.5,
  rowJson: '{"prompt":"a red fox in snow"}',
  createdAt: 1_700_000_000_000,
};

test('round trip with the fingerprint header', () => {
  const codec = new AvroCodec();
  const { value, headers } = codec.encode('PromptRequest', request);
  assert.match(headers[SCHEMA_HEADER] ?? '', /^PromptRequest@[0-9a-f]{16}$/);
  assert.deepEqual({ ...codec.decode('PromptRequest', value, headers) }, request);
  assert.throws(() => codec.decode('ImageResult', value, headers), /expected a ImageResult message, got PromptRequest/);
  assert.throws(() => codec.decode('PromptRequest', value, {}), /without a t2i-schema header/);
  assert.throws(() => codec.decode('PromptRequest', value, { [SCHEMA_HEADER]: 'PromptRequest@0000' }), /unknown writer schema/);
});

test('a message written with an older schema version is read by a newer reader', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'schemas-'));
  for (const f of fs.readdirSync(SCHEMAS_DIR)) fs.copyFileSync(path.join(SCHEMAS_DIR, f), path.join(dir, f));
  const oldWriter = new AvroCodec(dir);
  const { value, headers } = oldWriter.encode('PromptRequest', request);
  // v2 adds a field with a default: readers of v2 must still read v1 messages.
  const v1 = JSON.parse(fs.readFileSync(path.join(SCHEMAS_DIR, 'PromptRequest.v1.avsc'), 'utf8')) as { fields: unknown[] };
  v1.fields.push({ name: 'priority', type: 'int', default: 5 });
  fs.writeFileSync(path.join(dir, 'PromptRequest.v2.avsc'), JSON.stringify(v1));
  const newReader = new AvroCodec(dir);
  assert.notEqual(newReader.fingerprint('PromptRequest'), oldWriter.fingerprint('PromptRequest'));
  const decoded = newReader.decode('PromptRequest', value, headers) as PromptRequest & { priority: number };
  assert.equal(decoded.priority, 5);
  assert.equal(decoded.prompt, request.prompt);
  assert.equal(decoded.seed, request.seed);
});
