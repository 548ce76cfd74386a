/**
 * Issue 16's "round trip through the schema registry read back by an independent client": a real schema
 * registry (Apicurio Registry from Maven Central, its Confluent-compatible API, started on loopback the
 * way the stack starts Kafka), the real Kafka of the local stack, and confluent-kafka's Python client
 * (librdkafka, fastavro, its own SchemaRegistryClient) as the independent reader and writer.
 * - t2i writes in T2I_WIRE_FORMAT=confluent through the production path (openCodec + MessageProducer);
 *   Python's AvroDeserializer reads every message of the four topics, field for field.
 * - Python's AvroSerializer writes (an older JobEvent schema too); t2i's reader decodes them, fetching
 *   the ids from the registry and resolving them against its newest schemas.
 * The Python client lives in a venv under .cache (created here with pip on first use); the test is
 * skipped only when this machine has no python3 with venv support.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import avro from 'avsc';
import { openCodec, type MessageName, type MessageTypes } from '../../services/common/avro.ts';
import { loadConfig } from '../../services/common/config.ts';
import { MessageProducer } from '../../services/common/message-producer.ts';
import type { DeadLetter, ImageResult, JobEvent, PromptRequest } from '../../services/common/messages.ts';
import { createKafka } from '../../services/common/kafka.ts';
import { silentLogger } from '../../services/common/logger.ts';
import { ObjectStore } from '../../services/common/object-store.ts';
import { PACKAGE_ROOT, SCHEMAS_DIR } from '../../services/common/paths.ts';
import { produceJob } from '../../services/producer/produce-job.ts';
import { createSink } from '../../services/sink/sink.ts';
import { createFluxPipeline } from '../../services/worker/engine/index.ts';
import { workerOptionsFromEnv } from '../../services/worker/options.ts';
import { createWorker } from '../../services/worker/worker.ts';
import { Registry } from 'prom-client';
import { unframeConfluent } from '../../services/common/schema-registry.ts';
import { schemaRegistryDown, schemaRegistryUp, type SchemaRegistryOptions } from '../../services/stack/schema-registry.ts';
import { stackOptionsFromEnv } from '../../services/stack/stack.ts';
import { createTestEnv, randomName } from '../helpers/env.ts';
import { readTopicMessages } from '../helpers/topic-reader.ts';

const run = promisify(execFile);
const CLIENT = path.join(PACKAGE_ROOT, 'test', 'common', 'confluent_client.py');
const VENV = path.join(PACKAGE_ROOT, '.cache', 'venv-confluent-kafka');
const PYTHON = path.join(VENV, 'bin', 'python');
/** The independent client, from PyPI. */
const REQUIREMENT = 'confluent-kafka[avro,schemaregistry]==2.16.1';

/** The venv's python with confluent-kafka, made on first use; a reason to skip when python3 or venv is missing. */
async function pythonClient(): Promise<{ python: string } | { skip: string }> {
  const importCheck = ['-c', 'import confluent_kafka.schema_registry.avro, fastavro'];
  if (
    fs.existsSync(PYTHON) &&
    (await run(PYTHON, importCheck).then(
      () => true,
      () => false,
    ))
  )
    return { python: PYTHON };
  try {
    await run('python3', ['--version']);
  } catch {
    return { skip: 'no python3 on PATH: the independent client is confluent-kafka for Python (apt-get install python3 python3-venv)' };
  }
  try {
    await run('python3', ['-m', 'venv', '--clear', VENV]);
  } catch (error) {
    return { skip: `python3 cannot create a venv (apt-get install python3-venv): ${(error as Error).message}` };
  }
  // pip failing (PyPI unreachable, no wheel) is a failure, not a skip: CI must be able to run this.
  await run(PYTHON, ['-m', 'pip', 'install', '-q', '--disable-pip-version-check', REQUIREMENT], { maxBuffer: 16 * 1024 * 1024 });
  await run(PYTHON, importCheck);
  return { python: PYTHON };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Runs the Python client; rejects with its stderr when it fails. */
function python(pythonPath: string, args: string[], stdin = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(pythonPath, [CLIENT, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`confluent_client.py ${args[0]} exited ${code}:\n${err.slice(-3000)}`)),
    );
    child.stdin.end(stdin);
  });
}

