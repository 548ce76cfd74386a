import { withGenerate, type ImageEngine } from './engine/index.ts';

/**
 * The engine's own time when more than one pass is handed to it at once. The engine runs passes one after
 * another in the order they were given (FluxPipeline queues them), so a pass runs from when it was given or
 * when the pass before it ended, whichever is later, until it ends. The clock also knows since when the
 * engine has had nothing to do, which the worker books as starved (no batch ready) or blocked (no upload slot).
 */
export class EngineClock {
  private pending = 0;
  /** When the last pass ended (or the clock started): with nothing pending, the engine is idle since then. */
  private lastEnd: number;

  constructor(private readonly now: () => number = () => performance.now()) {
    this.lastEnd = now();
  }

  /** Passes given to the engine and not yet ended. */
  get passesPending(): number {
    return this.pending;
  }

  /** `engine` with every generate() call timed; `elapsedMs()` is the engine time of the calls made through it. */
  timed(engine: ImageEngine): { engine: ImageEngine; elapsedMs: () => number } {
    let total = 0;
    const wrapped = withGenerate(engine, async (requests) => {
      const given = this.give();
      try {
        return await engine.generate(requests);
      } finally {
        total += this.end(given);
      }
    });
    return { engine: wrapped, elapsedMs: () => total };
  }

  /** Milliseconds since `from` that the engine has been idle; 0 while a pass is pending. */
  idleSinceMs(from: number): number {
    if (this.pending > 0) return 0;
    return Math.max(0, this.now() - Math.max(from, this.lastEnd));
  }

  private give(): number {
    this.pending++;
    return this.now();
  }

  private end(given: number): number {
    const at = this.now();
    const ms = at - Math.max(given, this.lastEnd);
    this.lastEnd = at;
    this.pending--;
    return Math.max(0, ms);
  }
}
