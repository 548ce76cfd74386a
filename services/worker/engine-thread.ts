import { Worker } from 'node:worker_threads';
import {
  EngineError,
  type EngineErrorCode,
  type EngineInfo,
  type FluxPipelineOptions,
  type GenerateRequest,
  type GeneratedImage,
  type ImageEngine,
} from './engine/index.ts';

type Reply =
  | { id: number; ok: true; info?: EngineInfo; images?: GeneratedImage[] }
  | { id: number; ok: false; error: { message: string; code?: EngineErrorCode; retriable: boolean } };
type LogMessage = { kind: 'log'; level: 'warn'; details: Record<string, unknown>; message: string };

/**
 * A FluxPipeline running in a worker thread, behind the same ImageEngine interface. onnxruntime-node
 * runs inference synchronously on the thread that calls it; in the worker's main thread that would stall
 * Kafka fetches, heartbeats, PNG encoding and uploads for the length of every model call. Images come
 * back as transferred buffers (no copy); errors keep their engine code (OUT_OF_MEMORY shrinks batches).
 */
export class EngineThread implements ImageEngine {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (reply: Reply) => void }>();
  private nextId = 1;
  private loadedInfo: EngineInfo | undefined;
  private loading: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  /** Set once the thread has died: every later call fails at once instead of waiting forever. */
  private dead: EngineError | undefined;

  constructor(options: Omit<FluxPipelineOptions, 'logger' | 'onStageTiming' | 'openSession'> & { logger?: FluxPipelineOptions['logger'] }) {
    const { logger, ...rest } = options;
    // Compiled (the images): the thread runs the compiled main; from sources, a boot file loads it through tsx.
    const entry = import.meta.url.endsWith('.js') ? './engine-thread-main.js' : './engine-thread-boot.mjs';
    this.worker = new Worker(new URL(entry, import.meta.url), { workerData: rest });
    this.worker.on('message', (message: Reply | LogMessage) => {
      if ('kind' in message) {
        logger?.warn(message.details, message.message);
        return;
      }
      const entry = this.pending.get(message.id);
      this.pending.delete(message.id);
      entry?.resolve(message);
    });
    this.worker.on('error', (error) =>
      this.failAll(new EngineError('INFERENCE_FAILED', `engine thread crashed: ${error.message}`, { cause: error })),
    );
    this.worker.on('exit', (code) => this.failAll(new EngineError('NOT_LOADED', `engine thread exited (code ${code})`)));
  }

  get info(): EngineInfo {
    if (!this.loadedInfo) throw new EngineError('NOT_LOADED', 'engine thread: call load() first');
    return this.loadedInfo;
  }

  load(): Promise<void> {
    this.loading ??= this.call({ kind: 'load' }).then((reply) => {
      this.loadedInfo = reply.info;
    });
    return this.loading;
  }

  async generate(requests: readonly GenerateRequest[]): Promise<GeneratedImage[]> {
    const reply = await this.call({ kind: 'generate', requests: [...requests] });
    return reply.images ?? [];
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.call({ kind: 'close' });
      } finally {
        await this.worker.terminate();
      }
    })();
    return this.closing;
  }

  private call(
    message: { kind: 'load' } | { kind: 'generate'; requests: GenerateRequest[] } | { kind: 'close' },
  ): Promise<Extract<Reply, { ok: true }>> {
    const id = this.nextId++;
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      this.pending.set(id, {
        resolve: (reply) => {
          if (reply.ok) resolve(reply);
          else reject(new EngineError(reply.error.code ?? 'INFERENCE_FAILED', reply.error.message, { retriable: reply.error.retriable }));
        },
      });
      this.worker.postMessage({ id, ...message });
    });
  }

  private failAll(error: EngineError): void {
    this.dead ??= error;
    for (const [id, entry] of this.pending) {
      this.pending.delete(id);
      entry.resolve({ id, ok: false, error: { message: error.message, code: error.code, retriable: error.retriable } });
    }
  }
}
