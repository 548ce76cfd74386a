/**
 * The local stack: a real Apache Kafka broker (KRaft, combined broker+controller) and a real
 * S3-compatible server (s3proxy, filesystem backend) on loopback, without Docker. Jars come from Maven
 * Central (deploy/local/pom.xml) into a git-ignored cache; pids, logs and data live there too.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Kafka, logLevel } from 'kafkajs';
import { LOCAL_S3_ACCESS_KEY, LOCAL_S3_SECRET_KEY, type Env } from '../common/config.ts';
import { EnvReader } from '../common/env-reader.ts';
import { T2iError, describeError } from '../common/errors.ts';
import { ensureTopics } from '../common/kafka.ts';
import { ObjectStore } from '../common/object-store.ts';
import { PACKAGE_ROOT } from '../common/paths.ts';

import { alive, httpAnswers, logTail, portOpen, readPid } from './processes.ts';

export { logTail, portOpen };

const run = promisify(execFile);

export const KAFKA_VERSION = '4.1.1';
export const S3PROXY_VERSION = '3.0.0';

/** Where and how the local stack runs. */
export interface StackOptions {
  /** Cache folder for jars, data, logs and pids (`T2I_STACK_DIR`). Default <package>/.cache/stack. */
  dir: string;
  host: string;
  /** Kafka client port (`T2I_STACK_KAFKA_PORT`), default 9092. */
  kafkaPort: number;
  /** KRaft controller port (`T2I_STACK_CONTROLLER_PORT`), default 9093. */
  controllerPort: number;
  /** S3 port (`T2I_STACK_S3_PORT`), default 9000. */
  s3Port: number;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
  topicPrefix: string;
  promptPartitions: number;
  /** How long to wait for each server to answer. Default 120 s. */
  startTimeoutMs: number;
}

export function stackOptionsFromEnv(env: Env = process.env): StackOptions {
  const read = new EnvReader(env);
  const options: StackOptions = {
    dir: path.resolve(read.string('T2I_STACK_DIR', path.join(PACKAGE_ROOT, '.cache', 'stack'))),
    host: '127.0.0.1',
    kafkaPort: read.int('T2I_STACK_KAFKA_PORT', 9092, { min: 1, max: 65535 }),
    controllerPort: read.int('T2I_STACK_CONTROLLER_PORT', 9093, { min: 1, max: 65535 }),
    s3Port: read.int('T2I_STACK_S3_PORT', 9000, { min: 1, max: 65535 }),
    accessKeyId: read.string('AWS_ACCESS_KEY_ID', LOCAL_S3_ACCESS_KEY),
    secretAccessKey: read.string('AWS_SECRET_ACCESS_KEY', LOCAL_S3_SECRET_KEY),
    bucket: read.string('S3_BUCKET', 't2i'),
    topicPrefix: read.string('T2I_TOPIC_PREFIX', 't2i.'),
    promptPartitions: read.int('T2I_PROMPT_PARTITIONS', 12, { min: 1, max: 10000 }),
    startTimeoutMs: read.int('T2I_STACK_START_TIMEOUT_MS', 120_000, { min: 1000 }),
  };
  read.assertValid('the local stack');
  return options;
}

type Part = 'kafka' | 's3proxy';

export interface PartStatus {
  part: Part;
  pid?: number;
  running: boolean;
  address: string;
  answering: boolean;
  log: string;
}

const files = (o: StackOptions, part: Part) => ({
  pid: path.join(o.dir, 'run', `${part}.pid`),
  log: path.join(o.dir, 'run', `${part}.log`),
  lib: path.join(o.dir, part === 'kafka' ? `kafka-${KAFKA_VERSION}` : `s3proxy-${S3PROXY_VERSION}`, 'lib'),
});

export type Say = (line: string) => void;

