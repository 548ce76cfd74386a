/** Throwaway model folders for error-path tests; each registers its own cleanup. */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export interface SyntheticModelDirOptions {
  /** ONNX bytes per component folder; a folder without bytes is created empty. */
  onnx?: Partial<Record<'text_encoder' | 'text_encoder_2' | 'transformer' | 'vae_decoder', Uint8Array>>;
  /** Component folders to leave out entirely. */
  omit?: string[];
}

export async function syntheticModelDir(t: TestContext, options: SyntheticModelDirOptions = {}): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 't2i-engine-test-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const omit = new Set(options.omit ?? []);
  for (const folder of ['text_encoder', 'text_encoder_2', 'transformer', 'vae_decoder', 'tokenizer', 'tokenizer_2', 'scheduler']) {
    if (omit.has(folder)) continue;
    await mkdir(join(root, folder));
    const bytes = options.onnx?.[folder as keyof NonNullable<SyntheticModelDirOptions['onnx']>];
    if (bytes) await writeFile(join(root, folder, 'model.onnx'), bytes);
  }
  if (!omit.has('vae_decoder')) {
    await writeFile(
      join(root, 'vae_decoder', 'config.json'),
      JSON.stringify({ scaling_factor: 0.3611, shift_factor: 0.1159, block_out_channels: [32, 32] }),
    );
  }
  return root;
}
