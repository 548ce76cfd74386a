import { Option, type Command } from 'commander';
import { workerOptionsFromEnv } from '../worker/options.ts';
import { addConnectionOptions, configFromFlags, type ConnectionFlags } from './common-options.ts';

interface WorkerFlags extends ConnectionFlags {
  maxBatch?: string;
  maxWaitMs?: string;
}

export function registerWorkerCommands(program: Command): void {
  addConnectionOptions(program.command('worker'))
    .description('the GPU consumer: prompts from Kafka → FLUX → PNGs in S3 → results on Kafka (long-running)')
    .option('--model <dir>', 'model directory (T2I_MODEL)')
    .option('--provider <name>', 'cpu | cuda | tensorrt (T2I_EXECUTION_PROVIDER)')
    .option('--http-port <port>', 'health/metrics port (T2I_HTTP_PORT)')
    .addOption(new Option('--max-batch <n>', 'prompts per engine pass').env('T2I_MAX_BATCH'))
    .addOption(new Option('--max-wait-ms <ms>', 'longest wait for batch-mates').env('T2I_MAX_WAIT_MS'))
    .action(async (flags: WorkerFlags) => {
      const config = configFromFlags(flags);
      // The flags (commander already took their environment variables) are validated with the rest.
      const options = workerOptionsFromEnv({
        ...process.env,
        ...(flags.maxBatch !== undefined ? { T2I_MAX_BATCH: flags.maxBatch } : {}),
        ...(flags.maxWaitMs !== undefined ? { T2I_MAX_WAIT_MS: flags.maxWaitMs } : {}),
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
