import { ENTRY_IMAGE, type ErrorPayload, type ImagePayload, type PartEntry } from './part-format.ts';
import { oneLine, spliceRow } from './row-splice.ts';

/** What one assembly pass over a job's merged entries found; feeds manifest.json and the completed event. */
export interface AssemblyStats {
  /** Rows written to output.jsonl (rows with at least one image). */
  rows: number;
  images: number;
  /** Records written to errors.jsonl. */
  errors: number;
  /** Whole-row dead letters (promptIndex null). */
  badRows: number;
  failedPrompts: number;
  /** Rows listed in both files: some prompts made images, some failed. */
  partialRows: number;
  models: string[];
  inferenceMsTotal: number;
  /** createdAt of the first and last image result (epoch ms), when there are images. */
  firstResultAt: number | null;
  lastResultAt: number | null;
}

export interface AssemblyTarget {
  /** One output.jsonl line (no newline). */
  output: (line: string) => void | Promise<void>;
  /** One errors.jsonl line (no newline). */
  error: (line: string) => void | Promise<void>;
}

/**
 * Turns the merged, de-duplicated entries of a job (ordered by row, then prompt index, whole-row dead
 * letters first) into output.jsonl and errors.jsonl lines, one row at a time: memory holds one row.
 *
 * - a row with at least one image → output.jsonl: the original row with `images` and `image_meta`
 *   appended, both indexed by prompt (entry k belongs to prompt k; null where prompt k failed);
 * - each failed prompt → an errors.jsonl record `{line, row, prompt_index, prompt, stage, error}`, so a
 *   partly failed row is in both files and a wholly failed row only in errors.jsonl;
 * - each bad row → `{line, row, stage, error, raw}` (row: the parsed row when it parsed, else null).
 * An image and a dead letter for the same prompt never both reach here: the merge keeps the image.
 */
export async function assembleJobOutput(entries: AsyncIterable<PartEntry>, target: AssemblyTarget): Promise<AssemblyStats> {
  const stats: AssemblyStats = {
    rows: 0,
    images: 0,
    errors: 0,
    badRows: 0,
    failedPrompts: 0,
    partialRows: 0,
    models: [],
    inferenceMsTotal: 0,
    firstResultAt: null,
    lastResultAt: null,
  };
  const models = new Set<string>();
  let currentRow = -1;
  let images: { index: number; image: ImagePayload }[] = [];
  let failures = 0;

  const finishRow = async () => {
    if (currentRow < 0) return;
    if (images.length > 0) {
      const first = images[0] as { image: ImagePayload };
      const slots = Math.max(first.image.promptCount, ...images.map((i) => i.index + 1));
      const aligned: (ImagePayload | null)[] = Array.from({ length: slots }, () => null);
      for (const { index, image } of images) aligned[index] = image;
      await target.output(outputLine(first.image.rowJson, aligned));
      stats.rows++;
      stats.images += images.length;
      if (failures > 0) stats.partialRows++;
    }
    images = [];
    failures = 0;
  };

  for await (const entry of entries) {
    if (entry.row !== currentRow) {
      await finishRow();
      currentRow = entry.row;
    }
    if (entry.kind === ENTRY_IMAGE) {
      const image = JSON.parse(entry.payload) as ImagePayload;
      images.push({ index: entry.promptIndex, image });
      models.add(image.model);
      stats.inferenceMsTotal += image.inferenceMs;
      stats.firstResultAt = stats.firstResultAt === null ? image.createdAt : Math.min(stats.firstResultAt, image.createdAt);
      stats.lastResultAt = stats.lastResultAt === null ? image.createdAt : Math.max(stats.lastResultAt, image.createdAt);
    } else {
      const letter = JSON.parse(entry.payload) as ErrorPayload;
      await target.error(errorLine(entry.row, entry.promptIndex, letter));
      stats.errors++;
      if (entry.promptIndex < 0) stats.badRows++;
      else {
        stats.failedPrompts++;
        failures++;
      }
    }
  }
  await finishRow();
  stats.models = [...models].sort();
  stats.inferenceMsTotal = Math.round(stats.inferenceMsTotal * 1000) / 1000;
  return stats;
}

/** One image_meta entry: the generation settings, and the tokenizers' truncation when a prompt was cut. */
export function imageMeta(image: ImagePayload): Record<string, unknown> {
  const meta: Record<string, unknown> = {
    seed: image.seed,
    width: image.width,
    height: image.height,
    steps: image.steps,
    guidance: image.guidance,
    model: image.model,
  };
  if (image.truncation) meta.truncated = JSON.parse(image.truncation) as unknown;
  return meta;
}

/**
 * The row as it came in, with `images` and `image_meta` appended (entry k for prompt k, null where it
 * failed). The row's text is spliced, never re-serialised, so every field stays byte for byte (see
 * row-splice.ts); members the row already had under those names are kept as `input_images` /
 * `input_image_meta`.
 */
export function outputLine(rowJson: string, images: readonly (ImagePayload | null)[]): string {
  const appended =
    `"images":${JSON.stringify(images.map((i) => i?.uri ?? null))},` +
    `"image_meta":${JSON.stringify(images.map((i) => (i ? imageMeta(i) : null)))}`;
  return spliceRow(rowJson, appended);
}

/** One errors.jsonl record; key order: line, row, [prompt_index, prompt,] stage, error, [raw]. */
export function errorLine(line: number, promptIndex: number, letter: ErrorPayload): string {
  const rowText = letter.rowJson === null ? 'null' : rowAsJson(letter.rowJson);
  let out = `{"line":${line},"row":${rowText}`;
  if (promptIndex >= 0) out += `,"prompt_index":${promptIndex},"prompt":${JSON.stringify(letter.prompt)}`;
  out += `,"stage":${JSON.stringify(letter.stage)},"error":${JSON.stringify(letter.error)}`;
  if (letter.raw !== null) out += `,"raw":${JSON.stringify(letter.raw)}`;
  return `${out}}`;
}

/** The row's JSON text on one line, as it came (not re-serialised); null when it is not valid JSON. */
function rowAsJson(rowJson: string): string {
  const text = rowJson.trim();
  try {
    // Validation only (JSON.parse is iterative in V8; stringify, which is not, is never used on rows).
    JSON.parse(text);
  } catch {
    return 'null';
  }
  return oneLine(text);
}