/** Starts whatever is not running yet; a no-op when both parts answer. Creates the topics and the bucket. */
export async function stackUp(o: StackOptions, say: Say = () => {}): Promise<PartStatus[]> {
  fs.mkdirSync(path.join(o.dir, 'run'), { recursive: true });
  const before = await stackStatus(o);
  if (before.every((p) => p.running && p.answering)) {
    say('local stack already running');
    await prepareResources(o);
    return before;
  }
  await checkTools();
  await fetchJars(o, say);
  // Started by us but not answering yet (still starting, or stuck): waited for below. Every other part
  // needs its ports free; all are checked before anything starts, so a conflict starts nothing.
  const toStart = before.filter((status) => !status.running);
  for (const status of toStart) {
    const ports = status.part === 'kafka' ? [o.kafkaPort, o.controllerPort] : [o.s3Port];
    for (const port of ports) {
      if (await portOpen(o.host, port)) {
        throw new T2iError(
          'STACK_FAILED',
          `port ${o.host}:${port} is taken by another process (not started by \`t2i stack\`); stop it, or choose other ports with T2I_STACK_KAFKA_PORT / T2I_STACK_CONTROLLER_PORT / T2I_STACK_S3_PORT`,
        );
      }
    }
  }
  for (const status of toStart) {
    if (status.part === 'kafka') await startKafka(o, say);
    else await startS3proxy(o, say);
  }
  await waitFor(o, 'kafka', () => kafkaAnswers(o), say);
  await waitFor(o, 's3proxy', () => httpAnswers(`http://${o.host}:${o.s3Port}/`), say);
  await prepareResources(o);
  say(`local stack up: Kafka ${o.host}:${o.kafkaPort}, S3 http://${o.host}:${o.s3Port} (bucket ${o.bucket})`);
  return stackStatus(o);
}

/** Stops what `up` started, by pid (SIGTERM, then SIGKILL after 30 s), and waits until the ports close. */
export async function stackDown(o: StackOptions, say: Say = () => {}): Promise<void> {
  for (const part of ['s3proxy', 'kafka'] as const) {
    const f = files(o, part);
    const pid = readPid(f.pid);
    if (pid === undefined || !alive(pid)) {
      fs.rmSync(f.pid, { force: true });
      say(`${part}: not running`);
      continue;
    }
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + 30_000;
    while (alive(pid) && Date.now() < deadline) await sleep(200);
    if (alive(pid)) {
      say(`${part}: did not stop within 30 s, killing`);
      process.kill(pid, 'SIGKILL');
      while (alive(pid)) await sleep(100);
    }
    fs.rmSync(f.pid, { force: true });
    say(`${part}: stopped (pid ${pid})`);
  }
}

export async function stackStatus(o: StackOptions): Promise<PartStatus[]> {
  const out: PartStatus[] = [];
  for (const part of ['kafka', 's3proxy'] as const) {
    const f = files(o, part);
    const pid = readPid(f.pid);
    const running = pid !== undefined && alive(pid);
    const address = part === 'kafka' ? `${o.host}:${o.kafkaPort}` : `http://${o.host}:${o.s3Port}`;
    const answering = part === 'kafka' ? await portOpen(o.host, o.kafkaPort) : await httpAnswers(`http://${o.host}:${o.s3Port}/`);
    out.push({ part, ...(running ? { pid } : {}), running, address, answering, log: f.log });
  }
  return out;
}

/** True when a Kafka broker and an S3 server answer at the given addresses (whoever started them). */
export async function servicesAnswer(kafkaBroker: string, s3Endpoint: string | undefined): Promise<boolean> {
  const [host, port] = splitHostPort(kafkaBroker);
  const kafkaUp = await portOpen(host, port);
  const s3Up = s3Endpoint === undefined ? true : await httpAnswers(`${s3Endpoint}/`);
  return kafkaUp && s3Up;
}

function splitHostPort(value: string): [string, number] {
  const index = value.lastIndexOf(':');
  return [value.slice(0, index), Number(value.slice(index + 1))];
}

async function checkTools(): Promise<void> {
  try {
    await run('java', ['-version']);
  } catch {
    throw new T2iError(
      'STACK_FAILED',
      'Java is missing: the local stack needs a Java 17+ runtime on PATH (e.g. apt-get install openjdk-17-jre-headless)',
    );
  }
}

