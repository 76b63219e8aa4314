/**
 * Lets a repeated message through at most once per interval and counts the
 * ones held back, so a fault that repeats thousands of times a second (out
 * of descriptors) gives one log line per interval, not a flood.
 *
 * @example
 * ```ts
 * const throttle = new Throttle(10_000);
 * const held = throttle.pass();
 * if (held !== undefined) log(`accept failed${held ? ` (${held} more)` : ""}`);
 * ```
 */
export class Throttle {
  private last = -Infinity;
  private held = 0;

  constructor(readonly intervalMs: number, private readonly now: () => number = Date.now) {}

  /** `undefined` while held back; else how many were held back since the last one. */
  pass(): number | undefined {
    const t = this.now();
    if (t - this.last < this.intervalMs) {
      this.held++;
      return undefined;
    }
    this.last = t;
    const held = this.held;
    this.held = 0;
    return held;
  }
}

/**
 * The throttle key of a warning that names none: its text before the first
 * colon (`accept failed: …` → `accept failed`), so that one kind of fault
 * shares a key whatever its details.
 *
 * @example
 * ```ts
 * warningKey("accept failed: Too many open files"); // "accept failed"
 * ```
 */
export function warningKey(message: string): string {
  return message.split(":")[0];
}
