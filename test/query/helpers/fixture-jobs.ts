/**
 * Writes jobs into a test bucket in the layout the worker and sink produce (design.md, Output), so the
 * query service is tested without running the pipeline: images/<row 9 digits>-<k>.png (real PNGs made
 * with sharp, carrying the worker's `t2i-stream` iTXt metadata chunk), output.jsonl, errors.jsonl,
 * manifest.json (complete jobs only), plus a file under _sink/ that the query service must ignore.
 */
import zlib from 'node:zlib';
import sharp from 'sharp';
import type { ObjectStore } from '../../../services/common/object-store.ts';
import { promptsOf } from '../../../services/query/rows.ts';

export interface FixtureRow {
  /** Input row number (1-based line of the input file). */
  row: number;
  /** The input row object as the producer read it. */
  input: Record<string, unknown>;
  /** Prompt indexes that failed (no image; an error record instead). */
  failed?: number[];
}

export interface FixtureJob {
  jobId: string;
  rows: FixtureRow[];
  /** Extra error records (bad input lines), written to errors.jsonl before the failed prompts'. */
  badLines?: { line: number; error: string; raw: string }[];
  /** Write manifest.json (complete); otherwise only images (running). Default true. */
  complete?: boolean;
  /** Image side in pixels. Default 64. */
  size?: number;
  model?: string;
}

export const FIXTURE_MODEL = 'tiny-flux';

export function fixtureSeed(row: number, k: number): number {
  return row * 1000 + k;
}

/** A PNG whose color depends on (row, k), with the generation metadata in an iTXt chunk after IHDR. */
export async function fixturePng(row: number, k: number, meta: Record<string, unknown>, size: number): Promise<Buffer> {
  const hue = (row * 47 + k * 113) % 360;
  const [r, g, b] = hslToRgb(hue / 360, 0.55, 0.55);
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}"><defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="rgb(${r},${g},${b})"/><stop offset="1" stop-color="rgb(${255 - r},${255 - g},${255 - b})"/></linearGradient></defs><rect width="100%" height="100%" fill="url(#g)"/><circle cx="${size / 2}" cy="${size / 2}" r="${size / 4}" fill="rgba(255,255,255,0.5)"/></svg>`;
  const png = await sharp(Buffer.from(svg)).png().toBuffer();
  return insertITxt(png, 't2i-stream', JSON.stringify(meta));
}

export async function writeFixtureJob(
  store: ObjectStore,
  job: FixtureJob,
): Promise<{ outputLines: string[]; errorLines: string[]; imageKeys: string[] }> {
  const size = job.size ?? 64;
  const model = job.model ?? FIXTURE_MODEL;
  const prefix = `jobs/${job.jobId}/`;
  const outputLines: string[] = [];
  const errorLines: string[] = (job.badLines ?? []).map((bad) =>
    JSON.stringify({ line: bad.line, row: bad.line, stage: 'parse', error: bad.error, raw: bad.raw }),
  );
  const imageKeys: string[] = [];
  let prompts = 0;
  for (const { row, input, failed = [] } of job.rows) {
    const images: string[] = [];
    const imageMeta: Record<string, unknown>[] = [];
    const rowPrompts = promptsOf(input);
    prompts += rowPrompts.length;
    for (const [k, prompt] of rowPrompts.entries()) {
      if (failed.includes(k)) {
        errorLines.push(
          JSON.stringify({ line: row, row, stage: 'engine', error: 'engine failed on this prompt', prompt_index: k, prompt }),
        );
        continue;
      }
      const meta = { seed: fixtureSeed(row, k), width: size, height: size, steps: 4, guidance: 3.5, model };
      const key = `${prefix}images/${String(row).padStart(9, '0')}-${k}.png`;
      await store.put(key, await fixturePng(row, k, { prompt, ...meta }, size), 'image/png');
      imageKeys.push(key);
      images.push(store.uri(key));
      imageMeta.push(meta);
    }
    outputLines.push(JSON.stringify({ ...input, images, image_meta: imageMeta }));
  }
  await store.put(`${prefix}_sink/state.json`, JSON.stringify({ working: true }), 'application/json');
  if (job.complete !== false) {
    await store.put(`${prefix}output.jsonl`, outputLines.map((l) => `${l}\n`).join(''), 'application/x-ndjson');
    await store.put(`${prefix}errors.jsonl`, errorLines.map((l) => `${l}\n`).join(''), 'application/x-ndjson');
    const manifest = {
      jobId: job.jobId,
      status: 'complete',
      counts: {
        rows: job.rows.length,
        inputRows: job.rows.length + (job.badLines?.length ?? 0),
        prompts,
        images: imageKeys.length,
        errors: errorLines.length,
        badRows: job.badLines?.length ?? 0,
      },
      parameters: { width: size, height: size, steps: 4, guidance: 3.5 },
      model,
      source: 'prompts.jsonl',
      started: '2025-03-01T10:00:00.000Z',
      finished: '2025-03-01T10:05:00.000Z',
      timings: { totalMs: 300_000 },
    };
    await store.put(`${prefix}manifest.json`, JSON.stringify(manifest, null, 2), 'application/json');
  }
  return { outputLines, errorLines, imageKeys };
}

function insertITxt(png: Buffer, keyword: string, text: string): Buffer {
  const data = Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]);
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  chunk.write('iTXt', 4, 'latin1');
  data.copy(chunk, 8);
  chunk.writeUInt32BE(zlib.crc32(chunk.subarray(4, 8 + data.length)) >>> 0, 8 + data.length);
  const headerEnd = 8 + 8 + png.readUInt32BE(8) + 4;
  return Buffer.concat([png.subarray(0, headerEnd), chunk, png.subarray(headerEnd)]);
}

function hslToRgb(h: number, s: number, l: number): [number, number, number] {
  const f = (n: number) => {
    const k = (n + h * 12) % 12;
    const a = s * Math.min(l, 1 - l);
    return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

/** A small, varied set of input rows in the formats the producer accepts. */
export function sampleRows(count: number): FixtureRow[] {
  const subjects = [
    'a red fox in fresh snow',
    'a lighthouse at dusk',
    'a bowl of ramen, studio light',
    'an astronaut riding a horse',
    'a watercolor map of Lisbon',
    'a robot reading a book',
  ];
  const rows: FixtureRow[] = [];
  for (let i = 0; i < count; i++) {
    const row = i + 1;
    const subject = subjects[i % subjects.length] as string;
    if (i % 3 === 0)
      rows.push({
        row,
        input: {
          id: `r${row}`,
          conversations: [
            { role: 'system', content: 'be vivid' },
            { role: 'user', content: `${subject} #${row}` },
            { role: 'assistant', content: 'ok' },
          ],
        },
      });
    else if (i % 3 === 1) rows.push({ row, input: { id: `r${row}`, prompt: `${subject} #${row}`, seed: 7 } });
    else rows.push({ row, input: { id: `r${row}`, prompts: [`${subject} #${row}`, `${subject}, variant #${row}`] } });
  }
  return rows;
}
