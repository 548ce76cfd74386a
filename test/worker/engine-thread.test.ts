import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../services/common/config.ts';
import { createFluxPipeline, EngineError } from '../../services/worker/engine/index.ts';
import { EngineThread } from '../../services/worker/engine-thread.ts';

const modelDirectory = loadConfig({}).model.dir;

test('the engine thread gives the same images as the in-process pipeline, and keeps error codes', async () => {
  const thread = new EngineThread({ modelDirectory, intraOpNumThreads: 1 });
  const local = createFluxPipeline({ modelDirectory, intraOpNumThreads: 1 });
  try {
    await Promise.all([thread.load(), local.load()]);
    assert.equal(thread.info.model, local.info.model);
    assert.deepEqual(thread.info.defaults, local.info.defaults);
    const requests = [
      { prompt: 'a red fox in snow', seed: 7 },
      { prompt: 'a lighthouse', seed: 8, width: 32, height: 48 },
    ];
    const [fromThread, fromLocal] = await Promise.all([thread.generate(requests), local.generate(requests)]);
    assert.equal(fromThread.length, 2);
    for (let i = 0; i < 2; i++) {
      assert.ok(fromThread[i]?.data instanceof Uint8Array);
      assert.deepEqual([fromThread[i]?.width, fromThread[i]?.height], [fromLocal[i]?.width, fromLocal[i]?.height]);
      assert.ok(Buffer.from(fromThread[i]?.data ?? []).equals(Buffer.from(fromLocal[i]?.data ?? [])), `image ${i} identical`);
    }
    await assert.rejects(thread.generate([{ prompt: 'bad size', seed: 1, width: 30 }]), (error: unknown) => {
      assert.ok(error instanceof EngineError);
      assert.equal(error.code, 'BAD_REQUEST');
      return true;
    });
  } finally {
    await thread.close();
    await local.close();
  }
});

test('a missing model fails load() with the engine error, from the thread', async () => {
  const thread = new EngineThread({ modelDirectory: '/nonexistent/model' });
  try {
    await assert.rejects(thread.load(), (error: unknown) => error instanceof EngineError && error.code === 'MODEL_NOT_FOUND');
  } finally {
    await thread.close().catch(() => {});
  }
});
