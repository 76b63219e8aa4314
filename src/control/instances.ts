import * as net from "node:net";
import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import process from "node:process";
import { shown } from "../core/util/shown.ts";
import { controlDirectory, SYSTEMD_CONTROL_ROOT } from "./address.ts";
import { INFO_REQUEST, type InstanceInfo } from "./protocol.ts";

/**
 * Finding the balancers that run: the control sockets in the directories
 * balance puts them in, each asked who it is. A socket nobody answers on
 * (left by `kill -9`) is no instance and is not listed.
 *
 * @module
 */

/** A running balancer, as `balance --list` shows it. */
export interface Instance extends InstanceInfo {
  /** Its control socket. */
  socket: string;
  /** The owner of the socket, who started it: a user name, or the uid. */
  user: string;
}

/** How long one socket may take to say who it is. */
const ASK_TIMEOUT_MS = 1000;

/**
 * Where to look. `BALANCE_CONTROL_DIR` alone when set, for a user (an
 * explicit choice wins, as in {@link controlDirectory}); otherwise every
 * default place of this user. Root looks in every user's places too, and
 * in `BALANCE_CONTROL_DIR`: root may control any instance.
 *
 * @example
 * ```ts
 * instanceDirectories(); // ["/run/user/1000/balance", "/tmp/balance-1000"]
 * ```
 */
export function instanceDirectories(): string[] {
  if (process.platform === "win32") return [];
  const env = process.env;
  const uid = process.getuid?.() ?? -1;
  if (uid !== 0 && env.BALANCE_CONTROL_DIR) return [env.BALANCE_CONTROL_DIR];
  const dirs = [controlDirectory()];
  if (uid === 0) {
    dirs.push(
      SYSTEMD_CONTROL_ROOT,
      ...entries(SYSTEMD_CONTROL_ROOT),
      ...entries("/run/user").map((d) => join(d, "balance")),
    );
    dirs.push(...entries(tmpdir(), (name) => name.startsWith("balance-")));
  } else {
    if (env.XDG_RUNTIME_DIR) dirs.push(join(env.XDG_RUNTIME_DIR, "balance"));
    dirs.push(`/run/user/${uid}/balance`, join(tmpdir(), `balance-${uid}`));
  }
  return [...new Set(dirs)];
}

// The paths in `dir` whose names pass `wanted`; none when it cannot be read.
function entries(dir: string, wanted = (_name: string) => true): string[] {
  try {
    return readdirSync(dir).filter(wanted).map((name) => join(dir, name));
  } catch {
    return [];
  }
}

/**
 * Every instance that answers in {@link instanceDirectories}, by port, then
 * address.
 *
 * @example
 * ```ts
 * for (const i of await findInstances()) console.log(i.port, i.bind, i.pid, i.user);
 * ```
 */
export async function findInstances(): Promise<Instance[]> {
  const sockets = instanceDirectories().flatMap((dir) =>
    entries(dir, (name) => name.endsWith(".sock")).filter(isSocket)
  );
  const users = userNames();
  const found = await Promise.all(sockets.map(async (socket) => {
    const info = await askWho(socket);
    if (!info) return undefined;
    const uid = lstatSync(socket).uid;
    return { ...info, socket, user: users.get(uid) ?? String(uid) };
  }));
  return found.filter((i) => i !== undefined)
    .sort((a, b) => a.port - b.port || (a.bind ?? "").localeCompare(b.bind ?? ""));
}

function isSocket(path: string): boolean {
  try {
    return lstatSync(path).isSocket();
  } catch {
    return false;
  }
}

// uid -> name from /etc/passwd; an empty map where there is none.
function userNames(): Map<number, string> {
  const names = new Map<number, string>();
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const [name, , uid] = line.split(":");
      if (name && /^\d+$/.test(uid ?? "") && !names.has(Number(uid))) names.set(Number(uid), name);
    }
  } catch { /* numeric uids then */ }
  return names;
}

// Sends INFO_REQUEST and reads the one-line answer; undefined when the
// socket is dead, slow, or answers something else.
function askWho(socket: string): Promise<InstanceInfo | undefined> {
  return new Promise((resolve) => {
    const conn = net.connect(socket);
    let got = "";
    const done = (info: InstanceInfo | undefined) => {
      clearTimeout(timer);
      conn.destroy();
      resolve(info);
    };
    const timer = setTimeout(() => done(undefined), ASK_TIMEOUT_MS);
    conn.setEncoding("utf8");
    conn.on("error", () => done(undefined));
    conn.on("connect", () => conn.write(`${INFO_REQUEST}\n`));
    conn.on("data", (d: string) => {
      got += d;
      if (!got.includes("\n")) return;
      try {
        const { pid, port, bind } = JSON.parse(got.slice(0, got.indexOf("\n")));
        const valid = Number.isSafeInteger(pid) && Number.isSafeInteger(port) &&
          (bind === null || typeof bind === "string");
        done(valid ? { pid, port, bind } : undefined);
      } catch {
        done(undefined);
      }
    });
  });
}

/**
 * The `balance --list` table: a header, then one row per instance.
 *
 * @example
 * ```ts
 * formatInstances([]); // "PORT  ADDRESS  PID  USER  CONTROL"
 * ```
 */
export function formatInstances(instances: Instance[]): string {
  const rows = [
    ["PORT", "ADDRESS", "PID", "USER", "CONTROL"],
    ...instances.map((i) => [String(i.port), shown(i.bind ?? "any"), String(i.pid), i.user, shown(i.socket, 200)]),
  ];
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join("  "))
    .join("\n");
}

/**
 * What `-c`/`-i` says when nothing answers at `address`: no instance on
 * `port` (or, when a socket is there, that a killed balancer left it), and
 * the instances that do run, with the `-b` (and, for another
 * directory, `BALANCE_CONTROL_DIR`) that reaches one on this port.
 *
 * @example
 * ```ts
 * await noInstanceMessage(18080, "/run/user/1000/balance/any-18080.sock");
 * // "no balance instance running on port 18080; running: port 18080 on 127.0.0.1 (use -b 127.0.0.1)"
 * ```
 */
export async function noInstanceMessage(port: number, address: string): Promise<string> {
  const running = await findInstances();
  const stale = isSocket(address) ? `no balancer answers at ${address} (left by one that was killed)` : undefined;
  if (running.length === 0) {
    return stale ?? `no balance instance running on port ${port} (no control socket at ${address})`;
  }
  const here = dirname(address);
  // Those on the asked port first: one of them is most likely meant.
  running.sort((a, b) => Number(b.port === port) - Number(a.port === port));
  const shownMax = 5;
  const described = running.slice(0, shownMax).map((i) => {
    const at = `port ${i.port}${i.bind === null ? "" : ` on ${shown(i.bind)}`}`;
    if (i.port !== port) return at;
    const dir = dirname(i.socket);
    const use = [
      ...(dir === here ? [] : [`BALANCE_CONTROL_DIR=${shown(dir, 200)}`]),
      ...(basename(i.socket) === basename(address) ? [] : [i.bind === null ? "without -b" : `-b ${shown(i.bind)}`]),
    ];
    return use.length ? `${at} (use ${use.join(" ")})` : at;
  });
  if (running.length > shownMax) described.push(`${running.length - shownMax} more (balance --list)`);
  return `${stale ?? `no balance instance running on port ${port}`}; running: ${described.join(", ")}`;
}
