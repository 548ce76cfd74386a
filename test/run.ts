/**
 * `npm test`: brings the local stack up if nothing answers (and takes it down again if it started it),
 * then runs every test/**\/*.test.ts file with node's test runner. Node 20's --test takes no globs,
 * so the files are listed here. Pass file paths or substrings to run a subset: `npm test -- producer`.
 *
 * `npm run test:unit` (`--unit`): only the files that need no Kafka or S3, without starting the stack.
 * A file needs the stack when it, or a test/ module it imports, imports the test environment
 * (test/helpers/env.ts) or the stack itself; that is followed through imports, not declared by hand.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { stackDown, stackOptionsFromEnv, stackStatus, stackUp } from '../services/stack/stack.ts';
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

const STACK_MODULES = [path.join(PACKAGE_ROOT, 'test/helpers/env.ts'), path.join(PACKAGE_ROOT, 'services/stack/stack.ts')];
const IMPORT =
  /^\s*(?:import|export)\b[^'"]*?from\s*['"](\.{1,2}\/[^'"]+)['"]|^\s*import\s*['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/gm;

/** Whether a test file reaches the local stack through its relative imports inside test/. */
function needsStack(file: string, seen = new Set<string>()): boolean {
  if (STACK_MODULES.includes(file)) return true;
  if (seen.has(file) || !file.startsWith(path.join(PACKAGE_ROOT, 'test'))) return false;
  seen.add(file);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return false;
  }
  for (const match of text.matchAll(IMPORT)) {
    const spec = match[1] ?? match[2] ?? match[3];
    if (spec !== undefined && needsStack(path.resolve(path.dirname(file), spec), seen)) return true;
  }
  return false;
}

const args = process.argv.slice(2);
const unitOnly = args.includes('--unit');
const filters = args.filter((a) => a !== '--unit');
const files = findTests(path.join(PACKAGE_ROOT, 'test'))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .filter((f) => !unitOnly || !needsStack(f));

const stackOptions = stackOptionsFromEnv();
const alreadyUp = unitOnly || (await stackStatus(stackOptions)).every((s) => s.answering);
if (!alreadyUp) {
  await stackUp(stackOptions, (line) => process.stderr.write(`[stack] ${line}\n`));
}

const code = await new Promise<number>((resolve) => {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--test', '--test-reporter=spec', `--test-concurrency=${process.env.T2I_TEST_CONCURRENCY ?? '2'}`, ...files],
    { stdio: 'inherit', cwd: PACKAGE_ROOT, env: { ...process.env, ...(unitOnly ? {} : { T2I_TEST_STACK: '1' }) } },
  );
  child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0)));
});

if (!alreadyUp && process.env.T2I_KEEP_STACK !== '1') {
  await stackDown(stackOptions, (line) => process.stderr.write(`[stack] ${line}\n`));
}
process.exit(code);
