/**
 * Fixtures for the health-check tests: backends that answer a check right
 * or wrong, a listener that drops SYNs, when balance logged a line, and
 * what `health` says.
 *
 * @module
 */
import { spawn } from "node:child_process";
import * as net from "node:net";
import type { Running } from "./balance.ts";
import { type Backend, startBackend } from "./net.ts";
import { onTimeout } from "./test.ts";
import { within } from "./wait.ts";
import { sleep } from "./helpers.ts";

/** A backend that greets with its name and answers `PING\r\n` with {@link Answering.reply}. */
export interface Answering extends Backend {
  /** What it answers to a check; change it to break or fix the backend. */
  reply: string;
}

/**
 * Starts a backend that greets clients with `name\n` (so `whoAnswers`
 * names it) and answers each exact `PING\r\n` with `reply\n`: the target of
 * `--check-send 'PING\r\n' --check-expect PONG`, right or wrong at will.
 *
 * @example
 * ```ts
 * const wrong = await answering("wrong", "ERR");
 * wrong.reply = "PONG"; // fixed
 * ```
 */
export async function answering(name: string, reply = "PONG", port = 0): Promise<Answering> {
  const backend = await startBackend(
    name,
    (s, b) => {
      s.write(`${name}\n`);
      let got = "";
      s.on("data", (d) => {
        got += d;
        // Exact bytes: a check that sent `\r` unescaped would not be answered.
        while (got.includes("PING\r\n")) {
          got = got.slice(got.indexOf("PING\r\n") + 6);
          s.write(`${(b as Answering).reply}\n`);
        }
      });
      // Passes a half-close on, like a server that is done: balance then closes both sides.
      s.on("end", () => s.end());
    },
    "127.0.0.1",
    port,
  );
  return Object.assign(backend, { reply });
}

/** A listener on loopback whose full accept queue drops every SYN. */
export interface SynDropper {
  port: number;
  /** Ends the listener (its port is free again) and the connections that fill it. */
  close(): Promise<void>;
}

/**
 * Starts a python3 listener with backlog 0 that never accepts, and fills
 * its accept queue: from then on a connect to it times out, as to a host
 * that drops SYNs.
 *
 * @example
 * ```ts
 * const hole = await synDropper();
 * try { ... } finally { await hole.close(); }
 * ```
 */
export async function synDropper(): Promise<SynDropper> {
  const python = spawn("python3", [
    "-c",
    [
      "import socket, sys",
      "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0)",
      "print(s.getsockname()[1], flush=True); sys.stdin.read()",
    ].join("\n"),
  ], { stdio: ["pipe", "pipe", "inherit"] });
  onTimeout(() => python.kill("SIGKILL"));
  const exited = new Promise<void>((r) => python.on("exit", () => r()));
  const fillers: net.Socket[] = [];
  const close = async () => {
    fillers.forEach((s) => s.destroy());
    python.kill("SIGKILL");
    await within(exited, 5000, "python3 to exit");
  };
  try {
    const port = Number(
      await within(
        new Promise<string>((r) => python.stdout!.once("data", (d) => r(String(d)))),
        10_000,
        "python3 to print its port",
      ),
    );
    for (let i = 0; i < 8; i++) {
      const s = net.connect({ port, host: "127.0.0.1" });
      s.on("error", () => {});
      onTimeout(() => s.destroy());
      fillers.push(s);
    }
    // The first fillers complete and fill the queue; the rest keep retrying their SYNs.
    await sleep(300);
    return { port, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * When balance wrote the first line of `log` that matches `re`, from the
 * line's own timestamp (LogTape's `2026-11-26 17:35:23.123 +00`), in ms
 * since the epoch: times measured without the pipe's or the poll's delay.
 *
 * @example
 * ```ts
 * const started = loggedAt(lb.stderr(), /listening on/);
 * ```
 */
export function loggedAt(log: string, re: RegExp): { at: number; line: string } | undefined {
  const line = log.split("\n").find((l) => re.test(l));
  const stamp = line?.match(/^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d\.\d{3}) \+00 /);
  if (!line || !stamp) return undefined;
  return { at: Date.parse(`${stamp[1]}T${stamp[2]}Z`), line };
}

/**
 * Waits (at most `ms`) for balance to log a line matching `re`; its time
 * and text (see {@link loggedAt}).
 *
 * @example
 * ```ts
 * const { at, line } = await logged(lb, /is DOWN/);
 * ```
 */
export async function logged(lb: Running, re: RegExp, ms = 10_000): Promise<{ at: number; line: string }> {
  await lb.waitForTrace(re, ms);
  const found = loggedAt(lb.stderr(), re);
  if (!found) throw new Error(`a line matching ${re} has no timestamp:\n${lb.stderr().slice(-1500)}`);
  return found;
}

/**
 * The `DOWN` or `UP` line of channel `channel` of group `group` at
 * `host` (127.0.0.1):`port`; a DOWN line must give `fall` of `fall` failed
 * checks.
 *
 * @example
 * ```ts
 * await logged(lb, healthLine("DOWN", 1, hole.port, { fall: 2 }));
 * ```
 */
export function healthLine(
  change: "DOWN" | "UP",
  channel: number,
  port: number,
  { group = 0, fall = 3, host = "127.0.0.1" } = {},
): RegExp {
  const where = `group ${group} channel ${channel} \\(${host.replaceAll(".", "\\.")}:${port}\\) is ${change}`;
  return new RegExp(change === "DOWN" ? `${where}: (.+) \\(${fall} of ${fall} checks failed\\)` : `${where}\\b`);
}

/** One line of the `health` table. */
export interface HealthRow {
  group: number;
  channel: number;
  address: string;
  port: number;
  health: string;
  passes: number;
  fails: number;
  since: number;
  last: string;
}

/**
 * The `health` table as rows (the header line dropped): group, channel,
 * address, port, health, consecutive passes and failures, seconds since the
 * last change, the last result (the rest of the line).
 *
 * @example
 * ```ts
 * healthRows(await control(port, "health"))[0].fails; // 0
 * ```
 */
export function healthRows(table: string): HealthRow[] {
  return table.trimEnd().split("\n").slice(1).map((line) => {
    const f = line.trim().split(/\s+/);
    return {
      group: Number(f[0]),
      channel: Number(f[1]),
      address: f[2],
      port: Number(f[3]),
      health: f[4],
      passes: Number(f[5]),
      fails: Number(f[6]),
      since: Number(f[7]),
      last: f.slice(8).join(" "),
    };
  });
}
