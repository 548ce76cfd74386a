import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';
import { createTestEnv, randomName } from '../helpers/env.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 't2i-produce-cli-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function t2i(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(PACKAGE_ROOT, 'bin', 't2i.js'), ...args], {
      cwd: PACKAGE_ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const file = path.join(tmp, 'prompts.jsonl');
fs.writeFileSync(
  file,
  [
    '{"id": "a", "conversations": [{"role": "user", "content": "a fox"}]}',
    '{"id": "b", "prompts": ["one", "two"], "seed": 5}',
    'not json',
    '',
  ].join('\n'),
);

test('t2i produce FILE --job X: exit 0 and a machine-friendly summary on stdout (and --json)', async () => {
  const { env } = await createTestEnv({ promptPartitions: 2 });
  const jobId = randomName('cli-');
  const plain = await t2i(['produce', file, '--job', jobId, '--steps', '4'], env);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stdout, new RegExp(`^jobId=${jobId} rows=2 prompts=3 badRows=1 lines=3 bytes=\\d+ elapsedMs=\\d+\\n$`));
  // Not a terminal: no bar redraws, but a final progress line on stderr.
  assert.doesNotMatch(plain.stderr, /\r/);
  assert.match(plain.stderr, new RegExp(`produce ${jobId} .*100%.*rows 2`));

  const json = await t2i(['produce', file, '--job', `${jobId}-2`, '--json', '--no-progress', '--defaults', 'guidance=3.5'], env);
  assert.equal(json.code, 0, json.stderr);
  const summary = JSON.parse(json.stdout) as Record<string, unknown>;
  assert.deepEqual(
    { jobId: summary.jobId, rows: summary.rows, prompts: summary.prompts, badRows: summary.badRows },
    { jobId: `${jobId}-2`, rows: 2, prompts: 3, badRows: 1 },
  );
  assert.equal(json.stderr, '');
});

test('t2i produce: unreachable broker exits non-zero naming the address; bad options exit 2 with the reason', async () => {
  const unreachable = await t2i(['produce', file, '--job', 'x'], { KAFKA_BROKERS: '127.0.0.1:1' });
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.stderr, /KAFKA_UNAVAILABLE: cannot reach Kafka at 127\.0\.0\.1:1/);
  assert.equal(unreachable.stdout, '');

  const badJob = await t2i(['produce', file, '--job', 'no/slashes'], {});
  assert.equal(badJob.code, 2);
  assert.match(badJob.stderr, /job id "no\/slashes": use 1 to 64 letters, digits/);

  const badDefaults = await t2i(['produce', file, '--defaults', 'steps=500'], {});
  assert.equal(badDefaults.code, 2);
  assert.match(badDefaults.stderr, /default steps must be an integer from 1 to 200, got 500/);

  const missing = await t2i(['produce', path.join(tmp, 'nope.jsonl'), '--brokers', '127.0.0.1:1'], {});
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /nope\.jsonl: no such file/);
});
