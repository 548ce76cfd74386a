/**
 * Synthetic sink input: the ImageResult / DeadLetter / JobEvent messages a producer and workers would
 * send for a job, built from a small row description. Used by the sink tests and bench/sink (the real
 * worker is not needed to exercise the sink).
 */
import type { TopicNames } from '../../services/common/config.ts';
import type { MessageProducer } from '../../services/common/message-producer.ts';
import { rowKey, type DeadLetter, type ImageResult, type JobEvent } from '../../services/common/messages.ts';
import { imageKey } from '../../services/common/bucket-layout.ts';

export interface RowSpec {
  /** 1-based line number. */
  row: number;
  /** The row's JSON text as the producer would pass it (valid rows). */
  rowJson?: string;
  /** Prompts of a valid row. */
  prompts?: string[];
  /** Prompt indexes that are dead-lettered (stage engine) instead of making an image. */
  failed?: number[];
  /** Prompt indexes that get an image AND a dead letter (the image must win). */
  both?: number[];
  /** A bad row: a whole-row dead letter, no prompts. */
  bad?: { stage: string; error: string; raw: string; rowJson: string | null };
}

export interface JobMessages {
  started: JobEvent;
  produced: JobEvent;
  results: ImageResult[];
  deadLetters: DeadLetter[];
}

const MODEL = 'tiny-flux';

export function imageResult(
  jobId: string,
  row: number,
  promptIndex: number,
  promptCount: number,
  prompt: string,
  rowJson: string,
): ImageResult {
  const key = imageKey(jobId, row, promptIndex);
  return {
    jobId,
    row,
    promptIndex,
    promptCount,
    prompt,
    // Deliberately not the sink's bucket: the sink copies uri as given, so runs in different buckets compare byte for byte.
    uri: `s3://images/${key}`,
    key,
    seed: row * 1000 + promptIndex,
    width: 64,
    height: 64,
    steps: 4,
    guidance: 3.5,
    model: MODEL,
    rowJson,
    worker: 'synthetic',
    inferenceMs: 12.5,
    createdAt: 1_700_000_000_000 + row,
    truncation: null,
  };
}

export function buildJob(jobId: string, rows: RowSpec[], options: { source?: string; paramsJson?: string; at?: number } = {}): JobMessages {
  const results: ImageResult[] = [];
  const deadLetters: DeadLetter[] = [];
  let validRows = 0;
  let prompts = 0;
  let badRows = 0;
  for (const spec of rows) {
    if (spec.bad) {
      badRows++;
      deadLetters.push({
        jobId,
        row: spec.row,
        promptIndex: null,
        promptCount: null,
        stage: spec.bad.stage,
        error: spec.bad.error,
        raw: spec.bad.raw,
        prompt: null,
        rowJson: spec.bad.rowJson,
        attempts: 0,
        createdAt: 1_700_000_000_000 + spec.row,
      });
      continue;
    }
    const list = spec.prompts ?? [];
    const rowJson = spec.rowJson ?? JSON.stringify({ prompt: list[0] ?? '' });
    validRows++;
    prompts += list.length;
    list.forEach((prompt, k) => {
      const fails = spec.failed?.includes(k) ?? false;
      const both = spec.both?.includes(k) ?? false;
      if (!fails || both) results.push(imageResult(jobId, spec.row, k, list.length, prompt, rowJson));
      if (fails || both) {
        deadLetters.push({
          jobId,
          row: spec.row,
          promptIndex: k,
          promptCount: list.length,
          stage: 'engine',
          error: `engine failed on prompt ${k} of row ${spec.row}`,
          raw: null,
          prompt,
          rowJson,
          attempts: 3,
          createdAt: 1_700_000_000_000 + spec.row,
        });
      }
    });
  }
  const at = options.at ?? Date.now();
  const event = (type: JobEvent['type'], atMs: number): JobEvent => ({
    jobId,
    type,
    at: atMs,
    rows: type === 'produced' ? validRows : 0,
    prompts: type === 'produced' ? prompts : 0,
    badRows: type === 'produced' ? badRows : 0,
    images: 0,
    errors: 0,
    source: options.source ?? 'synthetic.jsonl',
    paramsJson: options.paramsJson ?? JSON.stringify({ steps: 4, width: 64, height: 64 }),
    outputUri: null,
    message: null,
  });
  return { started: event('started', at), produced: event('produced', at + 1), results, deadLetters };
}

/** A shuffled copy (deterministic for a seed), to deliver messages in random order. */
export function shuffled<T>(items: T[], seed = 1): T[] {
  const out = [...items];
  let state = seed >>> 0 || 1;
  const random = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

export type SinkInput = { kind: 'result'; value: ImageResult } | { kind: 'error'; value: DeadLetter };

/** Results and dead letters as one list (to shuffle, split or duplicate). */
export function dataMessages(job: JobMessages): SinkInput[] {
  return [
    ...job.results.map((value) => ({ kind: 'result' as const, value })),
    ...job.deadLetters.map((value) => ({ kind: 'error' as const, value })),
  ];
}

/** Sends results and dead letters in order, batched per topic. */
export async function sendData(producer: MessageProducer, topics: TopicNames, items: SinkInput[], batchSize = 500): Promise<void> {
  for (let i = 0; i < items.length; i += batchSize) {
    const batch = items.slice(i, i + batchSize);
    const results = batch
      .filter((m) => m.kind === 'result')
      .map((m) => ({ key: rowKey(m.value.jobId, m.value.row), value: m.value as ImageResult }));
    const errors = batch
      .filter((m) => m.kind === 'error')
      .map((m) => ({ key: rowKey(m.value.jobId, m.value.row), value: m.value as DeadLetter }));
    await producer.send(topics.results, 'ImageResult', results);
    await producer.send(topics.errors, 'DeadLetter', errors);
  }
}

export async function sendEvent(producer: MessageProducer, topics: TopicNames, event: JobEvent): Promise<void> {
  await producer.send(topics.jobs, 'JobEvent', [{ key: event.jobId, value: event }]);
}

/** A varied job: plain, multi-prompt, partly and wholly failed rows, bad rows, image-and-dead-letter prompts. */
export function variedRows(count: number, seed = 7): RowSpec[] {
  const rows: RowSpec[] = [];
  for (let row = 1; row <= count; row++) {
    const r = (row * 2654435761 + seed) % 97;
    if (r < 6) {
      rows.push({ row, bad: { stage: 'parse', error: `line ${row}: invalid JSON`, raw: `{"prompt": "broken ${row}`, rowJson: null } });
      continue;
    }
    const n = 1 + (r % 3);
    const prompts = Array.from({ length: n }, (_, k) => `prompt ${row}.${k}`);
    const rowJson = JSON.stringify({ id: `r${row}`, conversations: prompts.map((content) => ({ role: 'user', content })), meta: { n } });
    const spec: RowSpec = { row, rowJson, prompts };
    if (r >= 90) spec.failed = prompts.map((_, k) => k);
    else if (r >= 80 && n > 1) spec.failed = [n - 1];
    else if (r >= 75) spec.both = [0];
    rows.push(spec);
  }
  return rows;
}
