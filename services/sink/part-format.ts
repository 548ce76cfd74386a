import type { DeadLetter, ImageResult } from '../common/messages.ts';

/**
 * The sink's spill format. Results and dead letters are buffered in memory, then written to the bucket as
 * sorted "part" objects (JSONL-like, one entry a line) under `jobs/<jobId>/_sink/parts/`. A line is
 *
 *     <row>\t<promptIndex or -1>\t<kind: 0 image, 1 dead letter>\t<JSON payload>
 *
 * so the merge orders and de-duplicates lines by their first three fields without parsing JSON
 * (JSON.stringify escapes tabs and newlines, so the payload never contains either).
 */

export const ENTRY_IMAGE = 0;
export const ENTRY_ERROR = 1;
export type EntryKind = typeof ENTRY_IMAGE | typeof ENTRY_ERROR;

/** What the output needs from an ImageResult (the rest stays on the topic). */
export type ImagePayload = Pick<
  ImageResult,
  'uri' | 'seed' | 'width' | 'height' | 'steps' | 'guidance' | 'model' | 'rowJson' | 'promptCount' | 'inferenceMs' | 'createdAt'
> & { truncation?: string | null };

/** What errors.jsonl needs from a DeadLetter. */
export type ErrorPayload = Pick<DeadLetter, 'error' | 'raw' | 'prompt' | 'rowJson' | 'promptCount' | 'attempts'> & { stage: string };

/** One line of a part, its sort key split out. */
export interface PartEntry {
  row: number;
  /** 0-based prompt index; -1 for a whole-row dead letter (sorts before the row's prompts). */
  promptIndex: number;
  kind: EntryKind;
  /** The JSON payload text. */
  payload: string;
  /** The whole line (without newline). */
  line: string;
}

export function imageEntryLine(result: ImageResult): string {
  const payload: ImagePayload = {
    uri: result.uri,
    seed: result.seed,
    width: result.width,
    height: result.height,
    steps: result.steps,
    guidance: result.guidance,
    model: result.model,
    rowJson: result.rowJson,
    promptCount: result.promptCount,
    inferenceMs: result.inferenceMs,
    createdAt: result.createdAt,
    ...(result.truncation ? { truncation: result.truncation } : {}),
  };
  return `${result.row}\t${result.promptIndex}\t${ENTRY_IMAGE}\t${JSON.stringify(payload)}`;
}

export function errorEntryLine(letter: DeadLetter): string {
  const payload: ErrorPayload = {
    stage: letter.stage,
    error: letter.error,
    raw: letter.raw,
    prompt: letter.prompt,
    rowJson: letter.rowJson,
    promptCount: letter.promptCount,
    attempts: letter.attempts,
  };
  return `${letter.row}\t${letter.promptIndex ?? -1}\t${ENTRY_ERROR}\t${JSON.stringify(payload)}`;
}

/** Splits a part line into its key and payload; undefined for a line that is not one of ours. */
export function parseEntry(line: string): PartEntry | undefined {
  const t1 = line.indexOf('\t');
  const t2 = t1 < 0 ? -1 : line.indexOf('\t', t1 + 1);
  const t3 = t2 < 0 ? -1 : line.indexOf('\t', t2 + 1);
  if (t3 < 0) return undefined;
  const row = Number(line.slice(0, t1));
  const promptIndex = Number(line.slice(t1 + 1, t2));
  const kind = Number(line.slice(t2 + 1, t3));
  if (!Number.isSafeInteger(row) || !Number.isSafeInteger(promptIndex) || (kind !== ENTRY_IMAGE && kind !== ENTRY_ERROR)) return undefined;
  return { row, promptIndex, kind, payload: line.slice(t3 + 1), line };
}

/**
 * Total order of entries: (row, promptIndex, kind, payload). Kind puts an image before a dead letter of
 * the same prompt, which is how "the image wins" falls out of keep-the-first de-duplication; the payload
 * breaks the remaining ties, so the choice between two differing copies never depends on arrival order.
 */
export function compareEntries(a: PartEntry, b: PartEntry): number {
  return a.row - b.row || a.promptIndex - b.promptIndex || a.kind - b.kind || (a.payload < b.payload ? -1 : a.payload > b.payload ? 1 : 0);
}

/** Same (row, promptIndex): the de-duplication key (the jobId is the part's folder). */
export function sameKey(a: PartEntry, b: PartEntry): boolean {
  return a.row === b.row && a.promptIndex === b.promptIndex;
}
