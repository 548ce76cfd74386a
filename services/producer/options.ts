import type { Readable } from 'node:stream';
import type { Kafka } from 'kafkajs';
import { ulid } from 'ulid';
import type { Config } from '../common/config.ts';
import { T2iError } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import { JOB_ID_PATTERN, JOB_ID_RULE } from '../common/messages.ts';
import { OVERRIDE_FIELDS, overrideProblem, type GenerationOverrides, type OverrideField } from './overrides.ts';
import type { ProduceProgress } from './types.ts';

/**
 * Job-wide generation parameters. A row's own value wins over these; unset ones stay null in the
 * request (the worker uses the model's default). `seed` is the base of the derived seeds, see seeds.ts.
 */
export type JobDefaults = GenerationOverrides;

export type ProduceCompression = 'none' | 'gzip';

/** How requests are batched and how much may be unacknowledged. Defaults suit a local broker and large files. */
export interface ProduceTuning {
  /** Messages per produce request, at most. Default 5000 (kafkajs groups a request's messages by partition in O(n²)). */
  maxBatchMessages?: number;
  /** Encoded bytes per produce request, at most (a single larger message still goes alone). Default 1 MiB. */
  maxBatchBytes?: number;
  /** Encoded bytes per partition within one request: stays under the broker's message.max.bytes (1 MiB default). Default 900 000. */
  maxPartitionBytes?: number;
  /**
   * Produce requests sent but not acknowledged yet, at most; reading pauses beyond. Default 1: kafkajs's
   * idempotent producer holds a per-broker lock for the whole round trip, so a second request only waits
   * behind the first: it overlaps our reading and encoding with the round trip (bench/producer: +8-20%)
   * and costs memory (peak RSS +15 MiB on the 1 GiB file).
   * Raise it for a client or cluster that sends requests concurrently.
   */
  maxInFlight?: number;
  /** Compression of produce requests. Default none (fastest on a local or LAN broker, see bench/producer). */
  compression?: ProduceCompression;
  /** Longest wait for the broker at start (connect, topics), ms. Default 15 000. */
  connectTimeoutMs?: number;
}

export interface ProduceOptions {
  config: Config;
  /** A file path, `-` (stdin), `s3://bucket/key`, or a stream of JSONL bytes. */
  input: string | Readable;
  /** Name of the input for the job's `source` when `input` is a stream. Default `stream`. */
  sourceName?: string;
  /** Size of a stream input in bytes, when known (progress and ETA). */
  totalBytes?: number;
  /** Job id (`[A-Za-z0-9._-]{1,64}`); generated (ULID) when absent. The same id gives the same keys and seeds. */
  jobId?: string;
  /** Field holding the chat messages. Default `conversations`. */
  promptKey?: string;
  defaults?: JobDefaults;
  /** Longest prompt, characters. Default 4000. */
  maxPromptChars?: number;
  /** Most prompts in one row; a row with more becomes an error record. Default 1000. */
  maxPromptsPerRow?: number;
  /** Longest line, bytes. Default 1 MiB. */
  maxLineBytes?: number;
  /** How much of a bad line its error record keeps, bytes. Default 4 KiB. */
  maxRawBytes?: number;
  tuning?: ProduceTuning;
  /** Called as reading goes on (at most every chunk) and once at the end. */
  onProgress?: (progress: ProduceProgress) => void;
  /** Aborts the job: reading stops, a `failed` event is sent, produceJob rejects. */
  signal?: AbortSignal;
  logger?: Logger;
  /** A Kafka client to use instead of one made from `config` (tests, `t2i run`). */
  kafka?: Kafka;
  /** Start the job even if its id was used: the old job's outputs are deleted first. Default false: refused. */
  force?: boolean;
}

export interface ResolvedProduceOptions {
  jobId: string;
  promptKey: string;
  defaults: Readonly<JobDefaults>;
  maxPromptChars: number;
  maxPromptsPerRow: number;
  maxLineBytes: number;
  maxRawBytes: number;
  tuning: Readonly<Required<ProduceTuning>>;
}

export const DEFAULT_PROMPT_KEY = 'conversations';
export const DEFAULT_MAX_PROMPT_CHARS = 4000;
export const DEFAULT_MAX_PROMPTS_PER_ROW = 1000;
export const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;
export const DEFAULT_MAX_RAW_BYTES = 4096;

const DEFAULT_TUNING: Required<ProduceTuning> = {
  maxBatchMessages: 5000,
  maxBatchBytes: 1024 * 1024,
  maxPartitionBytes: 900_000,
  maxInFlight: 1,
  compression: 'none',
  connectTimeoutMs: 15_000,
};

