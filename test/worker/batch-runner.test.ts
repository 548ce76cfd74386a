import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateWithRecovery } from '../../services/worker/batch-runner.ts';
import { EngineError, type GenerateRequest, type GeneratedImage, type ImageEngine } from '../../services/worker/engine/index.ts';

/** A fake engine at the seam the batch runner uses: fails any pass containing a poison prompt. */
function fakeEngine(fail: (batch: readonly GenerateRequest[]) => Error | undefined): ImageEngine & { passes: number[] } {
  const passes: number[] = [];
  return {
    passes,
    info: {
      model: 'fake',
      modelDirectory: '-',
      defaults: { width: 16, height: 16, steps: 1, guidance: 1, trueCfgScale: 1, maxSequenceLength: 8 },
      provider: 'cpu',
      usesGuidance: true,
      sizeMultiple: 16,
      maxBatchSize: 8,
      preferredBatchSize: 4,
    },
    async load() {},
    async close() {},
    async generate(batch) {
      passes.push(batch.length);
      const error = fail(batch);
      if (error) throw error;
      return batch.map((r): GeneratedImage => ({
        width: 16,
        height: 16,
        data: new Uint8Array(16 * 16 * 3),
        seed: r.seed,
        steps: 1,
        guidance: 1,
        model: 'fake',
      }));
    },
  };
}

const requests = (prompts: string[]) => prompts.map((prompt, seed) => ({ prompt, seed }));

test('a poison prompt is isolated by splitting; its batch-mates succeed', async () => {
  const engine = fakeEngine((batch) =>
    batch.some((r) => r.prompt === 'poison') ? new EngineError('INFERENCE_FAILED', 'bad prompt') : undefined,
  );
  const outcomes = await generateWithRecovery(engine, requests(['a', 'b', 'poison', 'c']), { maxAttempts: 2 });
  assert.deepEqual(
    outcomes.map((o) => o.ok),
    [true, true, false, true],
  );
  const failed = outcomes[2];
  assert.ok(failed && !failed.ok && /bad prompt/.test(failed.error) && failed.attempts === 2);
  // 4 fails → [a,b] ok, [poison,c] fails → [poison] x2, [c] ok
  assert.deepEqual(engine.passes, [4, 2, 2, 1, 1, 1]);
});

test('out of memory is reported so the caller shrinks later batches; the batch still completes', async () => {
  const engine = fakeEngine((batch) => (batch.length > 2 ? new EngineError('OUT_OF_MEMORY', 'Failed to allocate memory') : undefined));
  const sizes: number[] = [];
  const outcomes = await generateWithRecovery(engine, requests(['a', 'b', 'c', 'd']), {
    maxAttempts: 1,
    onOutOfMemory: (n) => sizes.push(n),
  });
  assert.ok(outcomes.every((o) => o.ok));
  assert.deepEqual(sizes, [4]);
});

test('a prompt that fails only once is retried and succeeds', async () => {
  let first = true;
  const engine = fakeEngine(() => {
    if (!first) return undefined;
    first = false;
    return new Error('transient');
  });
  const outcomes = await generateWithRecovery(engine, requests(['only']), { maxAttempts: 3 });
  assert.ok(outcomes[0]?.ok);
});
