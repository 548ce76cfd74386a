import type { Command } from 'commander';
import { AvroCodec } from '../common/avro.ts';
import { createKafka } from '../common/kafka.ts';
import { ObjectStore } from '../common/object-store.ts';
import { runService } from '../common/service-runtime.ts';
import { workerOptionsFromEnv } from '../worker/options.ts';
import { addConnectionOptions, configFromFlags, type ConnectionFlags } from './common-options.ts';

interface WorkerFlags extends ConnectionFlags {
  maxBatch?: string;
  maxWaitMs?: string;
  engineLatencyMs?: string;
}

export function registerWorkerCommands(program: Command): void {
  addConnectionOptions(program.command('worker'))
    .description('the GPU consumer: prompts from Kafka → FLUX → PNGs in S3 → results on Kafka (long-running)')
    .option('--model <dir>', 'model directory (T2I_MODEL)')
    .option('--provider <name>', 'cpu | cuda | tensorrt (T2I_EXECUTION_PROVIDER)')
    .option('--http-port <port>', 'health/metrics port (T2I_HTTP_PORT)')
    .option('--max-batch <n>', 'prompts per engine pass (T2I_MAX_BATCH)')
    .option('--max-wait-ms <ms>', 'longest wait for batch-mates (T2I_MAX_WAIT_MS)')
    .option('--engine-latency-ms <ms>', 'BENCHMARK ONLY: replace inference by a fixed per-batch delay (T2I_ENGINE_LATENCY_MS)')
    .action(async (flags: WorkerFlags) => {
      const config = configFromFlags(flags);
      const env = {
        ...process.env,
        ...(flags.maxBatch !== undefined ? { T2I_MAX_BATCH: flags.maxBatch } : {}),
        ...(flags.maxWaitMs !== undefined ? { T2I_MAX_WAIT_MS: flags.maxWaitMs } : {}),
        ...(flags.engineLatencyMs !== undefined ? { T2I_ENGINE_LATENCY_MS: flags.engineLatencyMs } : {}),
      };
      const options = workerOptionsFromEnv(env);
      // Loaded here, not at start-up: the engine brings onnxruntime, tokenizers and sharp, which no other command needs.
      const [{ createEngine }, { createWorker }] = await Promise.all([import('../worker/create-engine.ts'), import('../worker/worker.ts')]);
      await runService(
        'worker',
        config,
        async ({ logger, registry }) => {
          const engine = createEngine(config.model, logger, {
            ...(options.maxBatch !== undefined ? { maxBatch: options.maxBatch } : {}),
            ...(options.engineLatencyMs !== undefined ? { engineLatencyMs: options.engineLatencyMs } : {}),
          });
          const store = new ObjectStore(config.s3);
          const worker = createWorker({
            config,
            options,
            kafka: createKafka(config.kafka, logger, `t2i-worker-${options.workerId}`),
            store,
            engine,
            codec: new AvroCodec(),
            logger,
            registry,
          });
          await worker.start();
          return {
            readiness: [{ name: 'worker', check: () => worker.isReady() }],
            drain: async () => {
              await worker.close();
              await engine.close();
              store.close();
            },
            done: worker.done,
          };
        },
        { graceMs: options.graceMs },
      );
    });
}
