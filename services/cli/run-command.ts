import type { Command } from 'commander';
import { stackOptionsFromEnv } from '../../deploy/local/stack.ts';
import { T2iError } from '../common/errors.ts';
import { createLogger } from '../common/logger.ts';
import { parseDefaultsSpec } from '../producer/options.ts';
import { runJob } from '../run/run-job.ts';
import { addConnectionOptions, configFromFlags, type ConnectionFlags } from './common-options.ts';

interface RunFlags extends ConnectionFlags {
  job?: string;
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
      const logger = createLogger('run', config.logLevel === 'info' ? 'warn' : config.logLevel);
      const say = (line: string) => process.stderr.write(`${line}\n`);
      const result = await runJob({
        config,
        input: file,
        workers,
        stack: stackOptionsFromEnv(),
        say,
        logger,
        ...(flags.job ? { jobId: flags.job } : {}),
        ...(flags.out ? { out: flags.out } : {}),
        ...(flags.promptKey ? { promptKey: flags.promptKey } : {}),
        ...(flags.defaults ? { defaults: parseDefaultsSpec(flags.defaults) } : {}),
        ...(flags.keepStack ? { keepStack: true } : {}),
        ...(timeout ? { timeoutMs: timeout * 1000 } : {}),
      });
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        return;
      }
      const e = result.event;
      const seconds = result.elapsedMs / 1000;
      process.stdout.write(
        [
          `job ${result.jobId}: ${e.rows} rows, ${e.images} images, ${e.errors} errors in ${seconds.toFixed(1)} s (${(e.images / seconds).toFixed(2)} images/s)`,
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
