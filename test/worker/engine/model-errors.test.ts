import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { writeFile } from 'node:fs/promises';
import { EngineError } from '../../../services/worker/engine/errors.ts';
import { FluxPipeline } from '../../../services/worker/engine/flux-pipeline.ts';
import { openModelSession } from '../../../services/worker/engine/onnx-session.ts';
import type { EngineLogger } from '../../../services/worker/engine/types.ts';
import { identityModel } from './helpers/onnx-bytes.ts';
import { syntheticModelDir } from './helpers/model-dir.ts';

function engineError(code: string, pattern: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof EngineError, `expected EngineError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    assert.match(error.message, pattern);
    return true;
  };
}

describe('model loading errors', () => {
  it('names a missing model directory', async () => {
    const pipeline = new FluxPipeline({ modelDirectory: '/nonexistent/tiny-flux' });
    await assert.rejects(pipeline.load(), engineError('MODEL_NOT_FOUND', /\/nonexistent\/tiny-flux: model directory not found/));
  });

  it('names a missing component folder', async (t) => {
    const dir = await syntheticModelDir(t, { omit: ['transformer'] });
    await assert.rejects(
      new FluxPipeline({ modelDirectory: dir }).load(),
      engineError(
        'MODEL_NOT_FOUND',
        /transformer\/model\.onnx: transformer\/model\.onnx is missing\n\s+fix: export all four components \(optimum-cli export onnx/,
      ),
    );
  });

  it('names a missing model.onnx', async (t) => {
    const dir = await syntheticModelDir(t);
    await assert.rejects(
      new FluxPipeline({ modelDirectory: dir }).load(),
      engineError('MODEL_NOT_FOUND', /problems?\n\s+1\. \S+text_encoder\/model\.onnx: text_encoder\/model\.onnx is missing/),
    );
  });

  it('names a missing VAE config', async (t) => {
    const dir = await syntheticModelDir(t);
    await writeFile(join(dir, 'vae_decoder', 'config.json'), JSON.stringify({ scaling_factor: 0.3 }));
    await assert.rejects(
      new FluxPipeline({ modelDirectory: dir }).load(),
      engineError('MODEL_UNSUPPORTED', /block_out_channels is missing/),
    );
  });

  it('rejects a bf16-I/O model with a clear message', async (t) => {
    const bf16 = identityModel(
      [{ name: 'input_ids', type: 'bfloat16', shape: ['batch', 77] }],
      [{ name: 'pooler_output', type: 'bfloat16', shape: ['batch', 77] }],
    );
    const dir = await syntheticModelDir(t, { onnx: { text_encoder: bf16 } });
    await assert.rejects(
      new FluxPipeline({ modelDirectory: dir }).load(),
      engineError(
        'MODEL_UNSUPPORTED',
        /text_encoder\/model\.onnx: input input_ids is bfloat16.*\n\s+fix: bfloat16 I\/O cannot be fed from Node: export with float32 I\/O/,
      ),
    );
  });

  it('rejects a text encoder without a usable input, listing what it has', async (t) => {
    const wrong = identityModel(
      [{ name: 'tokens_in', type: 'int64', shape: ['batch', 77] }],
      [{ name: 'pooler_output', type: 'int64', shape: ['batch', 77] }],
    );
    const dir = await syntheticModelDir(t, { onnx: { text_encoder: wrong } });
    await assert.rejects(
      new FluxPipeline({ modelDirectory: dir }).load(),
      engineError('MODEL_UNSUPPORTED', /no input for token ids .*the model has tokens_in/),
    );
  });

  it('rejects float token ids for the text encoder', async (t) => {
    const wrong = identityModel(
      [{ name: 'input_ids', type: 'float', shape: ['batch', 77] }],
      [{ name: 'pooler_output', type: 'float', shape: ['batch', 77] }],
    );
    const dir = await syntheticModelDir(t, { onnx: { text_encoder: wrong } });
    await assert.rejects(
      new FluxPipeline({ modelDirectory: dir }).load(),
      engineError('MODEL_UNSUPPORTED', /input_ids \(token ids\) has type float32; expected int64 or int32/),
    );
  });

  it('refuses generate() before load()', async () => {
    const pipeline = new FluxPipeline({ modelDirectory: '/nonexistent' });
    await assert.rejects(pipeline.generate([{ prompt: 'x', seed: 1 }]), engineError('NOT_LOADED', /load\(\)/));
    assert.throws(() => pipeline.info, engineError('NOT_LOADED', /load\(\)/));
  });

  it('validates options', () => {
    assert.throws(() => new FluxPipeline({ modelDirectory: 'x', provider: 'rocm' as never }), engineError('BAD_REQUEST', /provider/));
    assert.throws(() => new FluxPipeline({ modelDirectory: 'x', maxBatchSize: 0 }), engineError('BAD_REQUEST', /maxBatchSize/));
  });
});

describe('execution providers', () => {
  const floatIdentity = identityModel(
    [{ name: 'x', type: 'float', shape: ['batch', 3] }],
    [{ name: 'y', type: 'float', shape: ['batch', 3] }],
  );
  const settings = { allowCpuFallback: false, graphOptimizationLevel: 'basic' as const, intraOpNumThreads: 1, deviceId: 0 };

  for (const provider of ['cuda', 'tensorrt'] as const) {
    it(`${provider} without its libraries -> PROVIDER_UNAVAILABLE, or CPU with a warning when allowed`, async (t) => {
      const dir = await syntheticModelDir(t, { onnx: { transformer: floatIdentity } });
      const file = join(dir, 'transformer', 'model.onnx');
      const warnings: string[] = [];
      const logger: EngineLogger = { warn: (_details, message) => warnings.push(message) };
      let session;
      try {
        session = await openModelSession(file, { ...settings, provider, logger });
      } catch (error) {
        assert.ok(error instanceof EngineError);
        assert.equal(error.code, 'PROVIDER_UNAVAILABLE', error.message);
        assert.match(error.message, new RegExp(`'${provider}' is unavailable.*allowCpuFallback`));
        const fallback = await openModelSession(file, { ...settings, provider, logger, allowCpuFallback: true });
        assert.equal(fallback.provider, 'cpu');
        assert.match(warnings.join('\n'), new RegExp(`${provider} unavailable; falling back to CPU`));
        await fallback.release();
        return;
      }
      // A machine with the GPU libraries: the provider loads, nothing to fall back from.
      assert.equal(session.provider, provider);
      await session.release();
    });
  }

  it('creates a CPU session and reports metadata', async (t) => {
    const dir = await syntheticModelDir(t, { onnx: { vae_decoder: floatIdentity } });
    const session = await openModelSession(join(dir, 'vae_decoder', 'model.onnx'), { ...settings, provider: 'cpu', logger: { warn() {} } });
    assert.deepEqual(session.inputs.get('x'), { name: 'x', type: 'float32', shape: ['batch', 3] });
    await session.release();
  });
});
