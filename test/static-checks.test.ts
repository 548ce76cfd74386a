import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { PACKAGE_ROOT } from '../services/common/paths.ts';

// The type check, lint and format check run as tests, so `npm test` (and CI) fail on any of them.
function npx(bin: string, args: string[]): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, [path.join(PACKAGE_ROOT, 'node_modules', '.bin', bin), ...args], {
    cwd: PACKAGE_ROOT,
    encoding: 'utf8',
    maxBuffer: 32 * 1024 * 1024,
  });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

test('typescript: tsc --noEmit passes (strict, noUncheckedIndexedAccess)', () => {
  const { status, output } = npx('tsc', ['--noEmit', '-p', 'tsconfig.json']);
  assert.equal(status, 0, output.slice(0, 5000));
});

test('eslint passes', () => {
  const { status, output } = npx('eslint', ['.', '--max-warnings=0']);
  assert.equal(status, 0, output.slice(0, 5000));
});

test('prettier --check passes', () => {
  const { status, output } = npx('prettier', ['--check', '.']);
  assert.equal(status, 0, output.slice(0, 5000));
});