async function fetchJars(o: StackOptions, say: Say): Promise<void> {
  for (const [profile, part] of [
    ['kafka', 'kafka'],
    ['s3proxy', 's3proxy'],
  ] as const) {
    const lib = files(o, part).lib;
    if (fs.existsSync(lib) && fs.readdirSync(lib).some((f) => f.endsWith('.jar'))) continue;
    try {
      await run('mvn', ['-v']);
    } catch {
      throw new T2iError(
        'STACK_FAILED',
        'Maven is missing: `t2i stack up` fetches the Kafka and s3proxy jars with mvn (e.g. apt-get install maven)',
      );
    }
    say(`fetching ${part} jars from Maven Central (first run only)…`);
    try {
      await run(
        'mvn',
        ['-q', '-B', `-P${profile}`, `-Dt2i.cacheDir=${o.dir}`, '-f', path.join(PACKAGE_ROOT, 'deploy', 'local', 'pom.xml'), 'package'],
        {
          maxBuffer: 64 * 1024 * 1024,
        },
      );
    } catch (error) {
      const output = `${(error as { stdout?: string }).stdout ?? ''}${(error as { stderr?: string }).stderr ?? ''}`;
      throw new T2iError('STACK_FAILED', `mvn could not fetch the ${part} jars:\n${output.slice(-3000)}`, { cause: error });
    }
  }
}

