/**
 * The engine's own thread (see engine-thread.ts): onnxruntime-node runs inference synchronously on the
 * calling thread, so here it blocks only this thread while the worker's main thread keeps fetching,
 * encoding, uploading and heartbeating.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createFluxPipeline, isEngineError, type FluxPipelineOptions, type GenerateRequest } from './engine/index.ts';

type Request = { id: number; kind: 'load' } | { id: number; kind: 'generate'; requests: GenerateRequest[] } | { id: number; kind: 'close' };

const port = parentPort;
if (!port) throw new Error('engine-thread-main.ts runs as a worker thread');
const engine = createFluxPipeline({
  ...(workerData as FluxPipelineOptions),
  logger: { warn: (details, message) => port.postMessage({ kind: 'log', level: 'warn', details, message }) },
});

function serializeError(error: unknown) {
  const e = error as Error & { code?: string; retriable?: boolean };
  return {
    name: e?.name ?? 'Error',
    message: e?.message ?? String(error),
    code: isEngineError(error) ? error.code : undefined,
    retriable: e?.retriable ?? false,
  };
}

port.on('message', (message: Request) => {
  void (async () => {
    try {
      if (message.kind === 'load') {
        await engine.load();
        port.postMessage({ id: message.id, ok: true, info: engine.info });
      } else if (message.kind === 'generate') {
        const images = await engine.generate(message.requests);
        port.postMessage({ id: message.id, ok: true, images }, [...new Set(images.map((image) => image.data.buffer as ArrayBuffer))]);
      } else {
        await engine.close();
        port.postMessage({ id: message.id, ok: true });
      }
    } catch (error) {
      port.postMessage({ id: message.id, ok: false, error: serializeError(error) });
    }
  })();
});
