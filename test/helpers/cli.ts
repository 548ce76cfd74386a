/** The one way tests run the `t2i` bin: as a user would, a child process of `node bin/t2i.js`. */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import path from 'node:path';
import { after } from 'node:test';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';

export const T2I_BIN = path.join(PACKAGE_ROOT, 'bin', 't2i.js');

export interface CliOptions {
  /** Added to the parent's environment. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Written to stdin, then stdin is closed; without it stdin is ignored. */
  input?: string | Buffer;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `t2i ...args` to its end and returns its exit status and output. */
export function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawnCli(args, { ...options, stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/**
 * Starts a long-running `t2i ...args` (worker, sink, serve, run). It is killed when the test file ends
 * if the test has not stopped it, so no child outlives its test.
 */
export function spawnCli(args: string[], options: CliOptions & { stdio?: StdioOptions } = {}): ChildProcess {
  const child = spawn(process.execPath, [T2I_BIN, ...args], {
    cwd: options.cwd ?? PACKAGE_ROOT,
    env: { ...process.env, ...options.env },
    stdio: options.stdio ?? ['ignore', 'pipe', 'pipe'],
  });
  after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

/** Resolves with the exit code (or signal) once `child` has exited. */
export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}
