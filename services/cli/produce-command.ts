import { type Command, InvalidArgumentError } from 'commander';
import { T2iError } from '../common/errors.ts';
import { createLogger } from '../common/logger.ts';
import { ProgressBar } from '../common/progress.ts';
import { initTelemetry } from '../common/telemetry.ts';
import { produceJob } from '../producer/produce-job.ts';
import { parseDefaultsSpec, type JobDefaults, type ProduceCompression } from '../producer/options.ts';
import type { ProduceSummary } from '../producer/types.ts';
import { addConnectionOptions, configFromFlags, type ConnectionFlags } from './common-options.ts';

interface ProduceFlags extends ConnectionFlags {
  job?: string;
  force?: boolean;
  promptKey?: string;
  defaults?: string;
  seed?: number;
  width?: number;
  height?: number;
  steps?: number;
  guidance?: number;
  maxPromptChars?: number;
  maxPromptsPerRow?: number;
  maxLineBytes?: number;
  compression?: ProduceCompression;
  json?: boolean;
  progress: boolean;
}

/** Commander parser for numeric flags; the value's range is checked with the rest of the options. */
function number(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError('expected a number');
  return n;
}

export function registerProduceCommands(program: Command): void {
  const command = program
    .command('produce')
    .description(
      'stream a JSONL prompt file (a path, - for stdin, or s3://bucket/key) onto the prompts topic; prints the job id and counts',
    )
    .argument('<input>', 'FILE, - (stdin) or s3://bucket/key')
    .option('--job <id>', 'job id ([A-Za-z0-9._-]{1,64}); default: a new ULID. The same id gives the same keys and seeds')
    .option('--force', 'reuse a job id that was used before: its outputs are deleted first (otherwise refused)')
    .option('--prompt-key <key>', 'field holding the chat messages (default conversations)')
    .option('--defaults <spec>', 'job defaults as JSON or k=v,k=v: seed, width, height, steps, guidance (e.g. steps=4,guidance=3.5)')
    .option(
      '--seed <n>',
      'seed base: rows without a seed get seeds derived from (this, row, prompt) instead of (job id, row, prompt)',
      number,
    )
    .option('--width <px>', 'default width (multiple of 16, 16..4096)', number)
    .option('--height <px>', 'default height (multiple of 16, 16..4096)', number)
    .option('--steps <n>', 'default inference steps (1..200)', number)
    .option('--guidance <g>', 'default guidance scale (0..100)', number)
    .option('--max-prompt-chars <n>', 'longest prompt in characters (default 4000)', number)
    .option('--max-prompts-per-row <n>', 'most prompts in one row; a row with more gets an error record (default 1000)', number)
    .option('--max-line-bytes <n>', 'longest line in bytes (default 1048576)', number)
    .option('--compression <codec>', 'none or gzip (default none)')
    .option('--json', 'print the summary as JSON')
    .option('--no-progress', 'no progress bar or progress log lines');
  addConnectionOptions(command).action(async (input: string, flags: ProduceFlags) => {
    const config = configFromFlags(flags);
    const logger = createLogger('t2i-produce', config.logLevel);
    const telemetry = await initTelemetry('t2i-produce');
    const defaults: JobDefaults = flags.defaults !== undefined ? parseDefaultsSpec(flags.defaults) : {};
    // Single flags win over --defaults.
    for (const field of ['seed', 'width', 'height', 'steps', 'guidance'] as const) {
      if (flags[field] !== undefined) defaults[field] = flags[field];
    }
    if (flags.compression !== undefined && flags.compression !== 'none' && flags.compression !== 'gzip') {
      throw new T2iError('CONFIG_INVALID', `--compression: none or gzip, got ${flags.compression}`);
    }

    let bar: ProgressBar | undefined;
    const controller = new AbortController();
    const onSignal = () => controller.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    let summary: ProduceSummary;
    try {
      summary = await produceJob({
        config,
        input,
        ...(flags.job !== undefined ? { jobId: flags.job } : {}),
        ...(flags.force ? { force: true } : {}),
        ...(flags.promptKey !== undefined ? { promptKey: flags.promptKey } : {}),
        defaults,
        ...(flags.maxPromptChars !== undefined ? { maxPromptChars: flags.maxPromptChars } : {}),
        ...(flags.maxPromptsPerRow !== undefined ? { maxPromptsPerRow: flags.maxPromptsPerRow } : {}),
        ...(flags.maxLineBytes !== undefined ? { maxLineBytes: flags.maxLineBytes } : {}),
        ...(flags.compression !== undefined ? { tuning: { compression: flags.compression } } : {}),
        logger,
        signal: controller.signal,
        onProgress: (p) => {
          if (!flags.progress) return;
          bar ??= new ProgressBar({
            label: `produce ${p.jobId}`,
            unit: 'bytes',
            rateField: 'rows',
            ...(p.totalBytes !== undefined ? { total: p.totalBytes } : {}),
          });
          bar.update(p.bytesRead, { rows: p.rows, prompts: p.prompts, bad: p.badRows });
        },
      });
      bar?.finish();
    } catch (error) {
      bar?.clear();
      throw error;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await telemetry.shutdown().catch(() => {});
    }
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(summary)}\n`);
    } else {
      const { jobId, rows, prompts, badRows, lines, bytesRead, elapsedMs } = summary;
      process.stdout.write(
        `jobId=${jobId} rows=${rows} prompts=${prompts} badRows=${badRows} lines=${lines} bytes=${bytesRead} elapsedMs=${elapsedMs}\n`,
      );
    }
  });
}
