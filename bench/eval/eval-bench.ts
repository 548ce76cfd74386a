/**
 * Prompt-following of a model on the held-out scene prompts (examples/shapes-heldout.jsonl: colour,
 * shape and position combinations never seen in training), measured by the judge in services/eval.
 * Runs the engine directly (the stream does not change pixels: same seed + prompt -> same image),
 * writes bench/results/eval.json (summary, what it gets wrong) and a grid of the first 24 samples with
 * their prompts (docs/images/shapes-grid.png; with --out FILE and no --grid, FILE-grid.png beside it, so
 * scoring a candidate model never overwrites the README's grid).
 *
 *   node --import tsx bench/eval/eval-bench.ts [--model DIR] [--prompts FILE] [--grid FILE] [--out FILE]
 *        [--steps N] [--true-cfg-scale S] [--limit N]     (defaults: the model's t2i.json; all prompts)
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { DEFAULT_MODEL_DIR, PACKAGE_ROOT } from '../../services/common/paths.ts';
import { ATTRIBUTES } from '../../services/eval/grammar.ts';
import { judgePixels, summarise, type Judgement } from '../../services/eval/judge.ts';
import { createFluxPipeline } from '../../services/worker/engine/index.ts';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: DEFAULT_MODEL_DIR },
    prompts: { type: 'string', default: path.join(PACKAGE_ROOT, 'examples', 'shapes-heldout.jsonl') },
    grid: { type: 'string' },
    out: { type: 'string' },
    batch: { type: 'string', default: '8' },
    steps: { type: 'string' },
    'true-cfg-scale': { type: 'string' },
    limit: { type: 'string' },
  },
});
const outPath = values.out ?? path.join(PACKAGE_ROOT, 'bench', 'results', 'eval.json');
const gridPath =
  values.grid ??
  (values.out !== undefined
    ? values.out.replace(/\.json$/, '') + '-grid.png'
    : path.join(PACKAGE_ROOT, 'docs', 'images', 'shapes-grid.png'));
const overrides = {
  ...(values.steps !== undefined ? { steps: Number(values.steps) } : {}),
  ...(values['true-cfg-scale'] !== undefined ? { trueCfgScale: Number(values['true-cfg-scale']) } : {}),
};

const rows = fs
  .readFileSync(values.prompts!, 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => JSON.parse(l) as { id: string; prompt: string; seed: number })
  .slice(0, values.limit !== undefined ? Number(values.limit) : undefined);
const engine = createFluxPipeline({ modelDirectory: values.model!, provider: 'cpu' });
await engine.load();
const judgements: Judgement[] = [];
const images: Uint8Array[] = [];
const started = performance.now();
const batch = Number(values.batch);
for (let i = 0; i < rows.length; i += batch) {
  const slice = rows.slice(i, i + batch);
  const out = await engine.generate(slice.map((r) => ({ prompt: r.prompt, seed: r.seed, ...overrides })));
  for (const [k, image] of out.entries()) {
    judgements.push(judgePixels(slice[k]!.prompt, image.data, image.width, image.height, 3));
    if (images.length < 24) images.push(image.data);
  }
  process.stderr.write(`\r${Math.min(i + batch, rows.length)}/${rows.length}`);
}
process.stderr.write('\n');
const seconds = (performance.now() - started) / 1000;
const { width, height } = engine.info.defaults;
const model = engine.info.model;
const settings = {
  steps: overrides.steps ?? engine.info.defaults.steps,
  trueCfgScale: overrides.trueCfgScale ?? engine.info.defaults.trueCfgScale,
};
await engine.close();

const summary = summarise(judgements);
// What it gets wrong: for each attribute, the (asked -> drawn) pairs, most frequent first.
const mistakes: Record<string, Record<string, number>> = {};
for (const j of judgements) {
  for (const attribute of ATTRIBUTES) {
    if (j.scores[attribute] !== false) continue;
    const pair = `${j.expected?.[attribute]} -> ${j.measured[attribute] ?? 'nothing'}`;
    const m = (mistakes[attribute] ??= {});
    m[pair] = (m[pair] ?? 0) + 1;
  }
}
const sortedMistakes = Object.fromEntries(
  Object.entries(mistakes).map(([a, m]) => [
    a,
    Object.fromEntries(
      Object.entries(m)
        .sort((x, y) => y[1] - x[1])
        .slice(0, 8),
    ),
  ]),
);
// Shape by asked size: how much of the shape error is in small scenes (a few latent cells).
const shapeBySize: Record<string, { right: number; of: number; rate: number }> = {};
for (const j of judgements) {
  const size = j.expected?.size;
  if (size === undefined || j.scores.shape === undefined) continue;
  const s = (shapeBySize[size] ??= { right: 0, of: 0, rate: 0 });
  s.of += 1;
  if (j.scores.shape) s.right += 1;
  s.rate = s.right / s.of;
}
const result = {
  model,
  prompts: rows.length,
  settings,
  seconds,
  summary,
  mistakes: sortedMistakes,
  shapeBySize,
  date: new Date().toISOString(),
};
fs.mkdirSync(path.dirname(outPath), { recursive: true });
fs.writeFileSync(outPath, `${JSON.stringify(result, null, 2)}\n`);

// Grid: 6 x 4 tiles (image scaled x3, prompt under it, a tick or cross per attribute).
const cols = 6;
const tile = { w: 200, h: 270, img: 192 };
const escapeXml = (s: string) => s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
const wrap = (text: string, width: number) => {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if ((line + ' ' + word).trim().length > width) {
      lines.push(line);
      line = word;
    } else line = `${line} ${word}`.trim();
  }
  return [...lines, line];
};
const composites: sharp.OverlayOptions[] = [];
let svg = '';
for (const [i, data] of images.entries()) {
  const [x, y] = [(i % cols) * tile.w, Math.floor(i / cols) * tile.h];
  const png = await sharp(Buffer.from(data), { raw: { width, height, channels: 3 } })
    .resize(tile.img, tile.img, { kernel: 'nearest' })
    .png()
    .toBuffer();
  composites.push({ input: png, left: x + 4, top: y + 4 });
  const j = judgements[i]!;
  const marks = ATTRIBUTES.filter((a) => j.scores[a] !== undefined)
    .map((a) => `${a[0]}${j.scores[a] ? '✓' : '✗'}`)
    .join(' ');
  const lines = [...wrap(rows[i]!.prompt, 30).slice(0, 3), marks];
  lines.forEach((text, k) => {
    svg += `<text x="${x + 6}" y="${y + tile.img + 20 + 16 * k}" font-family="DejaVu Sans" font-size="12" fill="${k === lines.length - 1 ? '#555' : '#000'}">${escapeXml(text)}</text>`;
  });
}
const canvas = { width: cols * tile.w, height: Math.ceil(images.length / cols) * tile.h };
composites.push({
  input: Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${canvas.width}" height="${canvas.height}">${svg}</svg>`),
  left: 0,
  top: 0,
});
fs.mkdirSync(path.dirname(gridPath), { recursive: true });
await sharp({ create: { ...canvas, channels: 3, background: '#ffffff' } })
  .composite(composites)
  .png()
  .toFile(gridPath);

console.log(`model ${result.model}: ${rows.length} held-out prompts in ${seconds.toFixed(1)} s`);
console.log('| attribute | right | rate |\n|---|---|---|');
for (const [a, s] of Object.entries(summary.attributes)) console.log(`| ${a} | ${s.right}/${s.of} | ${(s.rate * 100).toFixed(1)}% |`);
console.log(`| all five | | ${(summary.allRight * 100).toFixed(1)}% |`);
console.log(
  'shape by asked size:',
  Object.entries(shapeBySize)
    .map(([k, v]) => `${k} ${v.right}/${v.of}`)
    .join(', '),
);
console.log('mistakes (asked -> drawn):', JSON.stringify(sortedMistakes, null, 1));
