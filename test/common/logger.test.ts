/**
 * `t2i run` hands its logger a file so library lines (kafkajs's "group coordinator is not available" while
 * a fresh broker starts, …) stay out of the terminal. They used to reach stderr: the file stream's fd was
 * not open yet when the logger was made, so it fell back to fd 2.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';

test('a logger given a file writes there (appending, folder created), and nothing to stderr', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 't2i-log-'));
  const file = path.join(dir, 'run', 't2i-run.log');
  const script = `
    import { createLogger } from ${JSON.stringify(path.join(PACKAGE_ROOT, 'services/common/logger.ts'))};
    const logger = createLogger('run', 'warn', ${JSON.stringify(file)});
    logger.error({ kafka: 'Connection' }, 'The group coordinator is not available');
  `;
  for (let i = 0; i < 2; i++) {
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(child.status, 0, child.stderr);
    assert.equal(child.stderr, '', 'the terminal gets nothing');
  }
  const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
  assert.equal(lines.length, 2, 'appended, not overwritten');
  assert.match(lines[0]!, /"msg":"The group coordinator is not available"/);
  fs.rmSync(dir, { recursive: true, force: true });
});
