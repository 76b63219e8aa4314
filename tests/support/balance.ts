/**
 * Starts the real balancer as a process, the way a user does.
 *
 * `BALANCE_BIN` names a compiled binary to test; without it the source runs
 * under the runtime running the tests.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
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

/** The result of a balance run that ended. */
export interface Exited {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs balance to completion (for command-line errors, `--help` and the like).
 *
 * @example
 * ```ts
 * const { code, stderr } = await runBalance(["-x", "80"]);
 * ```
 */
/** How to start balance: which program, what environment, how long to wait. */
export interface RunOptions {
  command?: string[];
  env?: Record<string, string>;
  timeoutMs?: number;
  /** Text fed to standard input (for `-i`). */
  input?: string;
  /** Working directory of the process. */
  cwd?: string;
}

export function runBalance(args: string[], options: RunOptions = {}): Promise<Exited> {
  const [cmd, ...pre] = options.command ?? balanceCommand();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [...pre, ...args], {
      stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      env: { ...process.env, ...options.env },
      cwd: options.cwd,
    });
    onTimeout(() => child.kill("SIGKILL"));
    if (options.input !== undefined) child.stdin!.end(options.input);
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 20_000);
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
 * Starts `balance -f -d ARGS…` and waits until it listens (its
 * `listening on` trace), so that no probe connection disturbs round robin.
 *
 * @example
 * ```ts
 * const lb = await startBalance([String(port), `127.0.0.1:${a.port}`]);
 * try { ... } finally { await lb.stop(); }
 * ```
 */
export async function startBalance(args: string[], port: number, options: RunOptions = {}): Promise<Running> {
  const [cmd, ...pre] = options.command ?? balanceCommand();
  const child = spawn(cmd, [...pre, "-f", "-d", ...workerOption(), ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...options.env },
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
