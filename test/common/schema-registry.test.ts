/**
 * The Confluent wire format in the codec and the registry's REST client, against a small registry served
 * in the test (the seam). The round trip through a real registry, read back by an independent client,
 * is test/common/schema-registry-interop.test.ts.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, test } from 'node:test';
import avro from 'avsc';
import { AvroCodec, SCHEMA_HEADER, confluentSubjects, openCodec } from '../../services/common/avro.ts';
import { loadConfig, redactConfig } from '../../services/common/config.ts';
import { T2iError } from '../../services/common/errors.ts';
import type { JobEvent, PromptRequest } from '../../services/common/messages.ts';
import { SCHEMAS_DIR } from '../../services/common/paths.ts';
import { HttpSchemaRegistry, frameConfluent, unframeConfluent, type SchemaRegistry } from '../../services/common/schema-registry.ts';
import { sampleRequest } from '../helpers/sample-messages.ts';

const request: PromptRequest = sampleRequest;

/** A registry in the test: the REST API of a Confluent registry, in memory, counting requests. */
async function fakeRegistry(options: { user?: string; password?: string } = {}) {
  const schemas: string[] = [];
  const subjects = new Map<string, number[]>();
  const requests: { method: string; url: string; contentType: string | undefined; authorization: string | undefined }[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      requests.push({
        method: req.method ?? '',
        url: req.url ?? '',
        contentType: req.headers['content-type'],
        authorization: req.headers.authorization,
      });
      const reply = (status: number, payload: unknown) => {
        res.writeHead(status, { 'content-type': 'application/vnd.schemaregistry.v1+json' });
        res.end(JSON.stringify(payload));
      };
      if (options.user !== undefined) {
        const expected = `Basic ${Buffer.from(`${options.user}:${options.password}`).toString('base64')}`;
        if (req.headers.authorization !== expected) return reply(401, { error_code: 401, message: 'Unauthorized' });
      }
      const register = /^\/subjects\/([^/]+)\/versions$/.exec(req.url ?? '');
      if (req.method === 'POST' && register) {
        const schema = (JSON.parse(body) as { schema: string }).schema;
        let id = schemas.indexOf(schema);
        if (id < 0) id = schemas.push(schema) - 1;
        const subject = decodeURIComponent(register[1]!);
        subjects.set(subject, [...(subjects.get(subject) ?? []), id + 1]);
        return reply(200, { id: id + 1 });
      }
      const byId = /^\/schemas\/ids\/(\d+)$/.exec(req.url ?? '');
      if (req.method === 'GET' && byId) {
        const schema = schemas[Number(byId[1]) - 1];
        return schema === undefined ? reply(404, { error_code: 40403, message: 'Schema not found' }) : reply(200, { schema });
      }
      reply(404, { error_code: 404, message: 'HTTP 404 Not Found' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  /** Registers a schema as another writer would, returning its id. */
  const add = (schema: string): number => schemas.push(schema);
  return { url, requests, subjects, add };
}

test('the frame is magic byte 0 and the id as 4 bytes big-endian, then the Avro bytes unchanged', () => {
  const payload = Buffer.from([9, 8, 7]);
  const framed = frameConfluent(0x01020304, payload);
  assert.deepEqual([...framed], [0, 1, 2, 3, 4, 9, 8, 7]);
  assert.deepEqual(unframeConfluent(framed), { schemaId: 0x01020304, payload });
  assert.equal(unframeConfluent(Buffer.from([1, 0, 0, 0, 1, 5])), undefined, 'another magic byte');
  assert.equal(unframeConfluent(Buffer.from([0, 0, 0])), undefined, 'too short for a header');
});

test('confluent mode registers each newest schema under <topic>-value once, then encodes without the network', async () => {
  const registry = await fakeRegistry();
  const codec = new AvroCodec(SCHEMAS_DIR, { registry: new HttpSchemaRegistry({ url: registry.url }) });
  assert.equal(codec.wireFormat, 'header');
  await codec.useConfluentFormat(confluentSubjects('t2i.'));
  assert.equal(codec.wireFormat, 'confluent');
  assert.deepEqual([...registry.subjects.keys()].sort(), ['t2i.errors-value', 't2i.jobs-value', 't2i.prompts-value', 't2i.results-value']);
  const registered = registry.requests.length;
  assert.equal(registered, 4);
  for (const r of registry.requests) assert.equal(r.contentType, 'application/vnd.schemaregistry.v1+json');

  const { value, headers } = codec.encode('PromptRequest', request);
  assert.deepEqual(headers, {}, 'no t2i-schema header: the value carries its schema id');
  assert.deepEqual(codec.schemaHeaders('PromptRequest'), {});
  const framed = unframeConfluent(value);
  assert.ok(framed, 'Confluent framing');
  assert.deepEqual(registry.subjects.get('t2i.prompts-value'), [framed.schemaId]);
  // The payload is plain Avro of the registered schema, as any Confluent deserializer reads it.
  const registeredSchema = JSON.parse(
    (await new HttpSchemaRegistry({ url: registry.url }).schemaById(framed.schemaId)) as string,
  ) as avro.Schema;
  assert.deepEqual({ ...(avro.Type.forSchema(registeredSchema).fromBuffer(framed.payload) as object) }, request);
  // Its own messages decode with no fetch.
  assert.deepEqual({ ...codec.decode('PromptRequest', value, headers) }, request);
  assert.equal(registry.requests.length, registered + 1, 'only the schemaById above');
});

test('a reader fetches an unknown id once, resolves it against its newest schema, and reads the header format too', async () => {
  const registry = await fakeRegistry();
  const writer = new AvroCodec(SCHEMAS_DIR, { registry: new HttpSchemaRegistry({ url: registry.url }) });
  await writer.useConfluentFormat(confluentSubjects('p.'));
  // An older writer: JobEvent v1 (no enum default) registered by another service.
  const v1 = fs.readFileSync(path.join(SCHEMAS_DIR, 'JobEvent.v1.avsc'), 'utf8');
  const v1Id = registry.add(v1);
  const event: JobEvent = {
    jobId: 'j1',
    type: 'completed',
    at: 1_700_000_000_123,
    rows: 2,
    prompts: 3,
    badRows: 0,
    images: 3,
    errors: 0,
    source: 'f.jsonl',
    paramsJson: null,
    outputUri: 's3://b/k',
    message: null,
  };
  const v1Type = avro.Type.forSchema(JSON.parse(v1) as avro.Schema);
  const olderMessage = { value: frameConfluent(v1Id, v1Type.toBuffer(event)), headers: {} };
  const ownMessage = { value: writer.encode('PromptRequest', request).value, headers: {} };
  const headerMessage = new AvroCodec().encode('PromptRequest', request);

  const reader = new AvroCodec(SCHEMAS_DIR, { registry: new HttpSchemaRegistry({ url: registry.url }) });
  assert.throws(
    () => reader.decode('JobEvent', olderMessage.value, olderMessage.headers),
    (e: unknown) => e instanceof T2iError && e.code === 'SCHEMA_UNKNOWN' && /schema id \d+: not loaded/.test(e.message),
  );
  const before = registry.requests.length;
  await reader.loadWriterSchemas([olderMessage, ownMessage, olderMessage, headerMessage]);
  assert.equal(registry.requests.length - before, 2, 'one GET per unknown id, none for the header message');
  await reader.loadWriterSchemas([olderMessage, ownMessage]);
  assert.equal(registry.requests.length - before, 2, 'cached');
  assert.deepEqual({ ...reader.decode('JobEvent', olderMessage.value, olderMessage.headers) }, event);
  assert.deepEqual({ ...reader.decode('PromptRequest', ownMessage.value, ownMessage.headers) }, request);
  assert.deepEqual({ ...reader.decode('PromptRequest', headerMessage.value, headerMessage.headers) }, request);
  assert.throws(
    () => reader.decode('ImageResult', ownMessage.value, {}),
    /expected a ImageResult message, schema id \d+ is a PromptRequest/,
  );
  // Neither a header nor the magic byte.
  assert.throws(
    () => reader.decode('PromptRequest', Buffer.from([2, 1]), {}),
    /without a t2i-schema header and not in the Confluent wire format/,
  );
  // The header wins: a value with a header is never read as a registry id.
  assert.throws(() => reader.decode('PromptRequest', ownMessage.value, { [SCHEMA_HEADER]: 'PromptRequest@0000' }), /unknown writer schema/);
});

test('an id the registry does not know, a registry that is down, or none configured: SCHEMA_UNKNOWN saying why', async () => {
  const registry = await fakeRegistry();
  const message = { value: frameConfluent(77, Buffer.from([0])), headers: {} };
  const reader = new AvroCodec(SCHEMAS_DIR, { registry: new HttpSchemaRegistry({ url: registry.url }) });
  await reader.loadWriterSchemas([message]);
  assert.throws(
    () => reader.decode('PromptRequest', message.value, {}),
    (e: unknown) => e instanceof T2iError && e.code === 'SCHEMA_UNKNOWN' && /schema id 77: .*HTTP 404: Schema not found/.test(e.message),
  );

  const down = http.createServer();
  await new Promise<void>((resolve) => down.listen(0, '127.0.0.1', resolve));
  const downUrl = `http://127.0.0.1:${(down.address() as AddressInfo).port}`;
  await new Promise<void>((resolve) => down.close(() => resolve()));
  const cut = new AvroCodec(SCHEMAS_DIR, { registry: new HttpSchemaRegistry({ url: downUrl, timeoutMs: 2000 }) });
  await cut.loadWriterSchemas([message]);
  assert.throws(
    () => cut.decode('PromptRequest', message.value, {}),
    (e: unknown) => e instanceof T2iError && e.code === 'SCHEMA_UNKNOWN' && e.message.includes('schema registry unreachable'),
  );
  // A writer fails at start, naming the subject, the registry and the fix.
  await assert.rejects(
    cut.useConfluentFormat(confluentSubjects('t2i.')),
    (e: unknown) =>
      e instanceof T2iError &&
      /cannot register \w+\.v\d+\.avsc under subject t2i\.\w+-value at http:\/\/127\.0\.0\.1:\d+: schema registry unreachable/.test(
        e.message,
      ) &&
      /T2I_SCHEMA_REGISTRY_URL/.test(e.message),
  );
  assert.equal(cut.wireFormat, 'header', 'still the header format after a failed start');

  assert.throws(
    () => new AvroCodec().decode('PromptRequest', message.value, {}),
    /schema id 77: no schema registry is configured \(set T2I_SCHEMA_REGISTRY_URL\)/,
  );
});

test('basic auth is sent, and a refusal says which variables to check', async () => {
  const registry = await fakeRegistry({ user: 'svc', password: 's3cret' });
  const good = new HttpSchemaRegistry({ url: `${registry.url}/`, username: 'svc', password: 's3cret' });
  const id = await good.register('a-value', '"string"');
  assert.equal(await good.schemaById(id), '"string"');
  assert.equal(registry.requests.at(-1)?.authorization, `Basic ${Buffer.from('svc:s3cret').toString('base64')}`);
  const bad = new HttpSchemaRegistry({ url: registry.url, username: 'svc', password: 'wrong' });
  await assert.rejects(
    bad.register('a-value', '"string"'),
    /HTTP 401: Unauthorized \(check T2I_SCHEMA_REGISTRY_USER \/ T2I_SCHEMA_REGISTRY_PASSWORD\)/,
  );
});

test('openCodec follows the config: header by default, registered confluent when asked', async () => {
  const registry = await fakeRegistry();
  const header = await openCodec(loadConfig({ T2I_SCHEMA_REGISTRY_URL: registry.url }));
  assert.equal(header.wireFormat, 'header');
  assert.equal(registry.requests.length, 0, 'a reader with a registry registers nothing');
  const confluent = await openCodec(
    loadConfig({ T2I_SCHEMA_REGISTRY_URL: registry.url, T2I_WIRE_FORMAT: 'confluent', T2I_TOPIC_PREFIX: 'x.' }),
  );
  assert.equal(confluent.wireFormat, 'confluent');
  assert.ok(registry.subjects.has('x.prompts-value'));
});

test('config: the wire format and registry settings are validated at start, the password redacted', () => {
  assert.equal(loadConfig({}).wireFormat, 'header');
  assert.equal(loadConfig({}).schemaRegistry, undefined);
  const full = loadConfig({
    T2I_WIRE_FORMAT: 'Confluent',
    T2I_SCHEMA_REGISTRY_URL: 'http://127.0.0.1:8081/apis/ccompat/v7/',
    T2I_SCHEMA_REGISTRY_USER: 'u',
    T2I_SCHEMA_REGISTRY_PASSWORD: 'p',
  });
  assert.equal(full.wireFormat, 'confluent');
  assert.deepEqual({ ...full.schemaRegistry }, { url: 'http://127.0.0.1:8081/apis/ccompat/v7', username: 'u', password: 'p' });
  assert.equal((redactConfig(full) as { schemaRegistry: { password: string } }).schemaRegistry.password, '***');
  const problems = (env: Record<string, string>) => {
    try {
      loadConfig(env);
    } catch (error) {
      assert.ok(error instanceof T2iError && error.code === 'CONFIG_INVALID');
      return error.message;
    }
    return '';
  };
  assert.match(problems({ T2I_WIRE_FORMAT: 'confluent' }), /T2I_WIRE_FORMAT=confluent: also set T2I_SCHEMA_REGISTRY_URL/);
  assert.match(problems({ T2I_WIRE_FORMAT: 'avro' }), /T2I_WIRE_FORMAT="avro": expected one of header, confluent/);
  assert.match(
    problems({ T2I_SCHEMA_REGISTRY_URL: 'localhost:8081' }),
    /T2I_SCHEMA_REGISTRY_URL="localhost:8081": expected an http\(s\) URL/,
  );
  assert.match(problems({ T2I_SCHEMA_REGISTRY_URL: 'http://r:8081', T2I_SCHEMA_REGISTRY_USER: 'u' }), /set both, or neither/);
  assert.match(problems({ T2I_SCHEMA_REGISTRY_USER: 'u', T2I_SCHEMA_REGISTRY_PASSWORD: 'p' }), /set only with T2I_SCHEMA_REGISTRY_URL/);
});

test('a fetched writer schema that cannot be resolved against the reader is SCHEMA_UNKNOWN, not garbage', async () => {
  const registry: SchemaRegistry = {
    url: 'test://',
    register: () => Promise.reject(new Error('unused')),
    // A PromptRequest whose prompt is an int: no resolution to our string field.
    schemaById: () =>
      Promise.resolve(
        JSON.stringify({ type: 'record', name: 'PromptRequest', namespace: 'other', fields: [{ name: 'prompt', type: 'int' }] }),
      ),
  };
  const reader = new AvroCodec(SCHEMAS_DIR, { registry });
  const message = { value: frameConfluent(5, Buffer.from([2])), headers: {} };
  await reader.loadWriterSchemas([message]);
  assert.throws(
    () => reader.decode('PromptRequest', message.value, {}),
    (e: unknown) => e instanceof T2iError && e.code === 'SCHEMA_UNKNOWN',
  );
});
