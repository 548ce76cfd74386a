/**
 * Deliberate bugs for the parity test's sensitivity check, injected through the engine's public seams
 * (nothing in services/ exists for them): a model copy with an edited config, or a session opener that
 * alters one component's feeds (what a buggy pipeline would have fed it).
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort, { type Tensor } from 'onnxruntime-node';
import { openModelSession } from '../../../../services/worker/engine/onnx-session.ts';
import type { SessionOpener } from '../../../../services/worker/engine/options.ts';

/** A copy of `modelDir` with JSON files edited; removed by the returned cleanup. */
export async function perturbedModelCopy(
  modelDir: string,
  edits: Record<string, (json: Record<string, unknown>) => Record<string, unknown>>,
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 't2i-perturbed-'));
  await cp(modelDir, dir, { recursive: true });
  for (const [file, edit] of Object.entries(edits)) {
    const path = join(dir, file);
    await writeFile(path, JSON.stringify(edit(JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>)));
  }
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A tensor of the same type and shape with its values mapped (index-aware, for permutations). */
export function mapTensor(tensor: Tensor, map: (values: number[]) => number[]): Tensor {
  const values = Array.from(tensor.data as ArrayLike<number | bigint>, Number);
  const out = map(values);
  const data =
    tensor.type === 'int64'
      ? BigInt64Array.from(out, (v) => BigInt(Math.round(v)))
      : tensor.type === 'int32'
        ? Int32Array.from(out)
        : Float32Array.from(out);
  return new ort.Tensor(tensor.type as 'float32', data as Float32Array, tensor.dims);
}

/** Opens sessions as usual, but feeds the transformer through `alter(feeds)` on every run. */
export function alteringTransformerFeeds(alter: (feeds: Record<string, Tensor>) => Record<string, Tensor>): SessionOpener {
  return async (file, settings) => {
    const session = await openModelSession(file, settings);
    if (!/transformer/.test(file)) return session;
    return { ...session, run: (feeds, outputs, stage) => session.run(alter(feeds), outputs, stage) };
  };
}
