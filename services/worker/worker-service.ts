/**
 * The worker as a long-running service: the runtime (health, metrics, SIGTERM drain) around a worker
 * and its engine. `t2i worker` runs it with the FLUX engine; anything else that implements ImageEngine
 * can be handed in (bench/scale runs it with a fixed-latency engine).
 */
import type { Logger } from 'pino';
import { openCodec } from '../common/avro.ts';
import type { Config } from '../common/config.ts';
import { createKafka } from '../common/kafka.ts';
import { ObjectStore } from '../common/object-store.ts';
import { runService } from '../common/service-runtime.ts';
import type { ImageEngine } from './engine/index.ts';
import type { WorkerOptions } from './options.ts';
import { createWorker } from './worker.ts';

export async function runWorkerService(config: Config, options: WorkerOptions, makeEngine: (logger: Logger) => ImageEngine): Promise<void> {
  await runService(
    'worker',
    config,
    async ({ logger, registry }) => {
      const engine = makeEngine(logger);
      const store = new ObjectStore(config.s3);
      const worker = createWorker({
        config,
        options,
        kafka: createKafka(config.kafka, logger, `t2i-worker-${options.workerId}`),
        store,
        engine,
        codec: await openCodec(config),
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
}
