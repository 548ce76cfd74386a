import { Registry } from 'prom-client';
import { AvroCodec } from '../../services/common/avro.ts';
import type { Config } from '../../services/common/config.ts';
import { createKafka } from '../../services/common/kafka.ts';
import { silentLogger } from '../../services/common/logger.ts';
import { ObjectStore } from '../../services/common/object-store.ts';
import { createFluxPipeline, type ImageEngine } from '../../services/worker/engine/index.ts';
import { workerOptionsFromEnv, type WorkerOptions } from '../../services/worker/options.ts';
import { createWorker, type Worker } from '../../services/worker/worker.ts';
import { randomName } from './env.ts';

/** An in-process worker on the test's topics and bucket, with the bundled tiny model unless an engine is given. */
export async function startTestWorker(
  config: Config,
  options: { engine?: ImageEngine; workerId?: string; env?: Record<string, string>; groupId?: string } = {},
): Promise<{ worker: Worker; engine: ImageEngine; options: WorkerOptions; stop: () => Promise<void> }> {
  const engine = options.engine ?? createFluxPipeline({ modelDirectory: config.model.dir });
  const workerOptions = {
    ...workerOptionsFromEnv({ T2I_MAX_WAIT_MS: '20', ...options.env }),
    workerId: options.workerId ?? randomName('w-'),
    ...(options.groupId ? { groupId: options.groupId } : {}),
  };
  const logger = silentLogger();
  const store = new ObjectStore(config.s3);
  const worker = createWorker({
    config,
    options: workerOptions,
    kafka: createKafka(config.kafka, logger),
    store,
    engine,
    codec: new AvroCodec(),
    logger,
    registry: new Registry(),
  });
  await worker.start();
  return {
    worker,
    engine,
    options: workerOptions,
    stop: async () => {
      await worker.close();
      await engine.close();
      store.close();
    },
  };
}
