import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DEFAULT_SCHEDULER_CONFIG,
  calculateShift,
  flowMatchSchedule,
  linspace,
  parseSchedulerConfig,
} from '../../../services/worker/engine/schedule.ts';
import { EngineError } from '../../../services/worker/engine/errors.ts';

const FLUX_DEV = parseSchedulerConfig({
  _class_name: 'FlowMatchEulerDiscreteScheduler',
  base_image_seq_len: 256,
  base_shift: 0.5,
  max_image_seq_len: 4096,
  max_shift: 1.15,
  num_train_timesteps: 1000,
  shift: 3.0,
  use_dynamic_shifting: true,
});

function assertClose(actual: ArrayLike<number>, expected: readonly number[], tolerance: number): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i]! - expected[i]!) <= tolerance, `index ${i}: ${actual[i]} vs ${expected[i]}`);
  }
}

describe('flow-match schedule', () => {
  it('matches the worked dynamic-shift values for seq 4096 and seq 64', () => {
    assertClose(flowMatchSchedule(FLUX_DEV, 4, 4096).sigmas, [1, 0.90453, 0.75951, 0.51284, 0], 5e-6);
    assertClose(flowMatchSchedule(FLUX_DEV, 4, 64).sigmas, [1, 0.82723, 0.61479, 0.34726, 0], 5e-6);
  });

  it('computes mu like calculate_shift', () => {
    assert.equal(calculateShift(4096, FLUX_DEV), 1.15);
    assert.ok(Math.abs(calculateShift(256, FLUX_DEV) - 0.5) < 1e-15);
  });

  it('applies a static shift when dynamic shifting is off (shift 1 = identity)', () => {
    const schnell = { ...DEFAULT_SCHEDULER_CONFIG };
    assertClose(flowMatchSchedule(schnell, 4, 4096).sigmas, [1, 0.75, 0.5, 0.25, 0], 0);
    const shifted = flowMatchSchedule({ ...schnell, shift: 3 }, 2, 4096).sigmas;
    // 3*0.5 / (1 + 2*0.5) = 0.75
    assertClose(shifted, [1, 0.75, 0], 1e-7);
  });

  it('gives transformer timesteps of (sigma*1000)/1000 in float32', () => {
    const { sigmas, timesteps } = flowMatchSchedule(FLUX_DEV, 28, 4096);
    assert.equal(timesteps.length, 28);
    for (let i = 0; i < 28; i++) {
      assert.equal(timesteps[i], Math.fround(Math.fround(sigmas[i]! * 1000) / 1000));
      assert.ok(Math.abs(timesteps[i]! - sigmas[i]!) < 1e-6);
    }
  });

  it('follows numpy linspace, endpoint exact', () => {
    assert.deepEqual(Array.from(linspace(1, 0.25, 4)), [1, 0.75, 0.5, 0.25]);
    assert.deepEqual(Array.from(linspace(1, 1, 1)), [1]);
    assert.equal(linspace(1, 1 / 3, 3)[2], 1 / 3);
  });

  it('a different base shift (a wrong schedule) changes the sigmas', () => {
    const good = flowMatchSchedule(FLUX_DEV, 4, 64).sigmas;
    const bad = flowMatchSchedule({ ...FLUX_DEV, baseShift: FLUX_DEV.baseShift + 0.5 }, 4, 64).sigmas;
    assert.ok(Math.abs(good[2]! - bad[2]!) > 0.05);
  });

  it('rejects schedules it does not reproduce and bad step counts', () => {
    assert.throws(
      () => parseSchedulerConfig({ use_karras_sigmas: true }),
      (e: unknown) => e instanceof EngineError && e.code === 'MODEL_UNSUPPORTED',
    );
    assert.throws(() => parseSchedulerConfig({ _class_name: 'EulerDiscreteScheduler' }), /not supported/);
    assert.throws(
      () => flowMatchSchedule(FLUX_DEV, 0, 64),
      (e: unknown) => e instanceof EngineError && e.code === 'BAD_REQUEST',
    );
  });
});
