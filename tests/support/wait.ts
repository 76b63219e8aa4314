/**
 * Bounded waits: a test never waits on anything without a limit and a
 * message that says what it was waiting for, so a broken product fails
 * the test quickly instead of hanging it.
 *
 * @module
 */

/**
 * Resolves as `promise` does, or rejects after `ms` with `waiting for WHAT`
 * (`what` may be a function, to say what had arrived by then).
 *
 * @example
 * ```ts
 * assert.equal(await within(lb.exited, 15_000, "balance to exit after its grace"), 0);
 * ```
 */
export function within<T>(promise: Promise<T>, ms: number, what: string | (() => string)): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const said = typeof what === "function" ? what() : what;
      reject(new Error(`timed out after ${ms / 1000} s waiting for ${said}`));
    }, ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/**
 * Polls `probe` every `everyMs` until `done(value)` holds; resolves with
 * that value, or rejects after `ms` with `what` and the last value seen.
 *
 * @example
 * ```ts
 * const rows = await until(() => status(), (s) => s[0].c === 0, "c back to 0");
 * ```
 */
export async function until<T>(
  probe: () => Promise<T> | T,
  done: (value: T) => boolean,
  what: string,
  { ms = 10_000, everyMs = 50 } = {},
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await within(Promise.resolve().then(probe), Math.max(deadline - Date.now(), 1), what);
    if (done(value)) return value;
    if (Date.now() >= deadline) {
      throw new Error(`not reached within ${ms / 1000} s: ${what}; last seen ${JSON.stringify(value)}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
