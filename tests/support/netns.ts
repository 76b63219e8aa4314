/**
 * Network namespaces for tests that need more than loopback (issue 16: an
 * HA pair with keepalived, nodes behind ECMP with BGP): a {@link Lab} makes
 * namespaces, a bridge, veth pairs and addresses, runs commands and daemons
 * inside them, and removes all of it — every process in its namespaces,
 * the namespaces, its temporary directory — when the test ends, however it
 * ends. The root namespace is never touched: bridges live in a namespace of
 * their own, and veth pairs are created directly in their namespaces.
 *
 * Namespaces are named `balance-test-PID-NAME`, so two test processes never
 * share one, and a lab removes those a killed test process left behind.
 * Test addresses come from 198.18.0.0/15 only.
 *
 * @example
 * ```ts
 * await withLab(async (lab) => {
 *   lab.namespaces("sw", "a");
 *   lab.bridge("sw", "br0");
 *   lab.plug("a", "198.18.0.1/24", "sw", "br0");
 *   lab.run("a", ["ping", "-c1", "198.18.0.1"]);
 * });
 * ```
 *
 * @module
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import process from "node:process";
import { onTimeout } from "./test.ts";

const PREFIX = "balance-test-";

/**
 * The path of `program` on PATH or in the sbin directories (where Debian puts
 * `ip`, `keepalived`, `bird`), or undefined.
 *
 * @example
 * ```ts
 * const skip = !findProgram("keepalived") && "keepalived is not installed";
 * ```
 */
