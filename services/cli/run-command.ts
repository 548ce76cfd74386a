import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { PACKAGE_ROOT } from '../common/paths.ts';
import { stackOptionsFromEnv } from '../stack/stack.ts';
import { T2iError } from '../common/errors.ts';
import { createLogger } from '../common/logger.ts';
import { parseDefaultsSpec } from '../producer/options.ts';
import { RunInterrupted, runJob } from '../run/run-job.ts';
import { addConnectionOptions, configFromFlags, type ConnectionFlags } from './common-options.ts';

interface RunFlags extends ConnectionFlags {
  job?: string;
  force?: boolean;
  workers: string;
  out?: string;
  promptKey?: string;
  defaults?: string;
  keepStack?: boolean;
  timeout?: string;
  json?: boolean;
}

export function registerRunCommands(program: Command): void {
  addConnectionOptions(program.command('run'))
    .description('the main job on one machine: local stack up if needed, produce FILE, N workers + sink, wait, copy output.jsonl')
    .argument('<file>', 'JSONL prompt file')
    .option('--job <id>', 'job id (default: a new ULID)')
    .option('--force', 'reuse a job id that was used before: its outputs are deleted first (otherwise refused)')
    .option('--workers <n>', 'worker processes', '1')
    .option('--out <file>', 'where to copy output.jsonl (default: <input>.output.jsonl next to the input)')
    .option('--prompt-key <key>', 'field holding the chat messages (default conversations)')
    .option('--defaults <spec>', 'job defaults, e.g. steps=4,width=64 or a JSON object')
    .option('--model <dir>', 'model directory (T2I_MODEL)')
    .option('--provider <name>', 'cpu | cuda | tensorrt (T2I_EXECUTION_PROVIDER)')
    .option('--keep-stack', 'leave a local stack this command started running afterwards')
    .option('--timeout <seconds>', 'give up after this long (default: no limit)')
    .option('--json', 'print the result as JSON')
    .action(async (file: string, flags: RunFlags) => {
      const config = configFromFlags(flags);
      const workers = Number(flags.workers);
      const timeout = flags.timeout === undefined ? undefined : Number(flags.timeout);
      if (timeout !== undefined && !(timeout > 0))
        throw new T2iError('CONFIG_INVALID', `--timeout ${JSON.stringify(flags.timeout)}: expected a number of seconds`);
      // The terminal is for people: one progress bar and plain lines. Library logs (kafkajs's transient
      // "coordinator not available" while a fresh broker starts, …) go to a log file instead.
      const logFile = path.join(PACKAGE_ROOT, '.cache', 'run', 't2i-run.log');
      fs.mkdirSync(path.dirname(logFile), { recursive: true });
      const logger = createLogger('run', config.logLevel === 'info' ? 'warn' : config.logLevel, logFile);
      const say = (line: string) => process.stderr.write(`${line}\n`);
      // SIGTERM (a supervisor, a CI timeout) and Ctrl-C stop the job cleanly: the workers and the sink it
      // started are stopped before it exits, never left running. A second signal exits at once.
      const abort = new AbortController();
      const signals = { SIGTERM: 143, SIGINT: 130 } as const;
      let exitCode: number | undefined;
      for (const [name, code] of Object.entries(signals)) {
        process.on(name, () => {
          if (exitCode !== undefined) process.exit(exitCode);
          exitCode = code;
          say(`\n${name}: stopping the job's workers and sink (again to quit at once)…`);
          abort.abort(name);
        });
      }
      let result: Awaited<ReturnType<typeof runJob>>;
      try {
        result = await runJob({
          signal: abort.signal,
          config,
          input: file,
          workers,
          stack: stackOptionsFromEnv(),
          say,
          logger,
          ...(flags.job ? { jobId: flags.job } : {}),
          ...(flags.force ? { force: true } : {}),
          ...(flags.out ? { out: flags.out } : {}),
          ...(flags.promptKey ? { promptKey: flags.promptKey } : {}),
          ...(flags.defaults ? { defaults: parseDefaultsSpec(flags.defaults) } : {}),
          ...(flags.keepStack ? { keepStack: true } : {}),
          ...(timeout ? { timeoutMs: timeout * 1000 } : {}),
        });
      } catch (error) {
        if (!(error instanceof RunInterrupted)) throw error;
        const next =
          error.stage === 'waiting'
            ? `everything was produced and is safe on the topics: start \`t2i stack up\`, \`t2i worker\` and \`t2i sink\` to finish it, then \`t2i query jobs\``
            : error.stage === 'producing'
              ? 'producing was cut short, so the job can never complete: run the file again (a new job id)'
              : 'nothing was produced';
        say(`${error.reason}: job ${error.jobId} stopped while ${error.stage}; its workers and sink were stopped. ${next}.`);
        process.exit(exitCode ?? 1);
      }
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        return;
      }
      const e = result.event;
      // The job's own time (produce start to completion), not the stack start or a first-run jar download.
      const seconds = result.jobMs / 1000;
      const setup =
        result.elapsedMs - result.jobMs > 2000
          ? ` (+${((result.elapsedMs - result.jobMs) / 1000).toFixed(1)} s starting the stack and services)`
          : '';
      process.stdout.write(
        [
          `job ${result.jobId}: ${e.rows} rows, ${e.images} images, ${e.errors} errors in ${seconds.toFixed(1)} s (${(e.images / seconds).toFixed(2)} images/s)${setup}`,
          `output    ${result.uris.output}`,
          `          copied to ${result.outputFile}`,
          `errors    ${result.uris.errors}`,
          `manifest  ${result.uris.manifest}`,
          `images    ${result.uris.images}`,
          '',
        ].join('\n'),
      );
    });
}
