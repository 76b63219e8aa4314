/**
 * Real third-party servers (nginx, HAProxy) as test fixtures: each runs in
 * the foreground as the current user, from a generated configuration in a
 * private temporary directory that also holds its pid file, logs and temp
 * files; it is stopped with every process it started (its process group)
 * and the directory removed when the test is done, or killed when it times
 * out or the test process exits.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { pidsListeningOn } from "./balance.ts";
import { freePort } from "./net.ts";
import { onTimeout } from "./test.ts";
import { until, within } from "./wait.ts";

/** The processes of process group `pgid` that have not exited (zombies left to init do not count), from /proc. */
function liveMembers(pgid: number): number[] {
  const pids: number[] = [];
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(pgrp) === pgid && state !== "Z") pids.push(Number(pid));
    } catch { /* gone */ }
  }
  return pids;
}

/** A server started by {@link startDaemon}. */
export interface Daemon {
  /** The loopback port it listens on (127.0.0.1). */
  port: number;
  /** Every port it was given ({@link DaemonSpec.ports}): `port` first. */
  ports: number[];
  /** Its private directory: configuration, pid file, logs. */
  dir: string;
  /** Its process id, for signals (`kill -STOP` a server that stops answering). */
  pid: number;
  /** What it wrote on stdout and stderr so far. */
  output(): string;
  /** Kills it (SIGTERM, then SIGKILL), waits for the exit, removes its directory. */
  stop(): Promise<void>;
}

/** How to run one server: its configuration files and its command line, both given its directory and port. */
export interface DaemonSpec {
  /** For messages and the directory's name: `nginx`, `haproxy`. */
  name: string;
  program: string;
  /**
   * How many free ports it gets (default 1): a server with several
   * listeners (IMAP and POP3) is handed them all; readiness is judged by
   * the first.
   */
  ports?: number;
  /** File name (in the directory) → contents; `ports` as in {@link Daemon.ports}. */
  files(dir: string, port: number, ports: number[]): Record<string, string>;
  /** Run once the files are written, before the start: directories, ownership, a server's own set-up command. */
  prepare?(dir: string, ports: number[]): void;
  args(dir: string, port: number, ports: number[]): string[];
}

/**
 * Starts `spec.program` on a free port of 127.0.0.1 and resolves once that
 * very process listens on it (read from /proc, so no probe connection
 * reaches it); rejects with its output if it exits or is not listening
 * within 10 s.
 *
 * @example
 * ```ts
 * const d = await startDaemon({ name: "x", program: "/usr/sbin/x", files: (dir, port) => ({ "x.conf": `port ${port}` }), args: (dir) => ["-c", `${dir}/x.conf`] });
 * try { ... } finally { await d.stop(); }
 * ```
 */
export async function startDaemon(spec: DaemonSpec): Promise<Daemon> {
  const dir = mkdtempSync(join(tmpdir(), `balance-test-${spec.name}-`));
  const ports: number[] = [];
  for (let i = 0; i < (spec.ports ?? 1); i++) ports.push(await freePort());
  const [port] = ports;
  for (const [file, text] of Object.entries(spec.files(dir, port, ports))) writeFileSync(join(dir, file), text);
  try {
    spec.prepare?.(dir, ports);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${spec.name} could not be prepared: ${(err as Error).message}`);
  }
  // Its own process group, so that the processes it starts (Postfix's smtpd,
  // Dovecot's logins) are stopped with it rather than left to init.
  const child: ChildProcess = spawn(spec.program, spec.args(dir, port, ports), {
    stdio: ["ignore", "pipe", "pipe"],
    cwd: dir,
    detached: true,
  });
  const signal = (sig: NodeJS.Signals) => {
    if (child.pid === undefined || liveMembers(child.pid).length === 0) return;
    try {
      process.kill(-child.pid, sig);
    } catch { /* gone meanwhile */ }
  };
  const kill = () => signal("SIGKILL");
  onTimeout(kill);
  process.on("exit", kill);
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const exited = new Promise<void>((r) => child.on("close", () => r()));
  child.on("error", (err) => (output += `\n${err.message}`));
  const daemon: Daemon = {
    port,
    ports,
    dir,
    pid: child.pid!,
    output: () => output,
    stop: async () => {
      signal("SIGTERM");
      const killer = setTimeout(kill, 5000);
      try {
        await within(exited, 10_000, `${spec.name} to exit`);
        // A server's children may outlive it by a moment (Postfix's master does not wait for them).
        const group = child.pid ?? 0;
        await until(() => liveMembers(group), (left) => left.length === 0, `${spec.name}'s processes to exit`, {
          ms: 5000,
        }).catch(kill);
      } finally {
        clearTimeout(killer);
        process.off("exit", kill);
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
  try {
    await until(
      () => child.exitCode === null && child.signalCode === null && pidsListeningOn(port).includes(child.pid!),
      (listening) => listening || child.exitCode !== null,
      `${spec.name} to listen on 127.0.0.1:${port}`,
      { everyMs: 50 },
    );
    if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}`);
  } catch (err) {
    await daemon.stop();
    throw new Error(`${spec.name} did not start (${(err as Error).message}):\n${output}`);
  }
  return daemon;
}
