import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EngineError, looksLikeOutOfMemory, toInferenceError } from '../../../services/worker/engine/errors.ts';

describe('EngineError', () => {
  it('carries code, retriable and cause', () => {
    const cause = new Error('inner');
    const error = new EngineError('MODEL_UNSUPPORTED', 'bad model', { cause });
    assert.equal(error.code, 'MODEL_UNSUPPORTED');
    assert.equal(error.retriable, false);
    assert.equal(error.cause, cause);
    assert.equal(error.name, 'EngineError');
    assert.equal(new EngineError('OUT_OF_MEMORY', 'x').retriable, true);
    assert.equal(new EngineError('INFERENCE_FAILED', 'x', { retriable: false }).retriable, false);
  });

  it('maps onnxruntime allocation failures to OUT_OF_MEMORY', () => {
    for (const message of [
      "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running MatMul node. Name:'/MatMul' Status Message: Failed to allocate memory for requested buffer of size 123456",
      'CUDA failure 2: out of memory ; GPU=0',
      'std::bad_alloc',
      'Available memory of 1024 is smaller than requested bytes of 4096',
    ]) {
      assert.ok(looksLikeOutOfMemory(message), message);
      const mapped = toInferenceError('transformer step 0', new Error(message));
      assert.equal(mapped.code, 'OUT_OF_MEMORY');
      assert.equal(mapped.retriable, true);
    }
    const other = toInferenceError('VAE decoder', new Error('Got invalid dimensions for input: latent_sample'));
    assert.equal(other.code, 'INFERENCE_FAILED');
    assert.match(other.message, /VAE decoder failed/);
  });
});
