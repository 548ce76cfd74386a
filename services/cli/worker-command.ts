import { Option, type Command } from 'commander';
import { MAX_BATCH_RANGE, MAX_WAIT_MS_RANGE, workerOptionsFromEnv } from '../worker/options.ts';
import { addConnectionOptions, configFromFlags, intArg, type ConnectionFlags } from './common-options.ts';

interface WorkerFlags extends ConnectionFlags {
  maxBatch?: number;
  maxWaitMs?: number;
}

export function registerWorkerCommands(program: Command): void {
  addConnectionOptions(program.command('worker'))
    .description('the GPU consumer: prompts from Kafka → FLUX → PNGs in S3 → results on Kafka (long-running)')
    .option('--model <dir>', 'model directory (T2I_MODEL)')
    .option('--provider <name>', 'cpu | cuda | tensorrt (T2I_EXECUTION_PROVIDER)')
    .option('--http-port <port>', 'health/metrics port (T2I_HTTP_PORT)')
    .addOption(
      new Option('--max-batch <n>', 'prompts per engine pass')
        .env('T2I_MAX_BATCH')
        .argParser(intArg(MAX_BATCH_RANGE.min, MAX_BATCH_RANGE.max)),
    )
    .addOption(
      new Option('--max-wait-ms <ms>', 'longest wait for batch-mates')
        .env('T2I_MAX_WAIT_MS')
        .argParser(intArg(MAX_WAIT_MS_RANGE.min, MAX_WAIT_MS_RANGE.max)),
    )
    .action(async (flags: WorkerFlags) => {
      const config = configFromFlags(flags);
      // Commander parsed and checked the flags (and their environment variables); the rest comes from the environment.
      const options = workerOptionsFromEnv(process.env, {
        ...(flags.maxBatch !== undefined ? { maxBatch: flags.maxBatch } : {}),
        ...(flags.maxWaitMs !== undefined ? { maxWaitMs: flags.maxWaitMs } : {}),
      });
      // Loaded here, not at start-up: the engine brings onnxruntime, tokenizers and sharp, which no other command needs.
      const [{ createEngine }, { runWorkerService }] = await Promise.all([
        import('../worker/create-engine.ts'),
        import('../worker/worker-service.ts'),
      ]);
      await runWorkerService(config, options, (logger) =>
        createEngine(config.model, logger, options.maxBatch !== undefined ? { maxBatch: options.maxBatch } : {}),
      );
    });
}
