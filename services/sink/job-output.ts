import { ENTRY_IMAGE, type ErrorPayload, type ImagePayload, type PartEntry } from './part-format.ts';

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
 *   (ordered by prompt index) appended;
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
      await target.output(
        outputLine(
          first.image.rowJson,
          images.map((i) => i.image),
        ),
      );
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

/**
 * The row as it came in, with `images` and `image_meta` appended. The original JSON text is kept byte for
 * byte (its keys, their order and number formatting) by splicing before its closing brace; only when that
 * is not safe (it already has those keys, spans lines, or is not an object) is it parsed and re-serialised.
 */
export function outputLine(rowJson: string, images: ImagePayload[]): string {
  const appended =
    `"images":${JSON.stringify(images.map((i) => i.uri))},` +
    `"image_meta":${JSON.stringify(images.map((i) => ({ seed: i.seed, width: i.width, height: i.height, steps: i.steps, guidance: i.guidance, model: i.model })))}`;
  const text = rowJson.trim();
  const parsed = parseObject(text);
  if (parsed && !/[\r\n]/.test(text) && !Object.hasOwn(parsed, 'images') && !Object.hasOwn(parsed, 'image_meta')) {
    const body = text.slice(0, -1).trimEnd();
    return `${body}${Object.keys(parsed).length > 0 ? ',' : ''}${appended}}`;
  }
  const base: Record<string, unknown> = parsed ? { ...parsed } : { row: safeParse(text) };
  delete base.images;
  delete base.image_meta;
  const rest = JSON.stringify(base);
  return `${rest.slice(0, -1)}${rest.length > 2 ? ',' : ''}${appended}}`;
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

/** The row's JSON text when it is one valid single-line JSON value, else its re-serialisation (or null). */
function rowAsJson(rowJson: string): string {
  const text = rowJson.trim();
  const value = safeParse(text);
  if (value === undefined) return 'null';
  return /[\r\n]/.test(text) ? JSON.stringify(value) : text;
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function parseObject(text: string): Record<string, unknown> | undefined {
  const value = safeParse(text);
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}
