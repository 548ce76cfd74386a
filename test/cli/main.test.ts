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
