import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { Kafka, logLevel } from 'kafkajs';
import { KAFKA_VERSION, S3PROXY_VERSION, portOpen, stackOptionsFromEnv, stackUp } from '../../services/stack/stack.ts';
import { ObjectStore } from '../../services/common/object-store.ts';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';

const run = promisify(execFile);

/** A second, private stack on other ports and another folder: up, up again (no-op), down, port conflicts. */
test('t2i stack up | up again | status | down, on its own ports and folder', { timeout: 240_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 't2i-stack-'));
  // Reuse the jars of the main stack (npm test started it) instead of copying them from Maven again.
  for (const lib of [`kafka-${KAFKA_VERSION}`, `s3proxy-${S3PROXY_VERSION}`]) {
    const source = path.join(PACKAGE_ROOT, '.cache', 'stack', lib, 'lib');
    if (fs.existsSync(source)) {
      fs.mkdirSync(path.join(dir, lib), { recursive: true });
      fs.symlinkSync(source, path.join(dir, lib, 'lib'));
    }
  }
  // Below the kernel's ephemeral range (32768+), so no client socket of a concurrent test holds one.
  const base = 21000 + Math.floor(Math.random() * 11000);
  const ports = { kafka: base, controller: base + 1, s3: base + 2 };
  const env = {
    ...process.env,
    T2I_STACK_DIR: dir,
    T2I_STACK_KAFKA_PORT: String(ports.kafka),
    T2I_STACK_CONTROLLER_PORT: String(ports.controller),
    T2I_STACK_S3_PORT: String(ports.s3),
  };
  const t2i = (...args: string[]) =>
    run(process.execPath, [path.join(PACKAGE_ROOT, 'bin', 't2i.js'), 'stack', ...args], { env, timeout: 200_000 });
  after(async () => {
    await t2i('down').catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  });

  // A port taken by someone else is a clear error, and nothing is started.
  const squatter = net.createServer((socket) => socket.destroy()).listen(ports.s3, '127.0.0.1');
  await new Promise((resolve) => squatter.once('listening', resolve));
  try {
    // In-process (the same stackUp the command runs), so the check does not depend on a child's output.
    const said: string[] = [];
    const refused = await stackUp(stackOptionsFromEnv(env), (line) => said.push(line)).then(
      () => undefined,
      (error: Error) => error,
    );
    assert.ok(refused, '`stack up` must fail when a port is taken');
    assert.match(refused.message, new RegExp(`port 127\\.0\\.0\\.1:${ports.s3} is taken by another process`), String(refused));
    assert.doesNotMatch(said.join('\n'), /starting Kafka/, 'nothing starts when a port is taken');
    assert.equal(await portOpen('127.0.0.1', ports.kafka), false);
  } finally {
    // Always, or the open server would keep this test file from ending.
    await new Promise((resolve) => squatter.close(resolve));
  }

  const first = await t2i('up');
  assert.match(first.stderr, /local stack up/);
  for (const port of Object.values(ports)) assert.ok(await portOpen('127.0.0.1', port), `port ${port} answers`);
  const kafka = new Kafka({ brokers: [`127.0.0.1:${ports.kafka}`], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const topics = await admin.listTopics();
  await admin.disconnect();
  for (const topic of ['t2i.prompts', 't2i.results', 't2i.errors', 't2i.jobs']) assert.ok(topics.includes(topic), `topic ${topic} created`);
  const store = new ObjectStore({
    endpoint: `http://127.0.0.1:${ports.s3}`,
    region: 'us-east-1',
    bucket: 't2i',
    accessKeyId: 't2i-local',
    secretAccessKey: 't2i-local-secret',
    forcePathStyle: true,
  });
  assert.equal((await store.listPage('')).objects.length, 0, 'the bucket exists (and is empty)');
  store.close();

  const again = await t2i('up');
  assert.match(again.stderr, /already running/);
  const status = await t2i('status');
  assert.match(status.stdout, /kafka\s+running/);
  assert.match(status.stdout, /s3proxy\s+running/);

  await t2i('down');
  for (const port of Object.values(ports)) assert.equal(await portOpen('127.0.0.1', port), false, `port ${port} closed after down`);
  await assert.rejects(
    t2i('status'),
    (error: Error & { code?: number; stdout?: string }) => error.code === 3 && /stopped/.test(error.stdout ?? ''),
  );
});
