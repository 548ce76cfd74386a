import { T2iError } from './errors.ts';

/**
 * Reads typed values from an environment-like record, collecting every problem instead of stopping at
 * the first, so a misconfigured service reports all bad variables at once. Each message names the
 * variable, the value it got and what it expects.
 */
export class EnvReader {
  readonly problems: string[] = [];
  constructor(private readonly env: Readonly<Record<string, string | undefined>>) {}

  raw(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  string(name: string, fallback: string): string;
  string(name: string): string | undefined;
  string(name: string, fallback?: string): string | undefined {
    return this.raw(name) ?? fallback;
  }

  /** A value from a closed set. */
  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const lower = value.toLowerCase();
    if ((allowed as readonly string[]).includes(lower)) return lower as T;
    this.problems.push(`${name}=${JSON.stringify(value)}: expected one of ${allowed.join(', ')}`);
    return fallback;
  }

  int(name: string, fallback: number, range: { min?: number; max?: number } = {}): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const parsed = Number(value);
    if (!Number.isInteger(parsed)) {
      this.problems.push(`${name}=${JSON.stringify(value)}: expected a whole number`);
      return fallback;
    }
    return this.inRange(name, value, parsed, range, fallback);
  }

  number(name: string, fallback: number, range: { min?: number; max?: number } = {}): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const parsed = Number(value);
    if (!Number.isFinite(parsed)) {
      this.problems.push(`${name}=${JSON.stringify(value)}: expected a number`);
      return fallback;
    }
    return this.inRange(name, value, parsed, range, fallback);
  }

  bool(name: string, fallback: boolean): boolean {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const lower = value.toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(lower)) return true;
    if (['0', 'false', 'no', 'off'].includes(lower)) return false;
    this.problems.push(`${name}=${JSON.stringify(value)}: expected true or false`);
    return fallback;
  }

  url(name: string, fallback: string): string;
  url(name: string): string | undefined;
  url(name: string, fallback?: string): string | undefined {
    const value = this.raw(name) ?? fallback;
    if (value === undefined) return undefined;
    try {
      const parsed = new URL(value);
      if (!['http:', 'https:'].includes(parsed.protocol)) throw new Error('protocol');
      return value.replace(/\/+$/, '');
    } catch {
      this.problems.push(`${name}=${JSON.stringify(value)}: expected an http(s) URL such as http://127.0.0.1:9000`);
      return fallback;
    }
  }

  /** Comma-separated host:port list. */
  hostPorts(name: string, fallback: string): string[] {
    const value = this.raw(name) ?? fallback;
    const items = value
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    const bad = items.filter((item) => !/^[A-Za-z0-9.\-[\]:]+:\d{1,5}$/.test(item));
    if (items.length === 0 || bad.length > 0) {
      this.problems.push(`${name}=${JSON.stringify(value)}: expected comma-separated host:port pairs such as 127.0.0.1:9092`);
      return fallback.split(',');
    }
    return items;
  }

  matches(name: string, pattern: RegExp, fallback: string, expected: string): string {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    if (pattern.test(value)) return value;
    this.problems.push(`${name}=${JSON.stringify(value)}: expected ${expected}`);
    return fallback;
  }

  /** Throws one CONFIG_INVALID error listing every problem found so far. */
  assertValid(context: string): void {
    if (this.problems.length === 0) return;
    throw new T2iError('CONFIG_INVALID', `invalid configuration for ${context}:\n  - ${this.problems.join('\n  - ')}`);
  }

  private inRange(name: string, value: string, parsed: number, range: { min?: number; max?: number }, fallback: number): number {
    if ((range.min !== undefined && parsed < range.min) || (range.max !== undefined && parsed > range.max)) {
      const bounds = `${range.min ?? '-inf'}..${range.max ?? 'inf'}`;
      this.problems.push(`${name}=${JSON.stringify(value)}: expected a value in ${bounds}`);
      return fallback;
    }
    return parsed;
  }
}
