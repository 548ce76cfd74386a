/**
 * Flow-match Euler schedule, reproducing diffusers' FluxPipeline.__call__ step 5 (np.linspace +
 * calculate_shift) and FlowMatchEulerDiscreteScheduler.set_timesteps bit for bit: the linspace and
 * mu are computed in float64 like Python does, the shift in float32 like numpy does on a float32
 * array with Python-float scalars (the scalars are rounded to float32 first), so the sigmas here
 * equal the reference's exactly rather than to within 1 ulp.
 */
import { EngineError } from './errors.ts';

const f32 = Math.fround;

/** The parts of scheduler/scheduler_config.json that shape the FLUX schedule. */
export interface FlowMatchSchedulerConfig {
  /** Default 1000. timesteps = sigmas * numTrainTimesteps. */
  numTrainTimesteps: number;
  /** Static shift used when dynamic shifting is off. Default 1 (no shift; FLUX schnell uses 1). */
  shift: number;
  /** Resolution-dependent shift (FLUX dev). Default false. */
  useDynamicShifting: boolean;
  /** Default 0.5. */
  baseShift: number;
  /** Default 1.15. */
  maxShift: number;
  /** Default 256. */
  baseImageSeqLen: number;
  /** Default 4096. */
  maxImageSeqLen: number;
  /** Default 'exponential'. */
  timeShiftType: 'exponential' | 'linear';
  /** Default null (off). Stretches the schedule to end at this value. */
  shiftTerminal: number | null;
}

/** FLUX.1-schnell's scheduler_config.json (static shift 1): for models without a guidance input. */
export const DEFAULT_SCHEDULER_CONFIG: Readonly<FlowMatchSchedulerConfig> = Object.freeze({
  numTrainTimesteps: 1000,
  shift: 1,
  useDynamicShifting: false,
  baseShift: 0.5,
  maxShift: 1.15,
  baseImageSeqLen: 256,
  maxImageSeqLen: 4096,
  timeShiftType: 'exponential',
  shiftTerminal: null,
});

/**
 * FLUX.1-dev's scheduler_config.json (shift 3, dynamic shifting): what a guidance-distilled model gets
 * when its export lost scheduler/ (never schnell's, which would render a dev model with wrong sigmas).
 */
export const FLUX_DEV_SCHEDULER_CONFIG: Readonly<FlowMatchSchedulerConfig> = Object.freeze({
  ...DEFAULT_SCHEDULER_CONFIG,
  shift: 3,
  useDynamicShifting: true,
});

function numberOr(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

/**
 * Parses scheduler_config.json. Options that change the sigma formula in ways this engine does not
 * reproduce (Karras/exponential/beta sigmas, inverted sigmas, stochastic sampling, flow sigmas)
 * are rejected instead of silently producing different images.
 */
export function parseSchedulerConfig(raw: Record<string, unknown>, file = 'scheduler_config.json'): FlowMatchSchedulerConfig {
  const className = raw['_class_name'];
  if (typeof className === 'string' && className !== 'FlowMatchEulerDiscreteScheduler') {
    throw new EngineError('MODEL_UNSUPPORTED', `${file}: scheduler ${className} is not supported (need FlowMatchEulerDiscreteScheduler)`);
  }
  for (const flag of [
    'use_karras_sigmas',
    'use_exponential_sigmas',
    'use_beta_sigmas',
    'invert_sigmas',
    'stochastic_sampling',
    'use_flow_sigmas',
  ]) {
    if (raw[flag] === true) {
      throw new EngineError('MODEL_UNSUPPORTED', `${file}: ${flag}=true is not supported by this engine`);
    }
  }
  const timeShiftType = raw['time_shift_type'] ?? 'exponential';
  if (timeShiftType !== 'exponential' && timeShiftType !== 'linear') {
    throw new EngineError('MODEL_UNSUPPORTED', `${file}: time_shift_type ${String(timeShiftType)} is not supported`);
  }
  const d = DEFAULT_SCHEDULER_CONFIG;
  const shiftTerminal = raw['shift_terminal'];
  return {
    numTrainTimesteps: numberOr(raw['num_train_timesteps'], d.numTrainTimesteps),
    shift: numberOr(raw['shift'], d.shift),
    useDynamicShifting: raw['use_dynamic_shifting'] === true,
    baseShift: numberOr(raw['base_shift'], d.baseShift),
    maxShift: numberOr(raw['max_shift'], d.maxShift),
    baseImageSeqLen: numberOr(raw['base_image_seq_len'], d.baseImageSeqLen),
    maxImageSeqLen: numberOr(raw['max_image_seq_len'], d.maxImageSeqLen),
    timeShiftType,
    shiftTerminal: typeof shiftTerminal === 'number' && shiftTerminal !== 0 ? shiftTerminal : null,
  };
}

/** diffusers.pipelines.flux.pipeline_flux.calculate_shift (float64). */
export function calculateShift(imageSeqLen: number, config: FlowMatchSchedulerConfig): number {
  const m = (config.maxShift - config.baseShift) / (config.maxImageSeqLen - config.baseImageSeqLen);
  const b = config.baseShift - m * config.baseImageSeqLen;
  return imageSeqLen * m + b;
}

/** np.linspace(start, stop, num) in float64, endpoint included, same operation order as numpy. */
export function linspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  const div = num - 1;
  const delta = stop - start;
  if (div > 0) {
    const step = delta / div;
    for (let i = 0; i < num; i++) out[i] = i * step + start;
    out[num - 1] = stop;
  } else if (num === 1) {
    out[0] = start;
  }
  return out;
}

