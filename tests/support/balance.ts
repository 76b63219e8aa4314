/**
 * Starts the real balancer as a process, the way a user does.
 *
 * `BALANCE_BIN` names a compiled binary to test; without it the source runs
 * under the runtime running the tests.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { type Backend, type BackendSpec, type Behaviour, freePort, withBackends } from "./net.ts";
import { onTimeout } from "./test.ts";

const MAIN = fileURLToPath(import.meta.resolve("../../src/main.ts"));

const BUN = fileURLToPath(import.meta.resolve("../../node_modules/.bin/bun"));

/**
 * The command line that runs balance, before its own arguments:
 * `BALANCE_BIN` (a compiled binary), or the source under Bun when
 * `BALANCE_RUNTIME=bun`, else the source under Deno.
 */
export function balanceCommand(): string[] {
  const bin = process.env.BALANCE_BIN;
  if (bin) return [bin];
  if (process.env.BALANCE_RUNTIME === "bun") return [BUN, MAIN];
  return [process.execPath.includes("deno") ? process.execPath : "deno", "run", "--allow-all", "--unstable-net", MAIN];
}

// One private control directory for every balancer this test process
// starts without choosing one: never `/run/balance`, never another run's.
let privateControlDir: string | undefined;

/**
 * The environment of a balance process: the tests', plus `env`, plus a
 * private `BALANCE_CONTROL_DIR` (removed when the test process exits)
 * unless `env` names one.
 *
 * @example
 * ```ts
 * spawn(cmd, args, { env: balanceEnv({ BALANCE_WORKERS: "2" }) });
 * ```
 */
export function balanceEnv(env: Record<string, string> = {}): Record<string, string | undefined> {
  if ("BALANCE_CONTROL_DIR" in env) return { ...process.env, ...env };
  if (privateControlDir === undefined) {
    const dir = mkdtempSync(join(tmpdir(), "balance-test-ctl-"));
    const remove = () => rmSync(dir, { recursive: true, force: true });
    // `deno test` ends a test module with "unload", not with the process's "exit".
    globalThis.addEventListener?.("unload", remove);
    process.on("exit", remove);
    privateControlDir = dir;
  }
  return { ...process.env, BALANCE_CONTROL_DIR: privateControlDir, ...env };
}

