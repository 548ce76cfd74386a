import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { exited, spawnCli } from '../helpers/cli.ts';
import { createTestEnv } from '../helpers/env.ts';

/** Pids of the live `t2i` processes whose parent is `pid` (from /proc; tsx's esbuild helper is left out). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid && fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes('t2i.js')) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

for (const [signal, code] of [
  ['SIGTERM', 143],
  ['SIGINT', 130],
] as const) {
  test(`${signal} to t2i run stops its workers and sink, says what became of the job, exits ${code} (issue 15, item 11)`, async () => {
    const t = await createTestEnv();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 't2i-run-signal-'));
    const input = path.join(dir, 'prompts.jsonl');
    fs.writeFileSync(
      input,
      Array.from({ length: 3000 }, (_, i) => JSON.stringify({ prompt: `a small red circle number ${i}` })).join('\n'),
    );
    const run = spawnCli(['run', input, '--job', `signal-${signal}`, '--workers', '1'], {
      env: { ...t.env, T2I_LOG_LEVEL: 'warn' },
    });
    let stderr = '';
    const started = new Promise<void>((resolve) =>
      run.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (/started 1 worker and the sink/.test(stderr)) resolve();
      }),
    );
    await started;
    // The workers and the sink are its children now.
    const children = childrenOf(run.pid!);
    assert.equal(children.length, 2, `children of t2i run: ${children.join(', ')}`);
    run.kill(signal);
    const end = await exited(run);
    assert.equal(end.code, code, stderr);
    assert.match(
      stderr,
      new RegExp(`${signal}: job signal-${signal} stopped while (producing|waiting); its workers and sink were stopped`),
    );
    assert.deepEqual(children.filter(alive), [], 'no worker or sink left running');
    fs.rmSync(dir, { recursive: true, force: true });
  });
}

test('SIGKILL to t2i run (which cannot pass it on): its workers and sink notice and stop by themselves', async () => {
  const t = await createTestEnv();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 't2i-run-kill-'));
  const input = path.join(dir, 'prompts.jsonl');
  fs.writeFileSync(input, Array.from({ length: 3000 }, (_, i) => JSON.stringify({ prompt: `a small blue square number ${i}` })).join('\n'));
  const run = spawnCli(['run', input, '--job', 'signal-kill', '--workers', '1'], { env: { ...t.env, T2I_LOG_LEVEL: 'warn' } });
  let stderr = '';
  await new Promise<void>((resolve) =>
    run.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (/started 1 worker and the sink/.test(stderr)) resolve();
    }),
  );
  const children = childrenOf(run.pid!);
  assert.equal(children.length, 2);
  run.kill('SIGKILL');
  await exited(run);
  // They check for their parent every second and drain: wait for the fact (bounded).
  const deadline = Date.now() + 60_000;
  while (children.some(alive)) {
    assert.ok(Date.now() < deadline, `still running: ${children.filter(alive).join(', ')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  fs.rmSync(dir, { recursive: true, force: true });
});