let client: { python: string } | { skip: string };
let registryUrl = '';
let registryOptions: SchemaRegistryOptions;

before(async () => {
  client = await pythonClient();
  if ('skip' in client) return;
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'schema-registry-'));
  registryOptions = { ...stackOptionsFromEnv(), runDir, port: await freePort(), startTimeoutMs: 240_000 };
  registryUrl = await schemaRegistryUp(registryOptions, (line) => process.stderr.write(`[schema registry] ${line}\n`));
});

after(async () => {
  if (registryOptions) await schemaRegistryDown(registryOptions);
});

const now = 1_764_000_000_123;
const requests: PromptRequest[] = [
  {
    jobId: 'job-α',
    row: 0,
    promptIndex: 0,
    promptCount: 2,
    prompt: 'a red fox in snow, 雪の狐',
    seed: 2 ** 40 + 7,
    width: null,
    height: 64,
    steps: null,
    guidance: 3.5,
    rowJson: '{"prompt":["a red fox in snow, 雪の狐","b"]}',
    createdAt: now,
  },
  {
    jobId: 'job-α',
    row: 0,
    promptIndex: 1,
    promptCount: 2,
    prompt: 'b',
    seed: 0,
    width: 512,
    height: null,
    steps: 4,
    guidance: null,
    rowJson: '{"prompt":["a red fox in snow, 雪の狐","b"]}',
    createdAt: now + 1,
  },
];
const results: ImageResult[] = [
  {
    jobId: 'job-α',
    row: 0,
    promptIndex: 0,
    promptCount: 2,
    prompt: 'a red fox in snow, 雪の狐',
    uri: 's3://t2i/images/job-α/0-0.png',
    key: 'images/job-α/0-0.png',
    seed: 2 ** 40 + 7,
    width: 64,
    height: 64,
    steps: 2,
    guidance: 3.5,
    model: 'tiny-flux',
    rowJson: '{}',
    worker: 'w1',
    inferenceMs: 12.25,
    createdAt: now + 2,
    truncation: '{"clip":{"tokens":80,"limit":77}}',
  },
];
const letters: DeadLetter[] = [
  {
    jobId: 'job-α',
    row: 7,
    promptIndex: null,
    promptCount: null,
    stage: 'parse',
    error: 'line 8: not JSON',
    raw: '{oops',
    prompt: null,
    rowJson: null,
    attempts: 0,
    createdAt: now + 3,
  },
];
const events: JobEvent[] = [
  {
    jobId: 'job-α',
    type: 'produced',
    at: now + 4,
    rows: 2,
    prompts: 3,
    badRows: 1,
    images: 0,
    errors: 0,
    source: 'prompts.jsonl',
    paramsJson: '{"steps":2}',
    outputUri: null,
    message: null,
  },
];

interface PythonRecord {
  topic: string;
  key: string;
  headers: string[];
  magic: number;
  schemaId: number;
  value: Record<string, unknown>;
}

