/**
 * The I/O of health checks (`--check`): a TCP connect, optionally sending
 * and expecting bytes, a datagram and its reply (`--udp-only`), or a program
 * run (`--check-exec`). `node:net` and
 * `node:child_process` behave alike under Deno and Bun, so both adapters
 * share this file. A check never goes through the balancer: it counts in no
 * `c`, `totalc`, `sent` or `rcvd`.
 *
 * @module
 */
import { errorText } from "../core/util/errors.ts";
import { spawn } from "node:child_process";
import * as dgram from "node:dgram";
import * as net from "node:net";
import process from "node:process";
import type { CheckResult } from "../core/health/health.ts";
import type { HealthSettings } from "../core/health/health.ts";
import type { Probe, ProbeTarget } from "../core/health/health_checker.ts";
import { TimerQueue } from "../core/util/timer_queue.ts";
import { concatBytes } from "../core/util/bytes.ts";

/**
 * The timeouts of every check under way, on one runtime timer: a timer per
 * check costs more CPU than the rest of a passing connect check.
 *
 * @example
 * ```ts
 * const expire = () => socket.destroy();
 * deadlines.schedule(expire, Date.now() + 2000);
 * deadlines.cancel(expire); // passed in time
 * ```
 */
export const deadlines: TimerQueue<() => void> = new TimerQueue((expire) => expire());

/** What a probe needs besides its target. */
export interface ProbeOptions extends Pick<HealthSettings, "timeout" | "send" | "expect" | "exec"> {
  /** `-B`: the source address of check connections. */
  sourceAddress?: string;
  /** `--udp-only`: `send` and `expect` are one datagram each ({@link udpProbe}). */
  datagram?: boolean;
}

/**
 * The probe `options` ask for: `--check-exec`'s program, or a TCP connect.
 *
 * @example
 * ```ts
 * const probe = makeProbe({ timeout: 2 });
 * await probe({ address: "127.0.0.1", port: 80, group: 0, channel: 0 }); // { ok: true, reason: "connected" }
 * ```
 */
export function makeProbe(options: ProbeOptions): Probe {
  if (options.exec) return (target) => execProbe(target, options);
  return options.datagram ? (target) => udpProbe(target, options) : (target) => tcpProbe(target, options);
}

/**
 * Sends `send` as one datagram to the target, and passes on the first
 * datagram back that holds `expect` (any datagram without `expect`). Fails
 * on an ICMP refusal where the runtime reports one, and at the timeout.
 *
 * @example
 * ```ts
 * await udpProbe(target, { timeout: 2, send: dnsQuery, expect: new Uint8Array([0x81, 0x80]) });
 * ```
 */
export function udpProbe(target: ProbeTarget, options: ProbeOptions): Promise<CheckResult> {
  const { timeout, send, expect, sourceAddress } = options;
  return new Promise((resolve) => {
    const socket = dgram.createSocket(target.address.includes(":") ? "udp6" : "udp4");
    const done = (ok: boolean, reason: string) => {
      deadlines.cancel(expire);
      socket.removeAllListeners();
      socket.on("error", () => {});
      socket.close();
      resolve({ ok, reason });
    };
    const expire = () => done(false, `no reply datagram after ${timeout}s`);
    deadlines.schedule(expire, Date.now() + timeout * 1000);
    socket.once("error", (err) => done(false, errorText(err)));
    socket.on("message", (datagram: Uint8Array, from: { address: string; port: number }) => {
      if (from.port !== target.port) return;
      if (!expect || indexOf(datagram, expect) >= 0) done(true, "reply datagram received");
    });
    socket.bind({ address: sourceAddress }, () => {
      socket.send(send ?? new Uint8Array(0), target.port, target.address);
    });
  });
}

/**
 * Connects to the target; with `send`, sends it; with `expect`, passes once
 * those bytes have arrived. Fails on refusal, a reset, an early close or the
 * timeout.
 *
 * @example
 * ```ts
 * await tcpProbe(target, { timeout: 2, send: bytes("PING\r\n"), expect: bytes("PONG") });
 * ```
 */
export function tcpProbe(target: ProbeTarget, options: ProbeOptions): Promise<CheckResult> {
  const { timeout, send, expect, sourceAddress } = options;
  return new Promise((resolve) => {
    const socket = net.connect({ host: target.address, port: target.port, localAddress: sourceAddress });
    let connected = false;
    let received = new Uint8Array(0);
    const done = (ok: boolean, reason: string) => {
      deadlines.cancel(expire);
      socket.removeAllListeners();
      socket.on("error", () => {});
      socket.destroy();
      resolve({ ok, reason });
    };
    const expire = () => {
      const what = !connected ? "connect timed out" : expect ? "no expected reply" : "send timed out";
      done(false, `${what} after ${timeout}s`);
    };
    deadlines.schedule(expire, Date.now() + timeout * 1000);
    socket.once("error", (err) => done(false, errorText(err)));
    socket.once("connect", () => {
      connected = true;
      if (!send && !expect) return done(true, "connected");
      if (send) socket.write(send, () => expect || done(true, "connected and sent"));
    });
    if (!expect) return;
    socket.on("data", (chunk: Uint8Array) => {
      // Kept only as long as the expected bytes may still end in it.
      received = concatBytes(received, chunk).slice(-Math.max(expect.length, 64 * 1024));
      if (indexOf(received, expect) >= 0) done(true, "expected reply received");
    });
    socket.once("end", () => done(false, "closed before the expected reply"));
  });
}

/**
 * The environment `--check-exec`'s program gets, naming its target.
 *
 * @example
 * ```ts
 * checkEnvironment({ address: "10.0.0.2", port: 80, group: 0, channel: 1 }).BALANCE_CHECK_PORT; // "80"
 * ```
 */
export function checkEnvironment(target: ProbeTarget): Record<string, string> {
  return {
    BALANCE_CHECK_HOST: target.address,
    BALANCE_CHECK_PORT: String(target.port),
    BALANCE_CHECK_GROUP: String(target.group),
    BALANCE_CHECK_CHANNEL: String(target.channel),
  };
}

/**
 * Runs `--check-exec`'s program (no shell) with the target in its
 * environment ({@link checkEnvironment}); exit 0 passes. At the timeout the
 * program and whatever it started (its process group) are killed. Its output
 * is ignored.
 *
 * @example
 * ```ts
 * await execProbe(target, { timeout: 2, exec: ["/usr/lib/nagios/plugins/check_http", "-H", "web1"] });
 * ```
 */
export function execProbe(target: ProbeTarget, options: ProbeOptions): Promise<CheckResult> {
  const [program, ...args] = options.exec!;
  return new Promise((resolve) => {
    let killed = false;
    const child = spawn(program, args, {
      env: { ...process.env, ...checkEnvironment(target) },
      stdio: "ignore",
      // Its own process group, so that a timeout kills what a script started too.
      detached: true,
    });
    const timer = setTimeout(() => {
      killed = true;
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    }, options.timeout * 1000);
    child.once("error", (err) => {
      clearTimeout(timer);
      resolve({ ok: false, reason: `cannot run ${program}: ${errorText(err)}` });
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (killed) resolve({ ok: false, reason: `${program} killed at the ${options.timeout}s timeout` });
      else if (code === 0) resolve({ ok: true, reason: `${program} exited with 0` });
      else resolve({ ok: false, reason: `${program} ${signal ? `killed by ${signal}` : `exited with ${code}`}` });
    });
  });
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
