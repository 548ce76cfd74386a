/**
 * `npm test`: brings the local stack up if nothing answers (and takes it down again if it started it),
 * then runs every test/**\/*.test.ts file with node's test runner. Node 20's --test takes no globs,
 * so the files are listed here. Pass file paths or substrings to run a subset: `npm test -- producer`.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { stackDown, stackOptionsFromEnv, stackStatus, stackUp } from '../deploy/local/stack.ts';
import { PACKAGE_ROOT } from '../services/common/paths.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

function findTests(dir: string): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory() && entry.name !== 'fixtures') out.push(...findTests(full));
    else if (entry.isFile() && entry.name.endsWith('.test.ts')) out.push(full);
  }
  return out.sort();
}

const filters = process.argv.slice(2);
const files = findTests(path.join(PACKAGE_ROOT, 'test')).filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));

const stackOptions = stackOptionsFromEnv();
const before = await stackStatus(stackOptions);
const alreadyUp = before.every((s) => s.answering);
if (!alreadyUp) {
  await stackUp(stackOptions, (line) => process.stderr.write(`[stack] ${line}\n`));
}

const code = await new Promise<number>((resolve) => {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--test', '--test-reporter=spec', `--test-concurrency=${process.env.T2I_TEST_CONCURRENCY ?? '2'}`, ...files],
    { stdio: 'inherit', cwd: PACKAGE_ROOT, env: { ...process.env, T2I_TEST_STACK: '1' } },
  );
  child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0)));
});

if (!alreadyUp && process.env.T2I_KEEP_STACK !== '1') {
  await stackDown(stackOptions, (line) => process.stderr.write(`[stack] ${line}\n`));
}
process.exit(code);