test('t2i writes the Confluent wire format through a real registry; confluent-kafka (Python) reads every field back', async (t) => {
  if ('skip' in client) return t.skip(client.skip);
  const env = await createTestEnv({ extraEnv: { T2I_WIRE_FORMAT: 'confluent', T2I_SCHEMA_REGISTRY_URL: registryUrl } });
  const { config } = env;
  // The production path: the codec the services open at start, the producer they send with.
  const codec = await openCodec(config);
  assert.equal(codec.wireFormat, 'confluent');
  const producer = new MessageProducer(env.kafka, codec);
  await producer.connect();
  const sent: { topic: string; name: MessageName; values: MessageTypes[MessageName][] }[] = [
    { topic: env.topics.prompts, name: 'PromptRequest', values: requests },
    { topic: env.topics.results, name: 'ImageResult', values: results },
    { topic: env.topics.errors, name: 'DeadLetter', values: letters },
    { topic: env.topics.jobs, name: 'JobEvent', values: events },
  ];
  try {
    for (const { topic, name, values } of sent) {
      await producer.send(
        topic,
        name,
        values.map((value, i) => ({ key: `${name}-${i}`, value })),
      );
    }
  } finally {
    await producer.disconnect();
  }
  const total = sent.reduce((n, s) => n + s.values.length, 0);
  const out = await python(client.python, [
    'read',
    config.kafka.brokers.join(','),
    registryUrl,
    String(total),
    ...sent.map((s) => s.topic),
  ]);
  const records = out
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as PythonRecord);
  assert.equal(records.length, total);
  for (const { topic, name, values } of sent) {
    const got = records.filter((r) => r.topic === topic).sort((a, b) => a.key.localeCompare(b.key));
    assert.equal(got.length, values.length, topic);
    values.forEach((value, i) => {
      const record = got[i]!;
      assert.equal(record.key, `${name}-${i}`);
      assert.equal(record.magic, 0, 'magic byte');
      assert.ok(!record.headers.includes('t2i-schema'), 'no private header in the Confluent format');
      // Every field, as the independent deserializer decoded it with the schema it fetched by id.
      assert.deepEqual(record.value, { ...value }, `${topic} ${record.key}`);
    });
  }
  // The ids are the registry's, under the TopicNameStrategy subjects.
  const subjects = (await (await fetch(`${registryUrl}/subjects`)).json()) as string[];
  for (const { topic } of sent) assert.ok(subjects.includes(`${topic}-value`), `${topic}-value registered`);
});

test('confluent-kafka (Python) writes through the registry, an older JobEvent schema too; t2i reads them', async (t) => {
  if ('skip' in client) return t.skip(client.skip);
  const py = client.python;
  const env = await createTestEnv();
  const bootstrap = env.config.kafka.brokers.join(',');
  const write = (topic: string, schemaFile: string, values: object[]) =>
    python(
      py,
      ['write', bootstrap, registryUrl, topic, path.join(SCHEMAS_DIR, schemaFile)],
      values.map((value, i) => JSON.stringify({ key: `k${i}`, value })).join('\n'),
    );
  await write(env.topics.prompts, 'PromptRequest.v1.avsc', requests);
  // JobEvent v1: the enum without a default; our reader's newest is v2.
  const v1Events: JobEvent[] = [
    { ...events[0]! },
    { ...events[0]!, type: 'completed', images: 3, outputUri: 's3://t2i/out.jsonl', message: 'done' },
  ];
  await write(env.topics.jobs, 'JobEvent.v1.avsc', v1Events);

  // A reader in the default (header) format with the registry configured: it reads both formats.
  const reader = await openCodec(loadConfig({ ...process.env, ...env.env, T2I_SCHEMA_REGISTRY_URL: registryUrl }));
  assert.equal(reader.wireFormat, 'header');
  for (const [topic, name, expected] of [
    [env.topics.prompts, 'PromptRequest', requests],
    [env.topics.jobs, 'JobEvent', v1Events],
  ] as const) {
    const messages = (await readTopicMessages(env.kafka, topic)).sort((a, b) => String(a.key).localeCompare(String(b.key)));
    assert.equal(messages.length, expected.length);
    await reader.loadWriterSchemas(messages);
    messages.forEach((message, i) => {
      assert.ok(unframeConfluent(message.value!), 'Python wrote the Confluent format');
      assert.deepEqual({ ...reader.decode(name, message.value, message.headers) }, { ...expected[i]! }, `${topic} k${i}`);
    });
  }
  // The JobEvent writer schema was v1 (the registry's text, not ours): resolved, not taken as v2.
  const jobMessage = (await readTopicMessages(env.kafka, env.topics.jobs))[0]!;
  const { schemaId } = unframeConfluent(jobMessage.value!)!;
  const { schema } = (await (await fetch(`${registryUrl}/schemas/ids/${schemaId}`)).json()) as { schema: string };
  const writerSymbols = (avro.Type.forSchema(JSON.parse(schema) as avro.Schema) as avro.types.RecordType).field('type')
    ?.type as avro.types.EnumType;
  assert.ok(!writerSymbols.symbols.includes('unknown'), 'the writer schema was JobEvent v1');
});

