/**
 * The optional schema registry of the local stack: Apicurio Registry (in-memory storage) with its
 * Confluent-compatible API at http://<host>:<port>/apis/ccompat/v7, for `T2I_WIRE_FORMAT=confluent`.
 * Built on first use from its Maven Central jars (deploy/local/schema-registry/pom.xml) into the stack's
 * cache folder; started only when asked (`t2i stack up --schema-registry`), stopped by `t2i stack down`.
 * Its schemas live in memory: a restart forgets them, and writers register theirs again when they start.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { Env } from '../common/config.ts';
import { EnvReader } from '../common/env-reader.ts';
import { T2iError } from '../common/errors.ts';
import { PACKAGE_ROOT } from '../common/paths.ts';
import { alive, logTail, portOpen, readPid } from './processes.ts';

const run = promisify(execFile);

export const SCHEMA_REGISTRY_VERSION = '2.4.2.Final';

export interface SchemaRegistryOptions {
  /** The stack's cache folder: the build goes to <dir>/schema-registry-<version>. */
  dir: string;
  /** Folder of the pid and log files. Default <dir>/run. */
  runDir?: string;
  host: string;
  /** HTTP port (`T2I_STACK_SCHEMA_REGISTRY_PORT`), default 8081. */
  port: number;
  /** How long to wait for it to answer. */
  startTimeoutMs: number;
}

export function schemaRegistryOptionsFromEnv(
  stack: { dir: string; host: string; startTimeoutMs: number },
  env: Env = process.env,
): SchemaRegistryOptions {
  const read = new EnvReader(env);
  const options = {
    dir: stack.dir,
    host: stack.host,
    startTimeoutMs: stack.startTimeoutMs,
    port: read.int('T2I_STACK_SCHEMA_REGISTRY_PORT', 8081, { min: 1, max: 65535 }),
  };
  read.assertValid('the local schema registry');
  return options;
}

/** The URL to give as T2I_SCHEMA_REGISTRY_URL. */
export const schemaRegistryUrl = (o: SchemaRegistryOptions): string => `http://${o.host}:${o.port}/apis/ccompat/v7`;

const paths = (o: SchemaRegistryOptions) => {
  const build = path.join(o.dir, `schema-registry-${SCHEMA_REGISTRY_VERSION}`);
  const runDir = o.runDir ?? path.join(o.dir, 'run');
  return {
    build,
    jar: path.join(build, 't2i-schema-registry-1-runner.jar'),
    pid: path.join(runDir, 'schema-registry.pid'),
    log: path.join(runDir, 'schema-registry.log'),
  };
};

async function answers(o: SchemaRegistryOptions): Promise<boolean> {
  if (!(await portOpen(o.host, o.port))) return false;
  try {
    const response = await fetch(`${schemaRegistryUrl(o)}/subjects`, { signal: AbortSignal.timeout(2000) });
    await response.arrayBuffer();
    return response.ok;
  } catch {
    return false;
  }
}

export interface SchemaRegistryStatus {
  pid?: number;
  running: boolean;
  answering: boolean;
  url: string;
  log: string;
}

export async function schemaRegistryStatus(o: SchemaRegistryOptions): Promise<SchemaRegistryStatus> {
  const f = paths(o);
  const pid = readPid(f.pid);
  const running = pid !== undefined && alive(pid);
  return { ...(running ? { pid } : {}), running, answering: await answers(o), url: schemaRegistryUrl(o), log: f.log };
}

/** Builds (first run only) and starts the registry unless it answers already; returns its URL. */
export async function schemaRegistryUp(o: SchemaRegistryOptions, say: (line: string) => void = () => {}): Promise<string> {
  const f = paths(o);
  const url = schemaRegistryUrl(o);
  const before = await schemaRegistryStatus(o);
  if (before.answering) {
    say(`schema registry already answering at ${url}`);
    return url;
  }
  if (!before.running) {
    if (await portOpen(o.host, o.port)) {
      throw new T2iError(
        'STACK_FAILED',
        `port ${o.host}:${o.port} is taken by another process (not a schema registry started by \`t2i stack\`); stop it, or choose another port with T2I_STACK_SCHEMA_REGISTRY_PORT`,
      );
    }
    await build(o, say);
    fs.mkdirSync(path.dirname(f.pid), { recursive: true });
    say(`starting Apicurio Registry ${SCHEMA_REGISTRY_VERSION} on ${url}`);
    const log = fs.openSync(f.log, 'a');
    const child = spawn(
      'java',
      ['-Xmx256m', `-Dquarkus.http.host=${o.host}`, `-Dquarkus.http.port=${o.port}`, '-Dquarkus.log.level=WARN', '-jar', f.jar],
      { detached: true, stdio: ['ignore', log, log], cwd: f.build },
    );
    fs.closeSync(log);
    if (child.pid === undefined) throw new T2iError('STACK_FAILED', 'could not start the schema registry (java)');
    fs.writeFileSync(f.pid, String(child.pid));
    child.unref();
  }
  const deadline = Date.now() + o.startTimeoutMs;
  while (!(await answers(o))) {
    const pid = readPid(f.pid);
    if (pid === undefined || !alive(pid)) {
      throw new T2iError('STACK_FAILED', `the schema registry exited while starting; last lines of ${f.log}:\n${logTail(f.log, 30)}`);
    }
    if (Date.now() > deadline) {
      throw new T2iError(
        'STACK_FAILED',
        `the schema registry did not answer within ${o.startTimeoutMs} ms; see ${f.log}:\n${logTail(f.log, 30)}`,
      );
    }
    await sleep(300);
  }
  say(`schema registry up: ${url} (set T2I_SCHEMA_REGISTRY_URL to it)`);
  return url;
}

/** Stops a registry that schemaRegistryUp() started (SIGTERM, then SIGKILL after 30 s). */
export async function schemaRegistryDown(o: SchemaRegistryOptions, say: (line: string) => void = () => {}): Promise<void> {
  const f = paths(o);
  const pid = readPid(f.pid);
  if (pid === undefined || !alive(pid)) {
    fs.rmSync(f.pid, { force: true });
    return;
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 30_000;
  while (alive(pid) && Date.now() < deadline) await sleep(200);
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  while (alive(pid)) await sleep(100);
  fs.rmSync(f.pid, { force: true });
  say(`schema registry: stopped (pid ${pid})`);
}

async function build(o: SchemaRegistryOptions, say: (line: string) => void): Promise<void> {
  if (fs.existsSync(paths(o).jar)) return;
  try {
    await run('mvn', ['-v']);
  } catch {
    throw new T2iError(
      'STACK_FAILED',
      'Maven is missing: the local schema registry is built from Maven Central jars with mvn (e.g. apt-get install maven)',
    );
  }
  say(`building Apicurio Registry ${SCHEMA_REGISTRY_VERSION} from Maven Central jars (first run only)…`);
  try {
    await run(
      'mvn',
      ['-q', '-B', `-Dt2i.cacheDir=${o.dir}`, '-f', path.join(PACKAGE_ROOT, 'deploy', 'local', 'schema-registry', 'pom.xml'), 'package'],
      {
        maxBuffer: 64 * 1024 * 1024,
      },
    );
  } catch (error) {
    const output = `${(error as { stdout?: string }).stdout ?? ''}${(error as { stderr?: string }).stderr ?? ''}`;
    throw new T2iError('STACK_FAILED', `mvn could not build the schema registry:\n${output.slice(-3000)}`, { cause: error });
  }
}
