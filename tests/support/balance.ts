/**
 * Starts the real balancer as a process, the way a user does.
 *
 * `BALANCE_BIN` names a compiled binary to test; without it the source runs
 * under the runtime running the tests.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { type Backend, type Behaviour, freePort, startBackend } from "./net.ts";
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
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
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
  const child = spawn(cmd, [...pre, "-f", ...debug, ...workerOption(), ...args], {
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

/** What {@link withProxy} hands its test body. */
export interface Proxied {
  port: number;
  lb: Running;
  backend: Backend;
}

/**
 * Balance with `options` before a free port on `listenHost` and `channels`
 * after it; runs `fn`, then stops balance whatever happened.
 *
 * @example
 * ```ts
 * await withBalance(["-H"], ["127.0.0.1:8081", "%"], async ({ port, lb }) => { ... });
 * ```
 */
export async function withBalance(
  options: string[],
  channels: string[],
  fn: (running: { port: number; lb: Running }) => Promise<void>,
  listenHost = "127.0.0.1",
): Promise<void> {
  const port = await freePort(listenHost);
  const lb = await startBalance([...options, String(port), ...channels], port);
  try {
    await fn({ port, lb });
  } finally {
    await lb.stop();
  }
}

/**
 * One backend, and balance (with `options` before the port) in front of it
 * on `listenHost`; runs `fn`, then stops both whatever happened.
 *
 * @example
 * ```ts
 * await withProxy("a", undefined, ["-T", "1"], async ({ port }) => { ... });
 * ```
 */
export async function withProxy(
  name: string,
  behaviour: Behaviour | undefined,
  options: string[],
  fn: (proxied: Proxied) => Promise<void>,
  listenHost = "127.0.0.1",
): Promise<void> {
  const backend = await startBackend(name, behaviour);
  try {
    await withBalance(
      options,
      [`${backend.host}:${backend.port}`],
      (running) => fn({ ...running, backend }),
      listenHost,
    );
  } finally {
    await backend.close();
  }
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