async function startKafka(o: StackOptions, say: Say): Promise<void> {
  const base = path.join(o.dir, 'kafka');
  const dataDir = path.join(base, 'data');
  fs.mkdirSync(dataDir, { recursive: true });
  const props = path.join(base, 'server.properties');
  fs.writeFileSync(
    props,
    [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.voters=1@${o.host}:${o.controllerPort}`,
      'controller.listener.names=CONTROLLER',
      `listeners=PLAINTEXT://${o.host}:${o.kafkaPort},CONTROLLER://${o.host}:${o.controllerPort}`,
      `advertised.listeners=PLAINTEXT://${o.host}:${o.kafkaPort}`,
      'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
      'inter.broker.listener.name=PLAINTEXT',
      `log.dirs=${dataDir}`,
      'num.partitions=3',
      'offsets.topic.replication.factor=1',
      'offsets.topic.num.partitions=12',
      'transaction.state.log.replication.factor=1',
      'transaction.state.log.min.isr=1',
      'share.coordinator.state.topic.replication.factor=1',
      'share.coordinator.state.topic.min.isr=1',
      'group.initial.rebalance.delay.ms=0',
      'auto.create.topics.enable=true',
      // Large enough for a batch of prompt rows of up to 1 MiB each.
      'message.max.bytes=8388608',
      'log.retention.hours=168',
      '',
    ].join('\n'),
  );
  const lib = `${files(o, 'kafka').lib}/*`;
  if (!fs.existsSync(path.join(dataDir, 'meta.properties'))) {
    const { stdout } = await run('java', ['-cp', lib, 'kafka.tools.StorageTool', 'random-uuid']);
    const clusterId = stdout.trim().split('\n').pop() ?? '';
    try {
      await run('java', ['-cp', lib, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', props]);
    } catch (error) {
      throw new T2iError('STACK_FAILED', `formatting Kafka storage failed: ${describeError(error)}`, { cause: error });
    }
  }
  say(`starting Kafka ${KAFKA_VERSION} on ${o.host}:${o.kafkaPort}`);
  spawnDetached(o, 'kafka', [
    '-Xmx768m',
    '-Xms256m',
    '-XX:+UseG1GC',
    '-Dorg.slf4j.simpleLogger.defaultLogLevel=info',
    '-Dlog4j2.level=WARN',
    '-cp',
    lib,
    'kafka.Kafka',
    props,
  ]);
}

async function startS3proxy(o: StackOptions, say: Say): Promise<void> {
  const base = path.join(o.dir, 's3proxy');
  const dataDir = path.join(base, 'data');
  fs.mkdirSync(dataDir, { recursive: true });
  const conf = path.join(base, 's3proxy.conf');
  fs.writeFileSync(
    conf,
    [
      `s3proxy.endpoint=http://${o.host}:${o.s3Port}`,
      's3proxy.authorization=aws-v2-or-v4',
      `s3proxy.identity=${o.accessKeyId}`,
      `s3proxy.credential=${o.secretAccessKey}`,
      's3proxy.cors-allow-all=true',
      'jclouds.provider=filesystem',
      `jclouds.filesystem.basedir=${dataDir}`,
      '',
    ].join('\n'),
  );
  const logback = path.join(base, 'logback.xml');
  fs.writeFileSync(
    logback,
    '<configuration><appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender"><encoder><pattern>%d %-5level %logger{36} - %msg%n</pattern></encoder></appender><root level="WARN"><appender-ref ref="STDOUT"/></root></configuration>\n',
  );
  say(`starting s3proxy ${S3PROXY_VERSION} on http://${o.host}:${o.s3Port}`);
  spawnDetached(o, 's3proxy', [
    '-Xmx384m',
    `-Dlogback.configurationFile=${logback}`,
    '-cp',
    `${files(o, 's3proxy').lib}/*`,
    'org.gaul.s3proxy.Main',
    '--properties',
    conf,
  ]);
}

function spawnDetached(o: StackOptions, part: Part, args: string[]): void {
  const f = files(o, part);
  const log = fs.openSync(f.log, 'a');
  const child = spawn('java', args, { detached: true, stdio: ['ignore', log, log], cwd: o.dir });
  fs.closeSync(log);
  if (child.pid === undefined) throw new T2iError('STACK_FAILED', `could not start ${part} (java)`);
  fs.writeFileSync(f.pid, String(child.pid));
  child.unref();
}

async function waitFor(o: StackOptions, part: Part, answers: () => Promise<boolean>, say: Say): Promise<void> {
  const f = files(o, part);
  const deadline = Date.now() + o.startTimeoutMs;
  let announced = false;
  while (Date.now() < deadline) {
    if (await answers()) return;
    const pid = readPid(f.pid);
    if (pid === undefined || !alive(pid)) {
      throw new T2iError('STACK_FAILED', `${part} exited while starting; last lines of ${f.log}:\n${logTail(f.log, 30)}`);
    }
    if (!announced && Date.now() + o.startTimeoutMs - deadline > 5000) {
      say(`waiting for ${part}…`);
      announced = true;
    }
    await sleep(300);
  }
  throw new T2iError('STACK_FAILED', `${part} did not answer within ${o.startTimeoutMs} ms; see ${f.log}:\n${logTail(f.log, 30)}`);
}

async function kafkaAnswers(o: StackOptions): Promise<boolean> {
  if (!(await portOpen(o.host, o.kafkaPort))) return false;
  const kafka = new Kafka({
    brokers: [`${o.host}:${o.kafkaPort}`],
    logLevel: logLevel.NOTHING,
    retry: { retries: 0 },
    connectionTimeout: 1000,
  });
  const admin = kafka.admin();
  try {
    await admin.connect();
    const metadata = await admin.describeCluster();
    return metadata.brokers.length > 0 && metadata.controller !== null;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

async function prepareResources(o: StackOptions): Promise<void> {
  const kafka = new Kafka({ brokers: [`${o.host}:${o.kafkaPort}`], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  try {
    await admin.connect();
    await ensureTopics(admin, o.topicPrefix, { promptPartitions: o.promptPartitions });
  } finally {
    await admin.disconnect().catch(() => {});
  }
  const store = new ObjectStore({
    endpoint: `http://${o.host}:${o.s3Port}`,
    region: 'us-east-1',
    bucket: o.bucket,
    accessKeyId: o.accessKeyId,
    secretAccessKey: o.secretAccessKey,
    forcePathStyle: true,
  });
  try {
    await store.ensureBucket();
  } finally {
    store.close();
  }
}
