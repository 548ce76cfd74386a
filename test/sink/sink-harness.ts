/** Runs sinks against a test env (real broker, real S3) and reads what they wrote. */
import type { Readable } from 'node:stream';
import { after } from 'node:test';
import { AvroCodec } from '../../services/common/avro.ts';
import { silentLogger } from '../../services/common/logger.ts';
import { MessageProducer } from '../../services/common/message-producer.ts';
import type { JobEvent } from '../../services/common/messages.ts';
import { ObjectStore } from '../../services/common/object-store.ts';
import type { SinkOptions } from '../../services/sink/options.ts';
import { createSink, type Sink } from '../../services/sink/sink.ts';
import type { FailedJobManifest, JobManifest } from '../../services/sink/types.ts';
import { randomName, type TestEnv } from '../helpers/env.ts';
import { watchTopic } from '../helpers/topic-reader.ts';

/** An ObjectStore that records the order in which objects were completely written. */
export class RecordingStore extends ObjectStore {
  readonly written: string[] = [];

  override async put(key: string, body: Uint8Array | string, contentType?: string, metadata?: Record<string, string>): Promise<void> {
    await super.put(key, body, contentType, metadata);
    this.written.push(key);
  }

  override async putStream(key: string, body: Readable, contentType?: string): Promise<void> {
    await super.putStream(key, body, contentType);
    this.written.push(key);
  }
}

export interface RunningSink {
  sink: Sink;
  store: RecordingStore;
  /** Resolves with the manifest when this sink completes the job. */
  completion: (jobId: string) => Promise<JobManifest>;
  /** Resolves with the manifest when this sink fails the job. */
  failure: (jobId: string) => Promise<FailedJobManifest>;
}

/** One promise per job id, resolved by whoever learns the outcome first (before or after it is awaited). */
function deferredByJob<T>(): (jobId: string) => { promise: Promise<T>; resolve: (value: T) => void } {
  const entries = new Map<string, { promise: Promise<T>; resolve: (value: T) => void }>();
  return (jobId) => {
    let entry = entries.get(jobId);
    if (!entry) {
      let resolve: (value: T) => void = () => {};
      const promise = new Promise<T>((r) => (resolve = r));
      entry = { promise, resolve };
      entries.set(jobId, entry);
    }
    return entry;
  };
}

/** A sink in this process on the env's topics and bucket, closed after the file's tests. */
export async function startSink(env: TestEnv, options: Partial<SinkOptions> = {}): Promise<RunningSink> {
  const store = new RecordingStore(env.config.s3);
  const waiter = deferredByJob<JobManifest>();
  const failed = deferredByJob<FailedJobManifest>();
  const sink = createSink({
    config: env.config,
    logger: silentLogger(),
    kafka: env.kafka,
    store,
    codec: new AvroCodec(),
    groupId: options.groupId ?? randomName('sink-'),
    flushIntervalMs: 300,
    sessionTimeoutMs: 6000,
    onJobCompleted: (manifest) => waiter(manifest.jobId).resolve(manifest),
    onJobFailed: (manifest) => failed(manifest.jobId).resolve(manifest),
    ...options,
  });
  await sink.start();
  after(async () => {
    await sink.close().catch(() => {});
    store.close();
  });
  return {
    sink,
    store,
    completion: (jobId) => withTimeout(waiter(jobId).promise, 40_000, `job ${jobId} did not complete`),
    failure: (jobId) => withTimeout(failed(jobId).promise, 40_000, `job ${jobId} did not fail`),
  };
}

export async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

export async function producerFor(env: TestEnv): Promise<MessageProducer> {
  const producer = new MessageProducer(env.kafka, new AvroCodec());
  await producer.connect();
  after(() => producer.disconnect());
  return producer;
}

export async function readText(store: ObjectStore, key: string): Promise<string | undefined> {
  return (await store.get(key))?.toString('utf8');
}

/** Polls until `check` returns a value (not undefined), or fails after `ms`. */
export async function waitFor<T>(check: () => Promise<T | undefined>, ms: number, message: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(message);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Follows the env's job events (from the beginning); `next` waits for the first one that matches. */
export async function watchJobEvents(env: TestEnv): Promise<{ next: (match: (e: JobEvent) => boolean) => Promise<JobEvent> }> {
  const watch = await watchTopic(env.kafka, new AvroCodec(), env.topics.jobs, 'JobEvent');
  const next = async (match: (e: JobEvent) => boolean) => {
    const records = await watch.until('the job event', (all) => all.some((r) => match(r.value)), 40_000);
    return records.find((r) => match(r.value))!.value;
  };
  return { next };
}
