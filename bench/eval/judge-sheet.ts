/**
 * The judge on a sprite sheet of scenes (renders.png + renders.json, the layout of
 * test/fixtures/eval): shape and colour right, by asked size. Used on the VAE's round trip of the
 * ground-truth renders (tools/flux_train/vae_roundtrip.py) to see the ceiling a VAE puts on the model.
 *
 *   node --import tsx bench/eval/judge-sheet.ts DIR
 */
import { judgePixels } from '../../services/eval/judge.ts';
import { loadRenderedScenes } from '../../test/eval/helpers.ts';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: judge-sheet.ts DIR   (a folder with renders.png and renders.json)');
  process.exit(2);
}
const bySize: Record<string, { shape: number; colour: number; of: number }> = {};
const all = { shape: 0, colour: 0, of: 0 };
for (const scene of await loadRenderedScenes(dir)) {
  const j = judgePixels(scene.prompt, scene.pixels, scene.width, scene.height, 3);
  for (const s of [(bySize[scene.size] ??= { shape: 0, colour: 0, of: 0 }), all]) {
    s.of += 1;
    if (j.scores.shape) s.shape += 1;
    if (j.scores.colour) s.colour += 1;
  }
}
const pct = (n: number, of: number) => `${((100 * n) / of).toFixed(1)}%`;
console.log('| size | scenes | shape right | colour right |\n|---|---|---|---|');
for (const [size, s] of [...Object.entries(bySize), ['all', all] as const])
  console.log(`| ${size} | ${s.of} | ${pct(s.shape, s.of)} | ${pct(s.colour, s.of)} |`);