export function findProgram(program: string): string | undefined {
  return [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/sbin", "/usr/bin", "/bin"]
    .map((dir) => join(dir, program))
    .find((path) => existsSync(path));
}

/**
 * Why a namespace test cannot run here (not root, `ip` or a daemon
 * missing), or false when it can.
 *
 * @example
 * ```ts
 * test("ha pair", { skip: labUnavailable(["keepalived"]) }, ...);
 * ```
 */
export function labUnavailable(programs: string[]): string | false {
  if (process.getuid?.() !== 0) return "needs root (network namespaces)";
  for (const program of ["ip", ...programs]) {
    if (!findProgram(program)) return `${program} is not installed`;
  }
  return false;
}

/** A daemon or program started in a namespace by {@link Lab.spawn}. */
export interface Started {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** The exit code or signal name, once it has exited. */
  exited: Promise<number | string | null>;
}

/** Namespaces, links and processes of one test; see the module doc. */
export interface Lab {
  /** A private temporary directory, removed by {@link Lab.cleanup}. */
  dir: string;
  /** The full name of namespace `name` (for `ip netns exec`). */
  ns(name: string): string;
  /** Creates namespaces with loopback up. */
  namespaces(...names: string[]): void;
  /** A bridge `bridge` in namespace `ns`, up. */
  bridge(ns: string, bridge: string): void;
  /**
   * A veth pair: `eth0` (or `ifname`) with `cidr` in namespace `ns`, its peer
   * (named `p-NS`) in `bridgeNs`, enslaved to `bridge`; both up.
   */
  plug(ns: string, cidr: string, bridgeNs: string, bridge: string, ifname?: string): void;
  /** A veth pair between two namespaces, each end with its address, both up. */
  wire(a: string, aIf: string, aCidr: string, b: string, bIf: string, bCidr: string): void;
  /** The processes running in namespace `ns` whose command name is `comm` (as in /proc/PID/comm). */
  pids(ns: string, comm: string): number[];
  /** Runs `args` in namespace `ns` to completion; throws with its stderr when it fails. */
  run(ns: string, args: string[]): string;
  /** Starts `args` in namespace `ns`; killed by {@link Lab.cleanup} if still running. */
  spawn(ns: string, args: string[], env?: Record<string, string | undefined>): Started;
  /** Kills every process in the lab's namespaces, deletes them and the directory; idempotent. */
  cleanup(): void;
}

function ip(args: string[]): string {
  const r = spawnSync("ip", args, { encoding: "utf8", timeout: 10_000 });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.error?.message ?? r.stderr.trim()}`);
  return r.stdout;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function pidsIn(ns: string): number[] {
  const pids = spawnSync("ip", ["netns", "pids", ns], { encoding: "utf8", timeout: 10_000 }).stdout ?? "";
  return pids.split(/\s+/).filter(Boolean).map(Number);
}

// Kills whatever still runs in `ns` (the daemons' own children included),
// then deletes it; deleting a namespace destroys its veth ends too.
function removeNamespace(ns: string): void {
  for (const pid of pidsIn(ns)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch { /* already gone */ }
  }
  spawnSync("ip", ["netns", "del", ns], { timeout: 10_000 });
}

// Namespaces of test processes that no longer exist (killed past their
// suite's limit before they could clean up).
function removeStale(): void {
  let names: string[] = [];
  try {
    names = readdirSync("/run/netns");
  } catch { /* none yet */ }
  for (const name of names) {
    const m = name.match(/^balance-test-(\d+)-/);
    if (m && !alive(Number(m[1]))) removeNamespace(name);
  }
}

/**
 * A new {@link Lab}; its cleanup is registered with `onTimeout` too. Prefer
 * {@link withLab}, which also cleans up in `finally`.
 *
 * @example
 * ```ts
 * const lab = createLab();
 * try { ... } finally { lab.cleanup(); }
 * ```
 */
export function createLab(): Lab {
  removeStale();
  const made: string[] = [];
  const children: ChildProcess[] = [];
  const dir = mkdtempSync(join(tmpdir(), "balance-lab-"));
  const ns = (name: string) => `${PREFIX}${process.pid}-${name}`;
  const lab: Lab = {
    dir,
    ns,
    namespaces(...names) {
      for (const name of names) {
        ip(["netns", "add", ns(name)]);
        made.push(ns(name));
        ip(["-n", ns(name), "link", "set", "lo", "up"]);
      }
    },
    bridge(where, bridge) {
      ip(["-n", ns(where), "link", "add", bridge, "type", "bridge"]);
      ip(["-n", ns(where), "link", "set", bridge, "up"]);
    },
    plug(where, cidr, bridgeNs, bridge, ifname = "eth0") {
      // Prefixed, so that no namespace name reads as a keyword of `ip link`.
      const port = `p-${where}`.slice(0, 15);
      ip(["link", "add", ifname, "netns", ns(where), "type", "veth", "peer", "name", port, "netns", ns(bridgeNs)]);
      ip(["-n", ns(bridgeNs), "link", "set", "dev", port, "master", bridge, "up"]);
      ip(["-n", ns(where), "addr", "add", cidr, "dev", ifname]);
      ip(["-n", ns(where), "link", "set", ifname, "up"]);
    },
    wire(a, aIf, aCidr, b, bIf, bCidr) {
      ip(["link", "add", aIf, "netns", ns(a), "type", "veth", "peer", "name", bIf, "netns", ns(b)]);
      ip(["-n", ns(a), "addr", "add", aCidr, "dev", aIf]);
      ip(["-n", ns(b), "addr", "add", bCidr, "dev", bIf]);
      ip(["-n", ns(a), "link", "set", aIf, "up"]);
      ip(["-n", ns(b), "link", "set", bIf, "up"]);
    },
    pids(where, comm) {
      return pidsIn(ns(where)).filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === comm;
        } catch {
          return false; // exited meanwhile
        }
      });
    },
    run(where, args) {
      return ip(["netns", "exec", ns(where), ...args]);
    },
    spawn(where, args, env = process.env) {
      const child = spawn("ip", ["netns", "exec", ns(where), ...args], { stdio: ["ignore", "pipe", "pipe"], env });
      children.push(child);
      let stdout = "";
      let stderr = "";
      child.stdout!.on("data", (d) => (stdout += d));
      child.stderr!.on("data", (d) => (stderr += d));
      const exited = new Promise<number | string | null>((r) => child.on("exit", (code, signal) => r(code ?? signal)));
      return { child, stdout: () => stdout, stderr: () => stderr, exited };
    },
    cleanup() {
      for (const child of children.splice(0)) {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      }
      for (const name of made.splice(0)) removeNamespace(name);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  onTimeout(() => lab.cleanup());
  return lab;
}

/**
 * Runs `fn` with a new {@link Lab} and cleans it up afterwards, whatever
 * happened (and on a test's timeout).
 *
 * @example
 * ```ts
 * await withLab(async (lab) => { lab.namespaces("a", "b"); ... });
 * ```
 */
export async function withLab(fn: (lab: Lab) => Promise<void>): Promise<void> {
  const lab = createLab();
  try {
    await fn(lab);
  } finally {
    lab.cleanup();
  }
}
