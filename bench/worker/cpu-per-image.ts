/**
 * GPU readiness without a GPU: the CPU a worker spends per image outside the model, at the sizes FLUX.1
 * runs at, so a GPU node can be given enough cores. Per image and size, measured on this machine:
 *
 * - postprocess: the VAE output (float32, NCHW) to 8-bit RGB, as the engine does it after decoding
 * - PNG: encodePng with the generation metadata, as the worker does it
 * - upload: the PNG PUT to the local S3 server (client side only: the worker's process)
 *
 * The pixels are photo-like (smooth gradients plus sensor-like noise) so that PNG sizes are realistic;
 * their sizes are reported. Kafka and the per-image fixed costs come from bench/e2e (CPU-ms per image of
 * the worker outside the engine on a fast model).
 *
 *   node --import tsx bench/worker/cpu-per-image.ts [--sizes 64x48,512x512,1024x1024] [--images 20]
 *
 * Needs the local stack for the upload (`npx t2i stack up`). Writes bench/results/cpu-per-image.json.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../../services/common/config.ts';
import { ObjectStore } from '../../services/common/object-store.ts';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';
import { decoderOutputToRgb } from '../../services/worker/engine/postprocess.ts';
import { encodePng } from '../../services/worker/engine/png.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '64x48,512x512,1024x1024' },
    images: { type: 'string', default: '20' },
    out: { type: 'string', default: path.join(PACKAGE_ROOT, 'bench', 'results', 'cpu-per-image.json') },
  },
});
const IMAGES = Number(values.images);

/** A decoder output in [-1, 1]: three smooth fields with fine noise, like a photo (deterministic). */
function photoLike(width: number, height: number, seed: number): Float32Array {
  const out = new Float32Array(3 * width * height);
  let state = seed >>> 0 || 1;
  const noise = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return ((state >>> 0) / 0x100000000 - 0.5) * 0.06;
  };
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) {
        const u = x / width;
        const v = y / height;
        const smooth = 0.6 * Math.sin(6.3 * u + 2.1 * c + seed) * Math.cos(4.7 * v - c) + 0.3 * Math.sin(17 * u * v + c);
        out[c * width * height + y * width + x] = Math.max(-1, Math.min(1, smooth + noise()));
      }
  return out;
}

function cpuMs<T>(fn: () => T): [T, number] {
  const start = process.cpuUsage();
  const value = fn();
  const used = process.cpuUsage(start);
  return [value, (used.user + used.system) / 1000];
}

async function cpuMsAsync<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const start = process.cpuUsage();
  const value = await fn();
  const used = process.cpuUsage(start);
  return [value, (used.user + used.system) / 1000];
}

const store = new ObjectStore(loadConfig(process.env).s3);
await store.ensureBucket();
const rows: Record<string, unknown>[] = [];
for (const size of values.sizes!.split(',')) {
  const [width, height] = size.split('x').map(Number) as [number, number];
  const totals = { postprocess: 0, png: 0, upload: 0 };
  let bytes = 0;
  for (let i = -2; i < IMAGES; i++) {
    // Two warm-up images, not counted.
    const decoded = photoLike(width, height, i + 3);
    const [rgb, post] = cpuMs(() => decoderOutputToRgb(decoded, 0, height, width));
    const meta = { prompt: `a photo of object number ${i}`, seed: i, steps: 4, guidance: 3.5, width, height, model: 'bench' };
    const [png, encode] = await cpuMsAsync(() => encodePng({ width, height, data: rgb }, meta));
    const [, upload] = await cpuMsAsync(() => store.put(`bench/cpu-per-image/${size}-${i}.png`, png, 'image/png'));
    if (i < 0) continue;
    totals.postprocess += post;
    totals.png += encode;
    totals.upload += upload;
    bytes += png.length;
  }
  await store.deletePrefix(`bench/cpu-per-image/${size}-`);
  const row = {
    size,
    pngBytes: Math.round(bytes / IMAGES),
    cpuMsPerImage: {
      postprocess: totals.postprocess / IMAGES,
      png: totals.png / IMAGES,
      upload: totals.upload / IMAGES,
      total: (totals.postprocess + totals.png + totals.upload) / IMAGES,
    },
  };
  rows.push(row);
  process.stderr.write(`${size}: ${JSON.stringify(row.cpuMsPerImage)} png ${row.pngBytes} bytes\n`);
}
store.close();
const summary = {
  date: new Date().toISOString(),
  machine: `${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), shared VM`,
  images: IMAGES,
  rows,
};
fs.writeFileSync(values.out!, `${JSON.stringify(summary, null, 2)}\n`);
process.stdout.write(
  [
    '| size | PNG bytes | postprocess | PNG encode | upload (client) | CPU-ms per image |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) => {
      const c = r.cpuMsPerImage as Record<string, number>;
      return `| ${r.size} | ${r.pngBytes} | ${c.postprocess!.toFixed(2)} | ${c.png!.toFixed(2)} | ${c.upload!.toFixed(2)} | ${c.total!.toFixed(2)} |`;
    }),
    '',
  ].join('\n'),
);
