/**
 * The one way every test is declared: `node:test`'s `test` with a time
 * limit that always applies, cleanup of whatever the test started when it
 * runs out, and skips that say why.
 *
 * - A test that runs past its limit (default {@link TEST_LIMIT_MS}) fails
 *   with `timed out after N s`, naming itself, and every process and server
 *   it registered with {@link onTimeout} is killed or closed: a hang costs a
 *   minute and leaves nothing running.
 * - `skip: "reason"` registers the test as skipped (Deno: `ignored`, Bun:
 *   `skip`) and prints `SKIP <name>: <reason>` so the reason reaches the
 *   suite's totals line.
 *
 * @example
 * ```ts
 * import { test } from "../support/test.ts";
 * test("relay: bytes arrive", async () => { ... });
 * test("relay: 1 GiB", { timeoutMs: 120_000 }, async () => { ... });
 * test("packaging: arm64", { skip: hasQemu ? false : "qemu-user is not installed" }, () => { ... });
 * ```
 *
 * @module
 */
import { test as nodeTest } from "node:test";

/** What any one test may take unless it says otherwise. */
export const TEST_LIMIT_MS = 60_000;

/** Options of {@link test}. */
export interface TestOptions {
  /** The time limit of this test; default {@link TEST_LIMIT_MS}. */
  timeoutMs?: number;
  /** A reason to skip the test, or false/undefined to run it. */
  skip?: string | false;
}

type Body = () => unknown;

// Cleanups registered by the test running now; sequential runners (deno
// test, bun test) run one test of a file at a time.
let cleanups: (() => void)[] = [];

/**
 * Registers `cleanup` to run if the current test times out (kill a child,
 * close a server). Support helpers call it for everything they start.
 *
 * @example
 * ```ts
 * onTimeout(() => child.kill("SIGKILL"));
 * ```
 */
export function onTimeout(cleanup: () => void): void {
  cleanups.push(cleanup);
}

/**
 * Declares a test with a time limit (see the module doc).
 *
 * @example
 * ```ts
 * test("cli: --help exits 0", async () => { ... });
 * ```
 */
export function test(name: string, optionsOrBody: TestOptions | Body, maybeBody?: Body): void {
  const options = typeof optionsOrBody === "function" ? {} : optionsOrBody;
  const body = typeof optionsOrBody === "function" ? optionsOrBody : maybeBody!;
  if (options.skip) {
    console.log(`SKIP ${name}: ${options.skip}`);
    nodeTest(name, { skip: options.skip }, () => {});
    return;
  }
  const limit = options.timeoutMs ?? TEST_LIMIT_MS;
  // The runner's own limit is a backstop a little later than ours, so that
  // ours (which cleans up) is the one that fires.
  nodeTest(name, { timeout: limit + 5_000 }, async () => {
    cleanups = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        for (const cleanup of cleanups.splice(0)) {
          try {
            cleanup();
          } catch { /* best effort: the failure below is what matters */ }
        }
        reject(new Error(`${name}: timed out after ${limit / 1000} s`));
      }, limit);
    });
    try {
      await Promise.race([Promise.resolve().then(body), expired]);
    } finally {
      clearTimeout(timer);
      cleanups = [];
    }
  });
}