/** The result of a balance run that ended. */
export interface Exited {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** How to start balance: which program, what environment, how long to wait. */
export interface RunOptions {
  command?: string[];
  /** Added to the tests' environment; see {@link balanceEnv} for `BALANCE_CONTROL_DIR`. */
  env?: Record<string, string>;
  timeoutMs?: number;
  /** Text fed to standard input (for `-i`). */
  input?: string;
  /** Working directory of the process. */
  cwd?: string;
  /** {@link startBalance} only: false leaves `-d` out, to see what a production balancer logs. */
  debug?: boolean;
}

/**
 * Runs balance to completion (for command-line errors, `--help` and the like).
 *
 * @example
 * ```ts
 * const { code, stderr } = await runBalance(["-x", "80"]);
 * ```
 */
export function runBalance(args: string[], options: RunOptions = {}): Promise<Exited> {
  const [cmd, ...pre] = options.command ?? balanceCommand();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [...pre, ...args], {
      stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      env: balanceEnv(options.env),
      cwd: options.cwd,
    });
    onTimeout(() => child.kill("SIGKILL"));
    if (options.input !== undefined) child.stdin!.end(options.input);
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    const limit = options.timeoutMs ?? 20_000;
    const timer = setTimeout(() => {
      stderr += `\n[the test killed balance after ${limit / 1000} s]\n`;
      child.kill("SIGKILL");
    }, limit);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `BALANCE_WORKERS=N`: every balancer {@link startBalance} starts runs `-w N`. */
function workerOption(): string[] {
  const n = process.env.BALANCE_WORKERS;
  return n ? ["-w", n] : [];
}

/** `BALANCE_ENGINE=native`: every balancer {@link startBalance} starts runs `--engine native`. */
function engineOption(): string[] {
  const engine = process.env.BALANCE_ENGINE;
  return engine ? ["--engine", engine] : [];
}

/** A balancer running in the foreground with `-d`. */
export interface Running {
  child: ChildProcess;
  port: number;
  /** Its `BALANCE_CONTROL_DIR`, where its control socket (`any-PORT.sock` without `-b`) lives. */
  controlDir: string;
  stdout(): string;
  stderr(): string;
  /** Resolves once stderr contains `text` (a `-d` trace). */
  waitForTrace(text: string | RegExp, ms?: number): Promise<void>;
  /** SIGTERM, then the exit; SIGKILL if it has not exited within `ms` (default 15 s). */
  stop(ms?: number): Promise<number | null>;
  /** The exit code, once the process has exited (sends nothing). */
  exited: Promise<number | null>;
}

/**
 * Starts `balance -f -d ARGS…` (without `-d` when `options.debug` is
 * false) and waits until it listens (its `listening on` line), so that no
 * probe connection disturbs round robin.
 *
 * @example
 * ```ts
 * const lb = await startBalance([String(port), `127.0.0.1:${a.port}`]);
 * try { ... } finally { await lb.stop(); }
 * ```
 */
export async function startBalance(args: string[], port: number, options: RunOptions = {}): Promise<Running> {
  const [cmd, ...pre] = options.command ?? balanceCommand();
  const env = balanceEnv(options.env);
  const debug = options.debug === false ? [] : ["-d"];
  const child = spawn(cmd, [...pre, "-f", ...debug, ...workerOption(), ...engineOption(), ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env,
  });
  onTimeout(() => child.kill("SIGKILL"));
  let stdout = "";
  let stderr = "";
  let waiters: (() => void)[] = [];
  const exited = new Promise<number | null>((r) =>
    child.on("exit", (code) => {
      waiters.forEach((w) => w());
      r(code);
    })
  );
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => {
    stderr += d;
    const w = waiters;
    waiters = [];
    w.forEach((f) => f());
  });
  const waitForTrace = (text: string | RegExp, ms = 10_000) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no trace ${text} in:\n${stderr}`)), ms);
      const check = () => {
        if (typeof text === "string" ? stderr.includes(text) : text.test(stderr)) {
          clearTimeout(timer);
          resolve();
        } else if (child.exitCode !== null) {
          clearTimeout(timer);
          reject(new Error(`balance exited ${child.exitCode} before trace ${text}:\n${stderr}`));
        } else waiters.push(check);
      };
      check();
    });
  const running: Running = {
    child,
    port,
    controlDir: env.BALANCE_CONTROL_DIR ?? "",
    stdout: () => stdout,
    stderr: () => stderr,
    waitForTrace,
    exited,
    stop: async (ms = 15_000) => {
      // process.kill, not child.kill: Deno's child_process reports a child
      // it signalled itself as killed, hiding the exit code balance chose.
      if (child.exitCode === null) process.kill(child.pid!, "SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const killed = new Promise<never>((_, reject) =>
        timer = setTimeout(() => {
          child.kill("SIGKILL");
          reject(new Error(`balance did not exit within ${ms / 1000} s of SIGTERM (killed):\n${stderr.slice(-1500)}`));
        }, ms)
      );
      try {
        return await Promise.race([exited, killed]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
  try {
    await waitForTrace("listening on", 30_000);
  } catch (err) {
    await running.stop();
    throw err;
  }
  return running;
}

/**
 * What {@link withBalancer} starts and checks: backends, the balancer's
 * command line and environment, and how its run must end.
 */
export interface BalancerSetup {
  /** Backends started first, in this order (see {@link BackendSpec}); none by default. */
  backends?: readonly BackendSpec[];
  /** Options before the port. */
  options?: string[];
  /** The channels after the port, from the started backends; default: every backend, in order, in group 0. */
  channels?: (backends: Backend[]) => string[];
  /** The whole command line instead of `options PORT channels…` (for `-F FILE`, say). */
  args?: (f: { port: number; backends: Backend[] }) => string[];
  /** Added to the balancer's environment (see {@link balanceEnv}). */
  env?: Record<string, string>;
  /** true: a private `BALANCE_CONTROL_DIR` of this balancer's own, removed after it. */
  controlDir?: boolean;
  /** false leaves `-d` out, to see what a production balancer logs. */
  debug?: boolean;
  /** A trace to await after `listening on`, before the body runs (`in 2 thread(s)`, say). */
  ready?: string | RegExp;
  /** The code the balancer must exit with when stopped; checked once all is cleaned up, if the body passed. */
  exitCode?: number;
  /** With `controlDir`: its control socket (`any-PORT.sock`) must be gone once it stopped; checked like `exitCode`. */
  socketRemoved?: boolean;
}

/** What {@link withBalancer} hands its test body. */
export interface Balanced {
  /** The balancer's port. */
  port: number;
  lb: Running;
  /** The backends of {@link BalancerSetup.backends}, in its order. */
  backends: Backend[];
  /** The environment added for the balancer (`setup.env`, plus the private control directory): give it to `-c`. */
  env: Record<string, string>;
}

/**
 * The common fixture: starts the backends of `setup`, then balance in front
 * of them on a free port (`setup.options PORT channels…`, or `setup.args`),
 * runs `fn`, and then, whatever happened, stops balance, closes the
 * backends and removes the private control directory. Then checks the exit
 * code and the control socket, if `setup` asks.
 *
 * @example
 * ```ts
 * await withBalancer({
 *   backends: ["a", "b", { name: "mute", behaviour: () => {} }],
 *   options: ["-t", "1"],
 *   channels: ([a, b, mute]) => [at(a), at(b), "!", at(mute)],
 *   controlDir: true,
 *   exitCode: 0,
 * }, async ({ port, lb, backends, env }) => {
 *   assert.equal(await control(port, "disable 0", env), "channel 0 disabled\n");
 * });
 * ```
 */
export async function withBalancer(setup: BalancerSetup, fn: (balanced: Balanced) => Promise<void>): Promise<void> {
  const dir = setup.controlDir ? mkdtempSync(join(tmpdir(), "balance-ctl-")) : undefined;
  const env: Record<string, string> = dir === undefined ? { ...setup.env } : { ...setup.env, BALANCE_CONTROL_DIR: dir };
  let port = 0;
  let code: number | null = null;
  let socketLeft = false;
  try {
    await withBackends(setup.backends ?? [], async (backends) => {
      port = await freePort();
      const channels = setup.channels?.(backends) ?? backends.map((b) => `${b.host}:${b.port}`);
      const args = setup.args?.({ port, backends }) ?? [...setup.options ?? [], String(port), ...channels];
      const lb = await startBalance(args, port, { env, debug: setup.debug });
      try {
        if (setup.ready !== undefined) await lb.waitForTrace(setup.ready);
        await fn({ port, lb, backends, env });
      } finally {
        code = await lb.stop();
      }
    });
  } finally {
    if (dir !== undefined) {
      socketLeft = existsSync(join(dir, `any-${port}.sock`));
      rmSync(dir, { recursive: true, force: true });
    }
  }
  if (setup.exitCode !== undefined) assert.equal(code, setup.exitCode);
  if (setup.socketRemoved) assert.equal(socketLeft, false, "control socket removed");
}

/**
 * Balance with `options` before a free port and `channels`
 * after it; runs `fn`, then stops balance whatever happened (a
 * {@link withBalancer} without backends).
 *
 * @example
 * ```ts
 * await withBalance(["-H"], ["127.0.0.1:8081", "%"], async ({ port, lb }) => { ... });
 * ```
 */
export function withBalance(
  options: string[],
  channels: string[],
  fn: (running: { port: number; lb: Running }) => Promise<void>,
): Promise<void> {
  return withBalancer({ options, channels: () => channels }, ({ port, lb }) => fn({ port, lb }));
}

/** What {@link withProxy} hands its test body. */
export interface Proxied {
  port: number;
  lb: Running;
  backend: Backend;
}

/**
 * One backend, and balance (with `options` before the port) in front of it;
 * runs `fn`, then stops both whatever happened (a
 * {@link withBalancer} with one backend).
 *
 * @example
 * ```ts
 * await withProxy("a", undefined, ["-T", "1"], async ({ port }) => { ... });
 * ```
 */
export function withProxy(
  name: string,
  behaviour: Behaviour | undefined,
  options: string[],
  fn: (proxied: Proxied) => Promise<void>,
): Promise<void> {
  return withBalancer(
    { backends: [{ name, behaviour }], options },
    ({ port, lb, backends: [backend] }) => fn({ port, lb, backend }),
  );
}

/**
 * The processes listening on TCP `port` (any address), from `/proc`: how a
 * test finds a balancer that detached itself, to make sure it is gone.
 *
 * @example
 * ```ts
 * for (const pid of pidsListeningOn(port)) process.kill(pid, "SIGKILL");
 * ```
 */
export function pidsListeningOn(port: number): number[] {
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(table, "utf8");
    } catch { /* no IPv6 */ }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address rem_address st … inode; st 0A is LISTEN.
      if (f[1]?.endsWith(hexPort) && f[3] === "0A") inodes.add(`socket:[${f[9]}]`);
    }
  }
  const pids: number[] = [];
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (readdirSync(`/proc/${pid}/fd`).some((fd) => inodes.has(readlinkSync(`/proc/${pid}/fd/${fd}`)))) {
        pids.push(Number(pid));
      }
    } catch { /* gone, or not ours to read */ }
  }
  return pids;
}