export interface FlowMatchSchedule {
  /** N+1 sigmas in float32, descending from ~1 to the final 0. Euler step i uses sigmas[i], sigmas[i+1]. */
  sigmas: Float32Array;
  /**
   * N transformer timestep inputs: (sigma * numTrainTimesteps) / 1000 in float32, as FluxPipeline
   * passes `timestep / 1000`; equals sigma up to float32 rounding.
   */
  timesteps: Float32Array;
  /** The dynamic-shift mu (float64), or null for a static shift. */
  mu: number | null;
}

/**
 * Sigmas for `steps` Euler steps over an image of `imageSeqLen` packed tokens.
 * seq 4096, N=4, FLUX dev config -> [1, 0.90453, 0.75951, 0.51284, 0].
 */
export function flowMatchSchedule(config: FlowMatchSchedulerConfig, steps: number, imageSeqLen: number): FlowMatchSchedule {
  if (!Number.isInteger(steps) || steps < 1) {
    throw new EngineError('BAD_REQUEST', `steps must be an integer >= 1, got ${steps}`);
  }
  const base = linspace(1.0, 1 / steps, steps);
  const sigmas = new Float32Array(steps + 1);
  let mu: number | null = null;
  if (config.useDynamicShifting) {
    mu = calculateShift(imageSeqLen, config);
    const muTerm = f32(config.timeShiftType === 'exponential' ? Math.exp(mu) : mu);
    for (let i = 0; i < steps; i++) {
      const t = f32(base[i]!);
      // (1/t - 1) ** 1.0 is exact, so the power is left out.
      const odds = f32(f32(1 / t) - 1);
      sigmas[i] = f32(muTerm / f32(muTerm + odds));
    }
  } else {
    const shift = f32(config.shift);
    const shiftMinusOne = f32(config.shift - 1);
    for (let i = 0; i < steps; i++) {
      const s = f32(base[i]!);
      sigmas[i] = f32(f32(shift * s) / f32(1 + f32(shiftMinusOne * s)));
    }
  }
  if (config.shiftTerminal !== null) {
    const lastOneMinus = f32(1 - sigmas[steps - 1]!);
    const scale = f32(lastOneMinus / f32(1 - config.shiftTerminal));
    for (let i = 0; i < steps; i++) sigmas[i] = f32(1 - f32(f32(1 - sigmas[i]!) / scale));
  }
  sigmas[steps] = 0;
  const timesteps = new Float32Array(steps);
  for (let i = 0; i < steps; i++) {
    timesteps[i] = f32(f32(sigmas[i]! * config.numTrainTimesteps) / 1000);
  }
  return { sigmas, timesteps, mu };
}
