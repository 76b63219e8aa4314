/**
 * What most integration tests do in one line: pause, make one client
 * exchange, send one control command, read `show --json`, keep a private
 * directory for the length of a test.
 *
 * @module
 */
import type { ChannelStatus } from "../../src/core/commands/control.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runBalance } from "./balance.ts";
import { connect } from "./net.ts";

/**
 * A fresh private directory (`$TMPDIR/PREFIX…`) for the duration of `fn`,
 * removed with everything in it afterwards, whatever happened.
 *
 * @example
 * ```ts
 * await withTempDir("balance-config-", async (dir) => writeFileSync(join(dir, "web.conf"), "80 a:81\n"));
 * ```
 */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Resolves after `ms`.
 *
 * @example
 * ```ts
 * await sleep(100);
 * ```
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What {@link exchange} sends before its text, and from where. */
export interface ExchangeOptions {
  /** Sent first (a PROXY header, say). */
  first?: Uint8Array;
  /** The client's own address. */
  localAddress?: string;
}

/**
 * Connects (from `localAddress`), sends `first` and then `text`, reads the
 * backend's greeting and the echo, hangs up: the name the greeting gave. For
 * backends that greet and echo (`startBackend`); `text` goes out before the
 * greeting arrives, so that a balancer awaiting a header from the client
 * gets it.
 *
 * @example
 * ```ts
 * assert.equal(await exchange(port), "a");
 * await exchange(port, "hello"); // sends 5 bytes, receives 7 ("a\nhello")
 * ```
 */
export async function exchange(port: number, text = "ping", options: ExchangeOptions = {}): Promise<string> {
  const c = await connect(port, "127.0.0.1", options.localAddress);
  try {
    if (options.first) c.socket.write(options.first);
    c.socket.write(text);
    const got = await c.waitFor((d) => d.toString().endsWith(`\n${text}`));
    return got.toString().split("\n")[0];
  } finally {
    c.socket.end();
    await c.closed();
  }
}

/**
 * Sends one control command to the balancer on `port` (the tests' private
 * control directory, or the one `env` names); its answer. An error answer
 * exits 65, any other 0.
 *
 * @example
 * ```ts
 * await control(port, "disable 0"); // "channel 0 disabled\n"
 * ```
 */
export async function control(port: number, command: string, env?: Record<string, string>): Promise<string> {
  const r = await runBalance(["-c", command, String(port)], { env });
  if (r.code !== 0 && r.code !== 65 || r.stderr !== "") {
    throw new Error(`balance -c '${command}' exited ${r.code}: ${r.stderr}`);
  }
  return r.stdout;
}

/** One row of `show --json`: the core's own type, so a field the tests read cannot drift from it. */
export type StatusRow = ChannelStatus;

/**
 * `show --json` of the balancer on `port`.
 *
 * @example
 * ```ts
 * (await status(port))[1].health; // "down"
 * ```
 */
export async function status(port: number, env?: Record<string, string>): Promise<StatusRow[]> {
  return JSON.parse(await control(port, "show --json", env));
}
