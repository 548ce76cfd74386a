/**
 * Micro-batching policy: prompts of the same shape (width, height, steps) go into one engine pass, up to
 * maxBatch of them; a partial batch runs once its oldest prompt has waited maxWaitMs, so a trickle of
 * prompts is not held back. When draining, partial batches run at once.
 */
export interface BatchPolicy {
  maxBatch: number;
  maxWaitMs: number;
}

export interface QueuedGroup {
  key: string;
  size: number;
  /** When the oldest item of the group was queued (ms). */
  oldestAt: number;
}

export type BatchDecision = { run: string } | { waitMs: number } | { idle: true };

/**
 * Which group to run now, or how long to wait. Pure: full groups first (oldest first), then groups
 * whose oldest item is due; otherwise the time until the first one is due.
 */
export function decideBatch(groups: readonly QueuedGroup[], now: number, policy: BatchPolicy, draining: boolean): BatchDecision {
  if (groups.length === 0) return { idle: true };
  const byAge = [...groups].sort((a, b) => a.oldestAt - b.oldestAt);
  const full = byAge.find((g) => g.size >= policy.maxBatch);
  if (full) return { run: full.key };
  const oldest = byAge[0] as QueuedGroup;
  const dueIn = oldest.oldestAt + policy.maxWaitMs - now;
  if (draining || dueIn <= 0) return { run: oldest.key };
  return { waitMs: dueIn };
}

/** The queue behind the policy: add() items, `await next()` batches (undefined once closed and empty). */
export class MicroBatcher<T> {
  private readonly groups = new Map<string, { items: T[]; queuedAt: number[] }>();
  private waiter: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private draining = false;
  private closed = false;
  private queued = 0;

  constructor(
    private policy: BatchPolicy,
    private readonly shapeOf: (item: T) => string,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get size(): number {
    return this.queued;
  }

  get maxBatch(): number {
    return this.policy.maxBatch;
  }

  /** Lowers (or raises) the batch size for the rest of the run, e.g. after an out-of-memory error. */
  setMaxBatch(maxBatch: number): void {
    this.policy = { ...this.policy, maxBatch: Math.max(1, maxBatch) };
    this.wake();
  }

  add(item: T): void {
    if (this.closed) throw new Error('MicroBatcher is closed');
    const key = this.shapeOf(item);
    let group = this.groups.get(key);
    if (!group) {
      group = { items: [], queuedAt: [] };
      this.groups.set(key, group);
    }
    group.items.push(item);
    group.queuedAt.push(this.now());
    this.queued++;
    this.wake();
  }

  /** Run partial batches at once from now on (graceful stop). */
  drain(): void {
    this.draining = true;
    this.wake();
  }

  /** Removes and returns every queued item (used when the worker stops on a fatal error). */
  takeAll(): T[] {
    const all = [...this.groups.values()].flatMap((g) => g.items);
    this.groups.clear();
    this.queued = 0;
    this.wake();
    return all;
  }

  /** No more items will be added: next() resolves undefined once the queue is empty. */
  close(): void {
    this.closed = true;
    this.draining = true;
    this.wake();
  }

  async next(): Promise<T[] | undefined> {
    for (;;) {
      const decision = decideBatch(
        [...this.groups].map(([key, g]) => ({ key, size: g.items.length, oldestAt: g.queuedAt[0] ?? 0 })),
        this.now(),
        this.policy,
        this.draining,
      );
      if ('run' in decision) return this.take(decision.run);
      if ('idle' in decision && this.closed) return undefined;
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        if ('waitMs' in decision) this.timer = setTimeout(() => this.wake(), Math.ceil(decision.waitMs));
      });
    }
  }

  private take(key: string): T[] {
    const group = this.groups.get(key);
    if (!group) return [];
    const batch = group.items.splice(0, this.policy.maxBatch);
    group.queuedAt.splice(0, batch.length);
    this.queued -= batch.length;
    if (group.items.length === 0) this.groups.delete(key);
    return batch;
  }

  private wake(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }
}