/** Validates and defaults the options once; every problem is reported together, naming the option. */
export function resolveProduceOptions(options: Omit<ProduceOptions, 'config' | 'input'>): ResolvedProduceOptions {
  const problems: string[] = [];
  const jobId = options.jobId ?? ulid();
  if (!JOB_ID_PATTERN.test(jobId)) problems.push(`job id ${JSON.stringify(jobId)}: use ${JOB_ID_RULE}`);
  const promptKey = options.promptKey ?? DEFAULT_PROMPT_KEY;
  if (promptKey === '') problems.push('prompt key: must not be empty');
  const defaults: JobDefaults = {};
  for (const field of OVERRIDE_FIELDS) {
    const value = options.defaults?.[field];
    if (value === undefined) continue;
    const problem = overrideProblem(field, value);
    if (problem) problems.push(`default ${problem}`);
    else defaults[field] = value;
  }
  const positive = (name: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number => {
    if (value === undefined) return fallback;
    if (!Number.isSafeInteger(value) || value < 1 || value > max)
      problems.push(`${name}: must be an integer from 1 to ${max}, got ${value}`);
    return value;
  };
  const maxPromptChars = positive('max prompt chars', options.maxPromptChars, DEFAULT_MAX_PROMPT_CHARS);
  const maxPromptsPerRow = positive('max prompts per row', options.maxPromptsPerRow, DEFAULT_MAX_PROMPTS_PER_ROW);
  const maxLineBytes = positive('max line bytes', options.maxLineBytes, DEFAULT_MAX_LINE_BYTES, 64 * 1024 * 1024);
  const maxRawBytes = positive('max raw bytes', options.maxRawBytes, DEFAULT_MAX_RAW_BYTES, 1024 * 1024);
  const t = options.tuning ?? {};
  const tuning: Required<ProduceTuning> = {
    maxBatchMessages: positive('maxBatchMessages', t.maxBatchMessages, DEFAULT_TUNING.maxBatchMessages),
    maxBatchBytes: positive('maxBatchBytes', t.maxBatchBytes, DEFAULT_TUNING.maxBatchBytes),
    maxPartitionBytes: positive('maxPartitionBytes', t.maxPartitionBytes, DEFAULT_TUNING.maxPartitionBytes),
    maxInFlight: positive('maxInFlight', t.maxInFlight, DEFAULT_TUNING.maxInFlight, 64),
    compression: t.compression ?? DEFAULT_TUNING.compression,
    connectTimeoutMs: positive('connectTimeoutMs', t.connectTimeoutMs, DEFAULT_TUNING.connectTimeoutMs),
  };
  if (tuning.compression !== 'none' && tuning.compression !== 'gzip')
    problems.push(`compression: none or gzip, got ${String(tuning.compression)}`);
  if (problems.length > 0) throw new T2iError('CONFIG_INVALID', `t2i produce: ${problems.join('; ')}`);
  return Object.freeze({
    jobId,
    promptKey,
    defaults: Object.freeze(defaults),
    maxPromptChars,
    maxPromptsPerRow,
    maxLineBytes,
    maxRawBytes,
    tuning: Object.freeze(tuning),
  });
}

/**
 * Parses a `--defaults` value: a JSON object (`{"steps": 4, "guidance": 3.5}`) or `k=v,k=v`
 * (`steps=4,guidance=3.5`). Keys: seed, width, height, steps, guidance. Values are checked by
 * resolveProduceOptions; here only the shape and the keys.
 */
export function parseDefaultsSpec(spec: string): JobDefaults {
  const text = spec.trim();
  let entries: [string, unknown][];
  if (text.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new T2iError(
        'CONFIG_INVALID',
        `--defaults: invalid JSON (${(error as Error).message}); e.g. '{"steps": 4, "guidance": 3.5}' or steps=4,guidance=3.5`,
      );
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
      throw new T2iError('CONFIG_INVALID', '--defaults: expected a JSON object');
    entries = Object.entries(parsed);
  } else {
    entries = [];
    for (const part of text.split(',')) {
      if (part.trim() === '') continue;
      const eq = part.indexOf('=');
      if (eq <= 0) throw new T2iError('CONFIG_INVALID', `--defaults: "${part.trim()}" is not key=value; e.g. steps=4,guidance=3.5`);
      const raw = part.slice(eq + 1).trim();
      entries.push([part.slice(0, eq).trim(), raw === '' ? Number.NaN : Number(raw)]);
    }
  }
  const out: JobDefaults = {};
  for (const [key, value] of entries) {
    if (!(OVERRIDE_FIELDS as readonly string[]).includes(key)) {
      throw new T2iError('CONFIG_INVALID', `--defaults: unknown key "${key}"; known: ${OVERRIDE_FIELDS.join(', ')}`);
    }
    if (value === null) continue;
    out[key as OverrideField] = value as number;
  }
  return out;
}
