/** A counting semaphore for bounded in-flight work; waiters can be released all at once on shutdown. */
export class Semaphore {
  private waiters: (() => void)[] = [];
  private used = 0;

  constructor(private readonly capacity: number) {}

  get inUse(): number {
    return this.used;
  }

  /** Resolves true once a slot is taken, or false when `cancelled()` became true while waiting. */
  async acquire(cancelled: () => boolean = () => false): Promise<boolean> {
    while (this.used >= this.capacity) {
      if (cancelled()) return false;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    if (cancelled()) return false;
    this.used++;
    return true;
  }

  release(): void {
    this.used = Math.max(0, this.used - 1);
    this.waiters.shift()?.();
  }

  /** Wakes every waiter so it can re-check its cancellation. */
  wakeAll(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}
