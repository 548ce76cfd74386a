import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FluxPipeline } from '../../../services/worker/engine/flux-pipeline.ts';
import { TINY_MODEL_DIR, tinyModelAvailable } from './helpers/reference.ts';

const skip = tinyModelAvailable() ? false : 'models/tiny-flux missing (built by tools/flux_tiny/build.py)';

describe('FluxPipeline batching and determinism', { skip }, () => {
  let pipeline: FluxPipeline;
  before(async () => {
    pipeline = new FluxPipeline({ modelDirectory: TINY_MODEL_DIR, maxBatchSize: 3 });
    await pipeline.load();
  });
  after(() => pipeline.close());

  it('reports model info', () => {
    assert.equal(pipeline.info.model, 'tiny-flux-dev-random');
    assert.equal(pipeline.info.provider, 'cpu');
    assert.equal(pipeline.info.usesGuidance, true);
    assert.equal(pipeline.info.maxBatchSize, 3);
    assert.deepEqual(pipeline.info.defaults, { width: 64, height: 64, steps: 4, guidance: 3.5, trueCfgScale: 1, maxSequenceLength: 64 });
  });

  it('gives each request the same image alone or in a mixed batch, in request order', async () => {
    const requests = [
      { prompt: 'a cat', seed: 1 },
      { prompt: 'a dog', seed: 2, width: 32, height: 48, steps: 2 },
      { prompt: 'a cat', seed: 3, guidance: 6 },
      { prompt: 'a bird', seed: 4, width: 32, height: 48, steps: 2, guidance: 1 },
      { prompt: 'a cat', seed: 1, steps: 3 },
      { prompt: 'a fish', seed: 5 },
      { prompt: 'a cow', seed: 6 },
    ];
    const batched = await pipeline.generate(requests);
    assert.equal(batched.length, requests.length);
    for (const [i, request] of requests.entries()) {
      const [alone] = await pipeline.generate([request]);
      assert.deepEqual(batched[i], alone, `request ${i}`);
      assert.equal(batched[i]!.seed, request.seed);
    }
    assert.equal(batched[1]!.width, 32);
    assert.equal(batched[1]!.height, 48);
    assert.equal(batched[1]!.data.length, 32 * 48 * 3);
    assert.equal(batched[2]!.guidance, 6);
    assert.notDeepEqual(batched[0]!.data, batched[2]!.data);
  });

  it('is deterministic across calls and pipelines', async () => {
    const request = { prompt: 'a lighthouse', seed: 77 };
    const [a] = await pipeline.generate([request]);
    const other = new FluxPipeline({ modelDirectory: TINY_MODEL_DIR });
    await other.load();
    try {
      const [b] = await other.generate([request]);
      assert.deepEqual(a, b);
    } finally {
      await other.close();
    }
  });

  it('returns [] for no requests and validates requests', async () => {
    assert.deepEqual(await pipeline.generate([]), []);
    await assert.rejects(pipeline.generate([{ prompt: 'x', seed: -1 }]), /seed/);
    await assert.rejects(pipeline.generate([{ prompt: 'x', seed: 1, steps: 0 }]), /steps/);
    await assert.rejects(pipeline.generate([{ prompt: 'x', seed: 1, height: 30 }]), /height must be a positive multiple of 4/);
  });

  it('waits for an in-flight load() and rejects T5 lengths over 512', async () => {
    const p = new FluxPipeline({ modelDirectory: TINY_MODEL_DIR });
    void p.load();
    const [image] = await p.generate([{ prompt: 'x', seed: 1, steps: 1 }]);
    assert.equal(image!.data.length, 64 * 64 * 3);
    await assert.rejects(p.encodePrompts(['x'], { maxSequenceLength: 513 }), /2\.\.512/);
    await p.close();
  });

  it('close() is idempotent and later calls fail with NOT_LOADED', async () => {
    const p = new FluxPipeline({ modelDirectory: TINY_MODEL_DIR });
    await p.load();
    const closing = p.close();
    assert.equal(p.close(), closing);
    await closing;
    assert.equal(p.getState(), 'closed');
    await assert.rejects(p.generate([{ prompt: 'x', seed: 1 }]), (e: Error & { code?: string }) => e.code === 'NOT_LOADED');
  });
});
