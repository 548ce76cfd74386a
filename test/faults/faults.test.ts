/**
 * The fault suite. A Kafka broker and an s3proxy of its own (other ports and folder than the shared
 * test stack, so killing them disturbs no other test), real `t2i worker`, `t2i sink` and `t2i produce`
 * processes, and one job per case: each part is killed with SIGKILL mid-job (a fact: the results
 * topic has passed a quarter of the prompts), kept down for a while, and started again. Every case
 * must end in its documented outcome: the job completes, and every row of the input is in
 * output.jsonl or errors.jsonl exactly once, every prompt an image or an error record.
 *
 * The measured table (fault, outcome, rows lost, rows duplicated, time from restart to the job
 * complete) is written to test-output/faults.md; the README's table is copied from a run of it.
 * The faults that need no process kill (a permanent S3 4xx, a too-large row, an unknown-schema
 * message, a reused job id, SIGTERM/Ctrl-C to `t2i run`) have their own tests, listed in that table.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { stackOptionsFromEnv, stackStatus, stackUp, type StackOptions } from '../../services/stack/stack.ts';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';

const STACK: StackOptions = {
  ...stackOptionsFromEnv({ ...process.env, T2I_STACK_DIR: path.join(PACKAGE_ROOT, '.cache', 'faults-stack') }),
  kafkaPort: 19092,
  controllerPort: 19093,
  s3Port: 19000,
};
// createTestEnv (imported below, after these are set) and every child use the suite's own stack.
process.env.KAFKA_BROKERS = `${STACK.host}:${STACK.kafkaPort}`;
process.env.S3_ENDPOINT = `http://${STACK.host}:${STACK.s3Port}`;
const { createTestEnv } = await import('../helpers/env.ts');

const OUT_DIR = path.join(PACKAGE_ROOT, 'test-output', 'faults');
const BIN = path.join(PACKAGE_ROOT, 'bin', 't2i.js');
const ROWS = 240;
const DOWN_MS = { worker: 3000, sink: 3000, s3proxy: 20_000, kafka: 10_000 };

interface Row {
  line: number;
  id: string;
  prompts: number;
  bad: boolean;
}

/** The input: single- and multi-prompt rows, and a few lines that are not JSON (bad rows). */
function writeInput(file: string): Row[] {
  const rows: Row[] = [];
  const lines: string[] = [];
  for (let line = 1; line <= ROWS; line++) {
    if (line % 37 === 0) {
      lines.push(`{"id": "r${line}", "prompt": broken`);
      rows.push({ line, id: `r${line}`, prompts: 0, bad: true });
    } else if (line % 5 === 0) {
      lines.push(JSON.stringify({ id: `r${line}`, prompts: [`a red circle ${line}`, `a blue square ${line}`] }));
      rows.push({ line, id: `r${line}`, prompts: 2, bad: false });
    } else {
      lines.push(JSON.stringify({ id: `r${line}`, prompt: `a green triangle on the left ${line}` }));
      rows.push({ line, id: `r${line}`, prompts: 1, bad: false });
    }
  }
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  return rows;
}

class Service {
  child: ChildProcess | undefined;
  private starts = 0;
  constructor(
    private readonly name: string,
    private readonly args: string[],
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  start(): void {
    const log = fs.openSync(path.join(OUT_DIR, `${this.name}-${++this.starts}.log`), 'w');
    this.child = spawn(process.execPath, [BIN, ...this.args], { env: this.env, stdio: ['ignore', log, log] });
    fs.closeSync(log);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    await exited;
  }

  /** SIGTERM, as a supervisor stops it: it must drain and exit 0 within 30 s (else SIGKILL and fail). */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([exited, new Promise<'hung'>((r) => (timer = setTimeout(() => r('hung'), 30_000)))]);
    clearTimeout(timer);
    if (outcome === 'hung') {
      child.kill('SIGKILL');
      await exited;
      throw new Error(`${this.name} did not exit within 30 s of SIGTERM`);
    }
    assert.equal(outcome[0], 0, `${this.name} exited ${outcome[0] ?? outcome[1]} after SIGTERM`);
  }
}

function stackPid(part: 'kafka' | 's3proxy'): number {
  const pid = Number(fs.readFileSync(path.join(STACK.dir, 'run', `${part}.pid`), 'utf8'));
  assert.ok(Number.isInteger(pid) && pid > 0, `${part} pid`);
  return pid;
}

