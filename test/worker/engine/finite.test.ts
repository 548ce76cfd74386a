import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import ort from 'onnxruntime-node';
import { EngineError } from '../../../services/worker/engine/errors.ts';
import { assertFinite } from '../../../services/worker/engine/finite.ts';
import { openModelSession } from '../../../services/worker/engine/onnx-session.ts';
import { TINY_MODEL_DIR } from './helpers/reference.ts';
import { join } from 'node:path';

describe('non-finite guard', () => {
  it('passes finite data, fails NaN and ±Inf naming the stage, with the fp16 hint only for fp16 components', () => {
    assertFinite(Float32Array.from([0, -1.5, 3e38, -3e38]), 'VAE decoder', 'vae.onnx', true);
    for (const bad of [NaN, Infinity, -Infinity]) {
      assert.throws(
        () => assertFinite(Float32Array.from([1, bad, 2, bad]), 'VAE decoder', 'vae.onnx', true),
        (e: unknown) =>
          e instanceof EngineError &&
          e.code === 'NON_FINITE' &&
          /VAE decoder produced 2 non-finite values \(NaN\/Inf; first at index 1\) in vae\.onnx; .*float16/.test(e.message),
      );
    }
    assert.throws(
      () => assertFinite(Float32Array.from([NaN]), 'T5 text encoder', 't5.onnx', false),
      (e: unknown) => e instanceof EngineError && !/float16/.test(e.message),
    );
  });
});

describe('out of memory at load', () => {
  it('is recognised before "provider unavailable": no CPU fallback even when allowed', async (t) => {
    const create = t.mock.method(ort.InferenceSession, 'create', async () => {
      throw new Error('CUDA failure 2: out of memory ; GPU=0 ; hostname=x ; file=cuda_allocator.cc');
    });
    const warnings: string[] = [];
    await assert.rejects(
      openModelSession(join(TINY_MODEL_DIR, 'transformer', 'model.onnx'), {
        provider: 'cuda',
        allowCpuFallback: true,
        graphOptimizationLevel: 'all',
        intraOpNumThreads: undefined,
        deviceId: 0,
        logger: { warn: (_d, m) => warnings.push(m) },
      }),
      (e: unknown) =>
        e instanceof EngineError && e.code === 'OUT_OF_MEMORY' && !e.retriable && /out of memory while loading on cuda/.test(e.message),
    );
    assert.equal(create.mock.callCount(), 1, 'no second (CPU) attempt');
    assert.deepEqual(warnings, []);
  });

  it('a missing CUDA library with fallback allowed still falls back to CPU, with a warning', async (t) => {
    const real = ort.InferenceSession.create.bind(ort.InferenceSession);
    const create = t.mock.method(ort.InferenceSession, 'create', async (...args: Parameters<typeof real>) => {
      const options = args[1] as { executionProviders?: unknown[] } | undefined;
      if (JSON.stringify(options?.executionProviders).includes('cuda'))
        throw new Error('Failed to load shared library libonnxruntime_providers_cuda.so');
      return real(...args);
    });
    const warnings: string[] = [];
    const session = await openModelSession(join(TINY_MODEL_DIR, 'transformer', 'model.onnx'), {
      provider: 'cuda',
      allowCpuFallback: true,
      graphOptimizationLevel: 'all',
      intraOpNumThreads: 1,
      deviceId: 0,
      logger: { warn: (_d, m) => warnings.push(m) },
    });
    assert.equal(session.provider, 'cpu');
    assert.equal(create.mock.callCount(), 2);
    assert.match(warnings[0] ?? '', /falling back to CPU/);
    await session.release();
  });
});