test('a fleet mid-switch: the producer writes the Confluent format, a worker and the sink in the default format read it via the registry', async (t) => {
  if ('skip' in client) return t.skip(client.skip);
  const env = await createTestEnv({ promptPartitions: 2, extraEnv: { T2I_SCHEMA_REGISTRY_URL: registryUrl } });
  const readers = env.config; // header format, registry known: what a service not yet switched runs with
  const writer = loadConfig({ ...process.env, ...env.env, T2I_WIRE_FORMAT: 'confluent' });
  const logger = silentLogger();
  const engine = createFluxPipeline({ modelDirectory: readers.model.dir });
  const workerStore = new ObjectStore(readers.s3);
  const worker = createWorker({
    config: readers,
    options: { ...workerOptionsFromEnv({ T2I_MAX_WAIT_MS: '20' }), workerId: 'sr-1', groupId: randomName('workers-') },
    kafka: createKafka(readers.kafka, logger),
    store: workerStore,
    engine,
    codec: await openCodec(readers),
    logger,
    registry: new Registry(),
  });
  await worker.start();
  let completed: (jobId: string) => void = () => {};
  const done = new Promise<string>((resolve) => (completed = resolve));
  const sink = createSink({
    config: readers,
    logger,
    kafka: createKafka(readers.kafka, logger),
    store: env.store,
    codec: await openCodec(readers),
    registry: new Registry(),
    groupId: randomName('sink-'),
    flushIntervalMs: 300,
    onJobCompleted: (manifest) => completed(manifest.jobId),
  });
  await sink.start();
  after(async () => {
    await sink.close();
    await worker.close();
    await engine.close();
    workerStore.close();
  });
  const input = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sr-job-')), 'prompts.jsonl');
  fs.writeFileSync(
    input,
    [
      '{"id":"a","prompt":"a red fox"}',
      '{"id":"b","prompts":["one bird","two birds"]}',
      '{"id": broken',
      '{"id":"c","prompt":"a lake"}',
    ].join('\n'),
  );
  const summary = await produceJob({ config: writer, input, jobId: 'sr-job', logger });
  assert.deepEqual([summary.rows, summary.prompts, summary.badRows], [3, 4, 1]);

  let timer: NodeJS.Timeout | undefined;
  const stuck = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error('the job did not complete within 90 s: a reader could not decode the Confluent format')),
      90_000,
    );
  });
  try {
    assert.equal(await Promise.race([done, stuck]), 'sr-job');
  } finally {
    clearTimeout(timer);
  }
  const output = (await env.store.get('jobs/sr-job/output.jsonl'))?.toString('utf8') ?? '';
  const rows = output
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { id: string; images: string[] });
  assert.deepEqual(
    rows.map((r) => [r.id, r.images.length]),
    [
      ['a', 1],
      ['b', 2],
      ['c', 1],
    ],
  );
  // What travelled: the producer's prompts, bad row and job events in the Confluent format; the worker's
  // results and the sink's completion event in the header one.
  const confluent = (m: { value: Buffer | null; headers?: Record<string, unknown> }) =>
    m.headers?.['t2i-schema'] === undefined && unframeConfluent(m.value!) !== undefined;
  for (const topic of [env.topics.prompts, env.topics.errors]) {
    const messages = await readTopicMessages(env.kafka, topic);
    assert.ok(messages.length > 0 && messages.every(confluent), `${topic}: Confluent format`);
  }
  const jobMessages = await readTopicMessages(env.kafka, env.topics.jobs);
  assert.ok(jobMessages.filter(confluent).length >= 1, "the producer's job events: Confluent format");
  assert.ok(
    jobMessages.some((m) => !confluent(m)),
    "the sink's completion event: header format",
  );
  const resultMessages = await readTopicMessages(env.kafka, env.topics.results);
  assert.equal(resultMessages.length, 4);
  assert.ok(
    resultMessages.every((m) => m.headers?.['t2i-schema'] !== undefined),
    'the worker wrote the default header format',
  );
});
