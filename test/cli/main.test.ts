import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';
import { runCli } from '../helpers/cli.ts';

test('t2i --version prints the package version; exit codes: 0 ok, 2 usage and configuration errors', async () => {
  const { version } = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string };
  const shown = await runCli(['--version']);
  assert.equal(shown.code, 0);
  assert.equal(shown.stdout.trim(), version);
  assert.equal((await runCli(['--help'])).code, 0);
  const unknown = await runCli(['no-such-command']);
  assert.equal(unknown.code, 2, unknown.stderr);
  const badOption = await runCli(['query', 'jobs', '--no-such-flag']);
  assert.equal(badOption.code, 2, badOption.stderr);
  assert.match(badOption.stderr, /unknown option '--no-such-flag'/);
  const badConfig = await runCli(['query', 'jobs'], { env: { T2I_LOG_LEVEL: 'loud' } });
  assert.equal(badConfig.code, 2, badConfig.stderr);
  assert.match(badConfig.stderr, /T2I_LOG_LEVEL/);
});

test('t2i worker: flags are parsed by the command line (a bad flag or its variable is a usage error naming it); the rest of the environment is validated at start', async () => {
  const badFlag = await runCli(['worker', '--max-batch', '0']);
  assert.equal(badFlag.code, 2, badFlag.stderr);
  assert.match(badFlag.stderr, /--max-batch <n>' argument '0' is invalid/);
  const badVariable = await runCli(['worker'], { env: { T2I_MAX_WAIT_MS: 'soon' } });
  assert.equal(badVariable.code, 2, badVariable.stderr);
  assert.match(badVariable.stderr, /value 'soon' from env 'T2I_MAX_WAIT_MS' is invalid/);
  const badOther = await runCli(['worker', '--max-batch', '4'], { env: { T2I_PIPELINE_DEPTH: '0' } });
  assert.equal(badOther.code, 2, badOther.stderr);
  assert.match(badOther.stderr, /T2I_PIPELINE_DEPTH="0"/);
});
