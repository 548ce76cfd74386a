/**
 * Progress display for long CLI commands: a one-line bar redrawn in place on a terminal, a plain log line
 * every few seconds otherwise (CI logs, pipes), and a final line either way. No dependency; the rendering
 * is pure (renderProgress) so it can be tested without a terminal.
 */

export interface ProgressOptions {
  /** Shown first, e.g. `produce 01J…`. */
  label: string;
  /** Total of the measured quantity; the bar, percentage and ETA appear only when it is known. */
  total?: number;
  /** How the measured quantity reads: `bytes` (KiB, MiB…) or `count`. Default `count`. */
  unit?: 'bytes' | 'count';
  /** A field whose rate is shown as `<name>/s` (e.g. `rows`); default: the measured quantity's rate. */
  rateField?: string;
  /** Where to draw. Default process.stderr (stdout stays free for the command's result). */
  output?: ProgressOutput;
  /** Draw a bar (true) or log lines (false). Default: whether `output` is a terminal. */
  tty?: boolean;
  /** Least time between two redraws of the bar, ms. Default 100. */
  redrawMs?: number;
  /** Time between two log lines when not on a terminal, ms. Default 10 000. */
  logEveryMs?: number;
  /** Clock, ms (tests). Default Date.now. */
  now?: () => number;
}

export interface ProgressOutput {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** What one line shows. */
export interface ProgressSnapshot {
  label: string;
  current: number;
  total: number | undefined;
  unit: 'bytes' | 'count';
  /** Extra counts, in insertion order (`rows 12,345  bad 3`). */
  fields: Readonly<Record<string, number | string>>;
  /** Per second, of `rateName`; undefined until there is a measurement. */
  rate: number | undefined;
  rateName: string;
  /** Seconds left, when the total and a rate of the measured quantity are known. */
  etaSeconds: number | undefined;
  elapsedSeconds: number;
}

/** Rates are measured over this window, so they follow changes but do not jitter. */
const RATE_WINDOW_MS = 5000;

interface Sample {
  at: number;
  current: number;
  rateValue: number;
}

export class ProgressBar {
  private readonly output: ProgressOutput;
  private readonly tty: boolean;
  private readonly now: () => number;
  private readonly startedAt: number;
  private readonly samples: Sample[] = [];
  private current = 0;
  private fields: Record<string, number | string> = {};
  private lastDrawAt = Number.NEGATIVE_INFINITY;
  private lastLogAt: number;
  private drawn = false;
  private finished = false;

  constructor(private readonly options: ProgressOptions) {
    this.output = options.output ?? process.stderr;
    this.tty = options.tty ?? Boolean(this.output.isTTY);
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
    this.lastLogAt = this.startedAt;
    this.samples.push({ at: this.startedAt, current: 0, rateValue: 0 });
  }

  /** Records the measured quantity and the fields; redraws when due (throttled). */
  update(current: number, fields: Record<string, number | string> = {}): void {
    if (this.finished) return;
    this.current = current;
    this.fields = { ...fields };
    const at = this.now();
    this.sample(at);
    if (this.tty) {
      if (at - this.lastDrawAt < (this.options.redrawMs ?? 100)) return;
      this.lastDrawAt = at;
      const columns = this.output.columns ?? 100;
      this.output.write(`\r${fitWidth(renderProgress(this.snapshot(at)), columns - 1)}\u001b[K`);
      this.drawn = true;
    } else if (at - this.lastLogAt >= (this.options.logEveryMs ?? 10_000)) {
      this.lastLogAt = at;
      this.output.write(`${renderProgress(this.snapshot(at))}\n`);
    }
  }

  /** Draws the last state as a final line (rate: the average over the whole run). Idempotent. */
  finish(fields?: Record<string, number | string>): void {
    if (this.finished) return;
    this.finished = true;
    if (fields) this.fields = { ...fields };
    const at = this.now();
    const elapsed = (at - this.startedAt) / 1000;
    const snapshot = this.snapshot(at);
    const rateValue = this.rateValue(this.current);
    snapshot.rate = elapsed > 0 ? rateValue / elapsed : undefined;
    snapshot.etaSeconds = undefined;
    this.output.write(`${this.tty && this.drawn ? '\r\u001b[K' : ''}${renderProgress(snapshot)}\n`);
  }

