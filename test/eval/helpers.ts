/** Ground-truth scenes (tools/flux_train/make_judge_fixture.py): prompts, attributes and their rendered tiles. */
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';

export interface RenderedScene {
  prompt: string;
  colour: string;
  shape: string;
  position: string;
  size: string;
  background: string;
  /** RGB bytes of the tile. */
  pixels: Uint8Array;
  width: number;
  height: number;
}

const DIR = path.join(PACKAGE_ROOT, 'test', 'fixtures', 'eval');

/** The sprite sheet in `dir` (renders.png + renders.json; default: the judge's fixture). */
export async function loadRenderedScenes(dir = DIR): Promise<RenderedScene[]> {
  const meta = JSON.parse(fs.readFileSync(path.join(dir, 'renders.json'), 'utf8')) as {
    tileWidth: number;
    tileHeight: number;
    columns: number;
    scenes: Omit<RenderedScene, 'pixels' | 'width' | 'height'>[];
  };
  const { data, info } = await sharp(path.join(dir, 'renders.png')).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const { tileWidth: w, tileHeight: h } = meta;
  return meta.scenes.map((scene, i) => {
    const [tx, ty] = [(i % meta.columns) * w, Math.floor(i / meta.columns) * h];
    const pixels = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++)
      pixels.set(data.subarray(((ty + y) * info.width + tx) * 3, ((ty + y) * info.width + tx + w) * 3), y * w * 3);
    return { ...scene, pixels, width: w, height: h };
  });
}

export const encodeTile = (scene: RenderedScene): Promise<Buffer> =>
  sharp(Buffer.from(scene.pixels), { raw: { width: scene.width, height: scene.height, channels: 3 } })
    .png()
    .toBuffer();
