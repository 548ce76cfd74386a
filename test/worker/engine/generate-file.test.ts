import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { DEFAULT_MODEL_DIR } from '../../../services/common/paths.ts';
import { generateFile } from '../../../services/worker/engine/generate-file.ts';
import { readPngMetadata } from '../../../services/worker/engine/png.ts';
import { EngineError } from '../../../services/worker/engine/errors.ts';
import { PACKAGE_ROOT_FOR_TESTS } from './helpers/paths.ts';
import { TINY_MODEL_DIR, tinyModelAvailable } from './helpers/reference.ts';

const skip = tinyModelAvailable() ? false : 'models/tiny-flux missing (built by tools/flux_tiny/build.py)';

describe('generateFile (t2i generate)', { skip }, () => {
  it('defaults to the bundled demo model (models/tiny-flux-shapes)', () => {
    assert.equal(DEFAULT_MODEL_DIR, join(PACKAGE_ROOT_FOR_TESTS, 'models', 'tiny-flux-shapes'));
  });

  it('writes byte-identical PNGs for the same seed, a different one for another seed, with metadata', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 't2i-generate-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const options = {
      prompt: 'a red fox in snow, 雪',
      seed: 42,
      steps: 3,
      width: 48,
      height: 32,
      guidance: 4,
      modelDirectory: TINY_MODEL_DIR,
    };
    const first = await generateFile({ ...options, output: join(dir, 'a.png') });
    await generateFile({ ...options, output: join(dir, 'nested', 'b.png') });
    await generateFile({ ...options, seed: 43, output: join(dir, 'c.png') });
    const [a, b, c] = await Promise.all(['a.png', 'nested/b.png', 'c.png'].map((name) => readFile(join(dir, name))));
    assert.ok(a!.equals(b!), 'same seed must give the same bytes');
    assert.ok(!a!.equals(c!), 'another seed must give another image');
    assert.equal(first.bytes, a!.length);
    assert.deepEqual(readPngMetadata(a!), {
      prompt: options.prompt,
      seed: 42,
      steps: 3,
      guidance: 4,
      width: 48,
      height: 32,
      model: 'tiny-flux-dev-random',
    });
    const meta = await sharp(a!).metadata();
    assert.equal(meta.width, 48);
    assert.equal(meta.height, 32);
  });

  it('uses the model defaults (t2i.json) when options are left out', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 't2i-generate-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const result = await generateFile({ prompt: 'x', output: join(dir, 'x.png'), modelDirectory: TINY_MODEL_DIR });
    assert.deepEqual(
      {
        width: result.width,
        height: result.height,
        steps: result.steps,
        guidance: result.guidance,
        seed: result.seed,
        provider: result.provider,
      },
      { width: 64, height: 64, steps: 4, guidance: 3.5, seed: 0, provider: 'cpu' },
    );
  });

  it('rejects a size that is not a multiple of the model size step', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 't2i-generate-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await assert.rejects(
      generateFile({ prompt: 'x', width: 50, output: join(dir, 'x.png'), modelDirectory: TINY_MODEL_DIR }),
      (error: unknown) =>
        error instanceof EngineError && error.code === 'BAD_REQUEST' && /width must be a positive multiple of 4/.test(error.message),
    );
  });
});