async function killStackPart(part: 'kafka' | 's3proxy'): Promise<void> {
  const pid = stackPid(part);
  process.kill(pid, 'SIGKILL');
  while ((await stackStatus(STACK)).find((s) => s.part === part)?.running) await new Promise((r) => setTimeout(r, 100));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Outcome {
  fault: string;
  outcome: string;
  rowsLost: number;
  rowsDuplicated: number;
  promptsLost: number;
  recoverMs: number;
}
const outcomes: Outcome[] = [];

before(async () => {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  await stackUp(STACK);
});

after(async () => {
  const { stackDown } = await import('../../services/stack/stack.ts');
  await stackDown(STACK);
  const table = [
    '| fault (mid-job, SIGKILL) | down for | outcome | rows lost | rows duplicated | prompts lost | restart → job complete |',
    '|---|---|---|---|---|---|---|',
    ...outcomes.map(
      (o) =>
        `| ${o.fault} | ${(DOWN_MS[o.fault.split(' ')[0] as keyof typeof DOWN_MS] ?? 0) / 1000} s | ${o.outcome} | ${o.rowsLost} | ${o.rowsDuplicated} | ${o.promptsLost} | ${(o.recoverMs / 1000).toFixed(1)} s |`,
    ),
  ];
  fs.writeFileSync(path.join(PACKAGE_ROOT, 'test-output', 'faults.md'), `${table.join('\n')}\n`);
});

/** Runs one job through a worker and a sink, applying `fault` once a quarter of its prompts have results. */
async function runCase(name: string, fault: (parts: { worker: Service; sink: Service }) => Promise<void>): Promise<void> {
  const env = await createTestEnv({ promptPartitions: 4 });
  const childEnv = {
    ...process.env,
    ...env.env,
    T2I_LOG_LEVEL: 'info',
    T2I_HTTP_PORT: '0',
    T2I_SINK_FLUSH_INTERVAL_MS: '500',
    T2I_MAX_WAIT_MS: '20',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
  const jobId = `fault-${name.split(' ')[0]}`;
  const input = path.join(OUT_DIR, `${jobId}.jsonl`);
  const rows = writeInput(input);
  const prompts = rows.reduce((sum, r) => sum + r.prompts, 0);
  const worker = new Service(`${jobId}-worker`, ['worker'], childEnv);
  const sink = new Service(`${jobId}-sink`, ['sink'], childEnv);
  worker.start();
  sink.start();
  try {
    const produce = spawn(process.execPath, [BIN, 'produce', input, '--job', jobId, '--steps', '8', '--no-progress'], {
      env: childEnv,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let produceErr = '';
    produce.stderr.on('data', (c: Buffer) => (produceErr += c.toString()));
    const [code] = (await once(produce, 'exit')) as [number | null];
    assert.equal(code, 0, `t2i produce failed: ${produceErr}`);

    // Mid-job, as a fact: a quarter of the prompts have results.
    const admin = env.kafka.admin();
    await admin.connect();
    try {
      for (;;) {
        const offsets = await admin.fetchTopicOffsets(env.topics.results);
        const results = offsets.reduce((sum, o) => sum + Number(o.high), 0);
        assert.ok(results < prompts, `${name}: the job finished before the fault could be injected; make it longer`);
        if (results >= prompts / 4) break;
        await sleep(50);
      }
    } finally {
      await admin.disconnect().catch(() => {});
    }
    let restartedAt = 0;
    await fault({
      worker,
      sink,
    });
    restartedAt = Date.now();

    // The job completes: manifest.json appears (polled: it is the outcome this case waits for).
    let manifest: Buffer | undefined;
    const deadline = Date.now() + 180_000;
    while (!(manifest = await env.store.get(`jobs/${jobId}/manifest.json`).catch(() => undefined))) {
      assert.ok(Date.now() < deadline, `${name}: job not complete 180 s after the restart (logs in ${OUT_DIR})`);
      await sleep(250);
    }
    const recoverMs = Date.now() - restartedAt;
    const status = (JSON.parse(manifest.toString('utf8')) as { status: string }).status;
    assert.equal(status, 'complete');

    // Every row exactly once, in output.jsonl (rows with an image) or errors.jsonl (bad rows, failed prompts).
    const output = ((await env.store.get(`jobs/${jobId}/output.jsonl`))?.toString('utf8') ?? '').split('\n').filter(Boolean);
    const errors = ((await env.store.get(`jobs/${jobId}/errors.jsonl`))?.toString('utf8') ?? '').split('\n').filter(Boolean);
    const seen = new Map<string, number>();
    let images = 0;
    for (const line of output) {
      const row = JSON.parse(line) as { id: string; images: (string | null)[] };
      seen.set(row.id, (seen.get(row.id) ?? 0) + 1);
      images += row.images.filter((u) => u !== null).length;
    }
    let failedPrompts = 0;
    for (const line of errors) {
      const record = JSON.parse(line) as { line: number; prompt_index?: number };
      if (record.prompt_index !== undefined) failedPrompts++;
      const id = `r${record.line}`;
      if (rows[record.line - 1]?.bad) seen.set(id, (seen.get(id) ?? 0) + 1);
    }
    const rowsLost = rows.filter((r) => !seen.has(r.id)).length;
    const rowsDuplicated = [...seen.values()].reduce((sum, n) => sum + (n - 1), 0);
    const promptsLost = prompts - images - failedPrompts;
    outcomes.push({
      fault: name,
      outcome: `job complete (${images} images, ${failedPrompts} failed prompts)`,
      rowsLost,
      rowsDuplicated,
      promptsLost,
      recoverMs,
    });
    assert.equal(rowsLost, 0, `${name}: rows lost`);
    assert.equal(rowsDuplicated, 0, `${name}: rows duplicated`);
    assert.equal(promptsLost, 0, `${name}: prompts with neither an image nor an error record`);
    assert.equal(failedPrompts, 0, `${name}: a fault of the environment must not fail prompts`);
  } finally {
    await Promise.all([worker.stop(), sink.stop()]);
  }
}

test('SIGKILL the worker mid-job, restart it: the job completes, every row once', async () => {
  await runCase('worker killed', async ({ worker }) => {
    await worker.kill();
    await sleep(DOWN_MS.worker);
    worker.start();
  });
});

test('SIGKILL the sink mid-job, restart it: the job completes, every row once', async () => {
  await runCase('sink killed', async ({ sink }) => {
    await sink.kill();
    await sleep(DOWN_MS.sink);
    sink.start();
  });
});

test('SIGKILL s3proxy mid-job for 20 s, restart it: the job completes, every row once', async () => {
  await runCase('s3proxy killed', async () => {
    await killStackPart('s3proxy');
    await sleep(DOWN_MS.s3proxy);
    await stackUp(STACK);
  });
});

test('SIGKILL the Kafka broker mid-job, restart it: the job completes, every row once', async () => {
  await runCase('kafka broker killed', async () => {
    await killStackPart('kafka');
    await sleep(DOWN_MS.kafka);
    await stackUp(STACK);
  });
});
