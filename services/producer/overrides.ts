/** Generation parameters a row (or the job) may set. Absent means: the job default, else the model's. */
export interface GenerationOverrides {
  seed?: number;
  width?: number;
  height?: number;
  steps?: number;
  guidance?: number;
}

export const OVERRIDE_FIELDS = ['seed', 'width', 'height', 'steps', 'guidance'] as const;
export type OverrideField = (typeof OVERRIDE_FIELDS)[number];

export const SIZE_MIN = 16;
export const SIZE_MAX = 4096;
export const SIZE_STEP = 16;
export const STEPS_MAX = 200;
export const GUIDANCE_MAX = 100;

function shown(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'object') return Array.isArray(value) ? 'an array' : 'an object';
  return String(value);
}

/**
 * What is wrong with `value` as the given parameter, or undefined when it is fine. The text names the
 * field, what it expects and what it got, so the person reading errors.jsonl knows the fix.
 */
export function overrideProblem(field: OverrideField, value: unknown): string | undefined {
  switch (field) {
    case 'width':
    case 'height': {
      if (typeof value === 'number' && Number.isInteger(value) && value >= SIZE_MIN && value <= SIZE_MAX && value % SIZE_STEP === 0)
        return undefined;
      const hint =
        typeof value === 'number' && Number.isFinite(value) && value >= SIZE_MIN && value <= SIZE_MAX
          ? ` (nearest: ${Math.min(SIZE_MAX, Math.max(SIZE_MIN, Math.round(value / SIZE_STEP) * SIZE_STEP))})`
          : '';
      return `${field} must be an integer multiple of ${SIZE_STEP} from ${SIZE_MIN} to ${SIZE_MAX}, got ${shown(value)}${hint}`;
    }
    case 'steps':
      if (typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= STEPS_MAX) return undefined;
      return `steps must be an integer from 1 to ${STEPS_MAX}, got ${shown(value)}`;
    case 'guidance':
      if (typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= GUIDANCE_MAX) return undefined;
      return `guidance must be a number from 0 to ${GUIDANCE_MAX}, got ${shown(value)}`;
    case 'seed':
      if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return undefined;
      return `seed must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}, got ${shown(value)}`;
  }
}

/**
 * Reads the overrides of a parsed row. `null` counts as absent. Returns the overrides, or the list of
 * problems (one per bad field).
 */
export function readOverrides(row: Record<string, unknown>): { overrides: GenerationOverrides; problems: string[] } {
  const overrides: GenerationOverrides = {};
  const problems: string[] = [];
  for (const field of OVERRIDE_FIELDS) {
    const value = row[field];
    if (value === undefined || value === null) continue;
    const problem = overrideProblem(field, value);
    if (problem) problems.push(problem);
    else overrides[field] = value as number;
  }
  return { overrides, problems };
}
