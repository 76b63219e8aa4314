/**
 * A storm of short connections that end every way a connection can (the
 * client resets, the client hangs up at once, an exchange the channel may
 * reset), and the count of a process's open descriptors, to show that each
 * one given out was given back.
 *
 * @module
 */
import net from "node:net";
import { readdirSync } from "node:fs";
import type { BackendSpec } from "./net.ts";

/**
 * The descriptors `pid` has open now (Linux: /proc).
 *
 * @example
 * ```ts
 * const baseline = openDescriptors(lb.child.pid!);
 * ```
 */
export function openDescriptors(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/**
 * One client of a storm on `port`, of one of three kinds: 0 resets right
 * after sending, 1 sends and reads the echo (or the channel's reset), 2
 * connects and leaves at once. Resolves when it is closed, within 5 s.
 *
 * @example
 * ```ts
 * await Promise.all(Array.from({ length: 50 }, (_, i) => storm(port, i % 3)));
 * ```
 */
export function storm(port: number, kind: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: "127.0.0.1" });
    const done = () => resolve();
    const limit = setTimeout(() => (s.destroy(), done()), 5000);
    s.on("error", () => {});
    s.on("close", () => (clearTimeout(limit), done()));
    s.on("connect", () => {
      if (kind === 0) s.write("x", () => s.resetAndDestroy());
      else if (kind === 1) s.end("ping");
      else s.destroy();
    });
    s.on("data", () => {});
  });
}

/**
 * The channel of a storm: it resets every other connection at once and
 * echoes the others.
 *
 * @example
 * ```ts
 * await withBalancer({ backends: [halfResetting()] }, async ({ port }) => { ... });
 * ```
 */
export function halfResetting(): BackendSpec {
  let accepted = 0;
  return {
    name: "half-rst",
    behaviour: (s) => {
      if (accepted++ % 2 === 0) s.resetAndDestroy();
      else s.pipe(s);
    },
  };
}