  /** Removes the bar without a final line (e.g. before printing an error). */
  clear(): void {
    if (this.tty && this.drawn && !this.finished) this.output.write('\r\u001b[K');
    this.drawn = false;
  }

  snapshot(at = this.now()): ProgressSnapshot {
    const first = this.samples[0]!;
    const last = this.samples[this.samples.length - 1]!;
    const span = (last.at - first.at) / 1000;
    const rate = span > 0 ? (last.rateValue - first.rateValue) / span : undefined;
    const currentRate = span > 0 ? (last.current - first.current) / span : undefined;
    const total = this.options.total;
    const etaSeconds =
      total !== undefined && currentRate !== undefined && currentRate > 0 ? Math.max(0, (total - this.current) / currentRate) : undefined;
    return {
      label: this.options.label,
      current: this.current,
      total,
      unit: this.options.unit ?? 'count',
      fields: this.fields,
      rate,
      rateName: this.options.rateField ?? (this.options.unit === 'bytes' ? 'B' : ''),
      etaSeconds,
      elapsedSeconds: (at - this.startedAt) / 1000,
    };
  }

  private rateValue(current: number): number {
    const field = this.options.rateField;
    if (field === undefined) return current;
    const value = this.fields[field];
    return typeof value === 'number' ? value : 0;
  }

  private sample(at: number): void {
    this.samples.push({ at, current: this.current, rateValue: this.rateValue(this.current) });
    // Keep one sample older than the window, so the window is always fully covered.
    while (this.samples.length > 2 && this.samples[1]!.at <= at - RATE_WINDOW_MS) this.samples.shift();
  }
}

/** One line: `label [#####-----]  45%  1.2 MiB/2.6 MiB  rows 12,345  bad 3  34.5k rows/s  ETA 0:12`. */
export function renderProgress(s: ProgressSnapshot): string {
  const parts: string[] = [s.label];
  const amount = (n: number) => (s.unit === 'bytes' ? formatBytes(n) : formatCount(n));
  if (s.total !== undefined && s.total > 0) {
    const fraction = Math.min(1, Math.max(0, s.current / s.total));
    const width = 20;
    const filled = Math.round(fraction * width);
    parts.push(
      `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`,
      `${(fraction * 100).toFixed(0).padStart(3)}%`,
      `${amount(s.current)}/${amount(s.total)}`,
    );
  } else {
    parts.push(amount(s.current));
  }
  for (const [name, value] of Object.entries(s.fields)) parts.push(`${name} ${typeof value === 'number' ? formatCount(value) : value}`);
  if (s.rate !== undefined) {
    parts.push(s.rateName === 'B' ? `${formatBytes(s.rate)}/s` : `${formatRate(s.rate)}${s.rateName ? ` ${s.rateName}` : ''}/s`);
  }
  if (s.etaSeconds !== undefined) parts.push(`ETA ${formatDuration(s.etaSeconds)}`);
  else if (s.total === undefined || s.current >= s.total) parts.push(formatDuration(s.elapsedSeconds));
  return parts.join('  ');
}

/** 1536 → `1.5 KiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${units[unit]}`;
}

/** 1234567 → `1,234,567`. */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** 34512 → `34.5k`, 950 → `950`. */
export function formatRate(perSecond: number): string {
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)}M`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(1)}k`;
  return perSecond >= 10 ? perSecond.toFixed(0) : perSecond.toFixed(1);
}

/** 75 → `1:15`, 3725 → `1:02:05`. */
export function formatDuration(seconds: number): string {
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const mm = h > 0 ? String(m).padStart(2, '0') : String(m);
  return `${h > 0 ? `${h}:` : ''}${mm}:${String(s).padStart(2, '0')}`;
}

function fitWidth(line: string, columns: number): string {
  return line.length <= columns ? line : line.slice(0, Math.max(0, columns));
}
