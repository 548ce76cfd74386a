/**
 * CPU time of a process from /proc (Linux): user + system of all its threads, in milliseconds. The
 * per-service CPU account of bench/e2e reads it before and after a job for the long-running services.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** user+system CPU of `pid` in ms, or undefined when the process is gone or /proc is missing. */
export function processCpuMs(pid: number): number | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of stat(5) (utime, stime) are at 11 and 12 after the name and state.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return undefined;
  return ((utime + stime) * 1000) / clockTicks();
}

/**
 * CPU of a finished child started through `bash -c '…; times >&2'`: bash's `times` prints its own and
 * its children's user/system time on two lines; the children's line is the second.
 */
export function parseBashTimes(stderr: string): number | undefined {
  const lines = stderr.trim().split('\n').slice(-2);
  const m = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/.exec(lines[1]?.trim() ?? '');
  if (!m) return undefined;
  return (Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4])) * 1000;
}

/**
 * Sets the nice value of every thread of `pid` (Linux's nice is per thread: setpriority on the pid
 * alone changes only its main thread). Threads started later inherit their creator's value. Returns
 * how many threads were changed; raising a priority back needs the privilege to do so.
 */
export function setProcessNice(pid: number, nice: number): number {
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0;
  }
  let changed = 0;
  for (const tid of tids) {
    try {
      os.setPriority(Number(tid), nice);
      changed += 1;
    } catch {
      // the thread ended meanwhile
    }
  }
  return changed;
}
