import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import avro from 'avsc';
import { AvroCodec, SCHEMA_HEADER } from '../../services/common/avro.ts';
import { jobEvent, type PromptRequest } from '../../services/common/messages.ts';
import { SCHEMAS_DIR } from '../../services/common/paths.ts';
import { sampleRequest } from '../helpers/sample-messages.ts';

const request: PromptRequest = sampleRequest;

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

test('times are timestamp-millis, and adding the logical type left every wire fingerprint as it was', async () => {
  const strip = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(strip);
    if (node && typeof node === 'object') {
      const copy = Object.fromEntries(
        Object.entries(node)
          .filter(([k]) => k !== 'logicalType')
          .map(([k, v]) => [k, strip(v)]),
      );
      return copy.type === 'long' && Object.keys(copy).length === 1 ? 'long' : copy;
    }
    return node;
  };
  let timeFields = 0;
  for (const file of fs.readdirSync(SCHEMAS_DIR).filter((f) => f.endsWith('.avsc'))) {
    const schema = JSON.parse(fs.readFileSync(path.join(SCHEMAS_DIR, file), 'utf8')) as { fields: { name: string; type: unknown }[] };
    for (const field of schema.fields.filter((f) => f.name === 'createdAt' || f.name === 'at')) {
      assert.deepEqual(field.type, { type: 'long', logicalType: 'timestamp-millis' }, `${file}: ${field.name}`);
      timeFields++;
    }
    const fingerprint = (s: unknown) =>
      avro.Type.forSchema(s as avro.Schema)
        .fingerprint('sha256')
        .toString('hex');
    assert.equal(fingerprint(schema), fingerprint(strip(schema)), `${file}: the logical type is not part of the wire identity`);
  }
  assert.ok(timeFields >= 5, `${timeFields} time fields`);
});

test('JobEvent v2: an event type added by a newer writer reads as unknown, and v1 events still decode', () => {
  const v2 = JSON.parse(fs.readFileSync(path.join(SCHEMAS_DIR, 'JobEvent.v2.avsc'), 'utf8')) as {
    fields: { name: string; type: { symbols?: string[] } }[];
  };
  v2.fields.find((f) => f.name === 'type')!.type.symbols!.push('paused');
  // What any Avro reader does with a v2 reader schema and a newer writer's (a registry consumer, or t2i
  // code older than the schema files it is given): schema resolution falls back to the enum default.
  const writer = avro.Type.forSchema(v2 as unknown as avro.Schema);
  const reader = avro.Type.forSchema(JSON.parse(fs.readFileSync(path.join(SCHEMAS_DIR, 'JobEvent.v2.avsc'), 'utf8')) as avro.Schema);
  const event = { ...jobEvent('j', 'started', { at: 1 }), type: 'paused' };
  const resolved = reader.fromBuffer(writer.toBuffer(event), reader.createResolver(writer)) as { type: string };
  assert.equal(resolved.type, 'unknown');

  const v1Only = fs.mkdtempSync(path.join(os.tmpdir(), 'schemas-'));
  for (const f of fs.readdirSync(SCHEMAS_DIR).filter((f) => f !== 'JobEvent.v2.avsc'))
    fs.copyFileSync(path.join(SCHEMAS_DIR, f), path.join(v1Only, f));
  const codec = new AvroCodec();
  const older = new AvroCodec(v1Only);
  const old = older.encode('JobEvent', { ...event, type: 'completed' });
  assert.notEqual(old.headers[SCHEMA_HEADER], codec.fingerprint('JobEvent'), 'v1 and v2 differ on the wire');
  assert.equal(codec.decode('JobEvent', old.value, old.headers).type, 'completed');
});
