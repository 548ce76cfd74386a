import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EngineClock } from '../../services/worker/engine-clock.ts';
import type { GeneratedImage, ImageEngine } from '../../services/worker/engine/index.ts';

/** An engine whose passes end when the test says so, in the order they were given (as FluxPipeline's queue runs them). */
function manualEngine(): ImageEngine & { finishNext: () => Promise<void> } {
  const ends: (() => void)[] = [];
  return {
    get info(): never {
      throw new Error('not used');
    },
    async load() {},
    async close() {},
    generate: () => new Promise<GeneratedImage[]>((resolve) => ends.push(() => resolve([]))),
    async finishNext() {
      ends.shift()?.();
      // Let the awaiting wrapper run its bookkeeping.
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
}

test('a pass queued behind another is charged only from the moment the one before it ended', async () => {
  let now = 1000;
  const clock = new EngineClock(() => now);
  const engine = manualEngine();
  const a = clock.timed(engine);
  const b = clock.timed(engine);
  const runningA = a.engine.generate([]);
  now = 1010;
  const runningB = b.engine.generate([]); // given while A runs: waits in the engine's queue
  now = 1100;
  await engine.finishNext(); // A ends at 1100: ran 1000 → 1100
  now = 1180;
  await engine.finishNext(); // B ends at 1180: ran 1100 → 1180, not 1010 → 1180
  await Promise.all([runningA, runningB]);
  assert.equal(a.elapsedMs(), 100);
  assert.equal(b.elapsedMs(), 80);
});

test('a pass given to an idle engine runs from when it was given, and idle time is counted only while nothing is pending', async () => {
  let now = 0;
  const clock = new EngineClock(() => now);
  const engine = manualEngine();
  const t = clock.timed(engine);
  now = 50;
  assert.equal(clock.idleSinceMs(20), 30, 'idle since the clock started: only the time after `from` counts');
  const pass = t.engine.generate([]);
  now = 70;
  assert.equal(clock.idleSinceMs(20), 0, 'busy: not idle');
  await engine.finishNext();
  await pass;
  assert.equal(t.elapsedMs(), 20);
  now = 100;
  assert.equal(clock.idleSinceMs(0), 30, 'idle since the pass ended at 70');
  const second = t.engine.generate([]);
  now = 130;
  await engine.finishNext();
  await second;
  assert.equal(t.elapsedMs(), 50, 'both passes of one batch add up');
  assert.equal(clock.passesPending, 0);
});
