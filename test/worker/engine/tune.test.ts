import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { parseSpinningList, parseThreadList } from '../../../services/cli/model-command.ts';
import { loadConfig } from '../../../services/common/config.ts';
import { PACKAGE_ROOT } from '../../../services/common/paths.ts';
import { createFluxPipeline } from '../../../services/worker/engine/index.ts';
import { baseSessionOptions, openModelSession, type SessionSettings } from '../../../services/worker/engine/onnx-session.ts';
import { tuneThreads } from '../../../services/worker/engine/tune.ts';

const MODEL = path.join(PACKAGE_ROOT, 'models', 'tiny-flux');

/** The settings every component session of a pipeline was opened with. */
async function sessionSettings(options: { intraOpSpinning?: boolean }): Promise<SessionSettings[]> {
  const seen: SessionSettings[] = [];
  const pipeline = createFluxPipeline({
    modelDirectory: MODEL,
    ...options,
    openSession: (file, settings) => {
      seen.push(settings);
      return openModelSession(file, settings);
    },
  });
  await pipeline.load();
  await pipeline.close();
  return seen;
}

test('idle-thread spinning is off unless asked for, from the environment to every onnxruntime session', async () => {
  assert.equal(loadConfig({}).model.intraOpSpinning, false);
  assert.equal(loadConfig({ T2I_INTRA_OP_SPINNING: 'true' }).model.intraOpSpinning, true);
  const off = await sessionSettings({});
  const on = await sessionSettings({ intraOpSpinning: true });
  assert.equal(off.length, 4);
  assert.equal(on.length, 4);
  const spin = (s: SessionSettings) =>
    (baseSessionOptions(s).extra as { session: { intra_op: { allow_spinning: string } } }).session.intra_op.allow_spinning;
  assert.deepEqual(off.map(spin), ['0', '0', '0', '0']);
  assert.deepEqual(on.map(spin), ['1', '1', '1', '1']);
});

test('tune measures every candidate on the real model and names the fastest', async () => {
  const candidates = [
    { threads: 1, spinning: false },
    { threads: 1, spinning: true },
  ];
  const progress: number[] = [];
  const { results, best } = await tuneThreads({
    modelDirectory: MODEL,
    batch: 1,
    passes: 1,
    candidates,
    onResult: (_r, i) => progress.push(i),
  });
  assert.deepEqual(
    results.map((r) => ({ threads: r.threads, spinning: r.spinning })),
    candidates,
  );
  assert.deepEqual(progress, [0, 1]);
  for (const r of results) assert.ok(r.imagesPerSecond > 0 && Number.isFinite(r.msPerBatch));
  assert.equal(best.imagesPerSecond, Math.max(...results.map((r) => r.imagesPerSecond)));
});

test('t2i model tune rejects thread and spinning lists it cannot use, naming the value', () => {
  assert.deepEqual(parseThreadList('1, 2,default'), [1, 2, undefined]);
  assert.deepEqual(parseSpinningList('off,on'), [false, true]);
  assert.throws(() => parseThreadList('1,0'), /--threads: "0" is not a thread count/);
  assert.throws(() => parseThreadList('two'), /"two"/);
  assert.throws(() => parseSpinningList('maybe'), /--spinning: "maybe" is not on or off/);
});
