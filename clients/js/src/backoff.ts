/**
 * Shapes the delays between connection attempts: the delay before attempt n
 * (0 for the first retry) is drawn uniformly from [0, min(max, min·factorⁿ))
 * — exponential back-off with full jitter, so that the clients of an
 * instance that went away do not come back at once. A connection that
 * reaches welcome starts the count again.
 */
export interface BackoffOptions {
  /** The ceiling of the first delay, in milliseconds. Default: 200. */
  readonly min?: number;
  /** Caps every ceiling, in milliseconds. Default: 10000. */
  readonly max?: number;
  /** Growth of the ceiling per attempt, at least 1. Default: 2. */
  readonly factor?: number;
}

/** A back-off with its defaults filled in. */
export class Backoff {
  readonly min: number;
  readonly max: number;
  readonly factor: number;
  private readonly random: () => number;

  constructor(opts: BackoffOptions = {}, random: () => number = Math.random) {
    const positive = (v: number | undefined, def: number) => (v !== undefined && Number.isFinite(v) && v > 0 ? v : def);
    this.min = positive(opts.min, 200);
    this.max = Math.max(positive(opts.max, 10_000), this.min);
    this.factor = opts.factor !== undefined && Number.isFinite(opts.factor) && opts.factor >= 1 ? opts.factor : 2;
    this.random = random;
  }

  /** ceiling returns the largest delay of attempt: min(max, min·factor^attempt). */
  ceiling(attempt: number): number {
    const c = this.min * this.factor ** Math.max(attempt, 0);
    return Number.isFinite(c) && c < this.max ? c : this.max;
  }

  /** delay returns the delay before attempt, drawn uniformly from [0, ceiling(attempt)). */
  delay(attempt: number): number {
    let r = this.random();
    if (!(r >= 0 && r < 1)) r = 0;
    return r * this.ceiling(attempt);
  }
}
