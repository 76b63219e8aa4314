/**
 * dnsmasq as a test fixture: a private instance on loopback, in the
 * foreground, answering only what the test says (no upstream, no system
 * files): one name and address ({@link startDnsmasq}), or a hosts file the
 * test rewrites ({@link startDns}); killed when the test is done or times out.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { Resolver } from "node:dns/promises";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { type Daemon, startDaemon } from "./daemon.ts";
import { freePort } from "./net.ts";
import { findProgram } from "./netns.ts";
import { onTimeout } from "./test.ts";
import { until, within } from "./wait.ts";

/** Where dnsmasq is, if installed. */
export const DNSMASQ = findProgram("dnsmasq");
/** Why a test that needs dnsmasq skips; false when it is installed. */
export const skipWithoutDnsmasq: string | false = !DNSMASQ && "dnsmasq is not installed (Debian package dnsmasq-base)";

/** A running dnsmasq answering from the hosts file that {@link Dns.set} writes. */
export interface Dns {
  port: number;
  /** The process, for signals (`kill -STOP` a server that no longer answers). */
  child: ChildProcess;
  /** Rewrites the hosts file and waits until dnsmasq answers from it. */
  set(lines: string, expect: string | undefined): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts dnsmasq on 127.0.0.1 and a free port (UDP and TCP), answering from
 * `lines` (a hosts file); resolves once it answers `web.test` (unless
 * `lines` is empty).
 *
 * @example
 * ```ts
 * const dns = await startDns("198.18.0.1 web.test\n");
 * try { ... } finally { await dns.stop(); }
 * ```
 */
export async function startDns(lines: string): Promise<Dns> {
  const dir = mkdtempSync(join(tmpdir(), "balance-dns-"));
  // dnsmasq started as root reads the file again as `nobody`.
  chmodSync(dir, 0o755);
  const hosts = join(dir, "hosts");
  writeFileSync(hosts, lines, { mode: 0o644 });
  const port = await freePort();
  const child: ChildProcess = spawn(DNSMASQ!, [
    "--keep-in-foreground",
    "--conf-file=/dev/null",
    "--no-resolv",
    "--no-hosts",
    `--addn-hosts=${hosts}`,
    "--listen-address=127.0.0.1",
    "--bind-interfaces",
    `--port=${port}`,
    "--pid-file",
    "--log-facility=-",
  ], { stdio: ["ignore", "ignore", "pipe"] });
  onTimeout(() => child.kill("SIGKILL"));
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const resolver = new Resolver({ timeout: 500, tries: 1 });
  resolver.setServers([`127.0.0.1:${port}`]);
  const answer = () => resolver.resolve4("web.test").then((a) => a[0], () => undefined);
  const dns: Dns = {
    port,
    child,
    async set(lines, expect) {
      writeFileSync(hosts, lines);
      process.kill(child.pid!, "SIGHUP");
      await until(answer, (a) => a === expect, `dnsmasq to answer ${expect} for web.test:\n${stderr}`);
    },
    async stop() {
      if (child.exitCode === null) child.kill("SIGKILL");
      await within(exited, 5000, "dnsmasq to exit");
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await until(
      () => child.exitCode === null ? answer() : Promise.reject(new Error(`dnsmasq exited:\n${stderr}`)),
      (a) => a !== undefined || lines === "",
      "dnsmasq to answer",
    );
  } catch (err) {
    await dns.stop();
    throw err;
  }
  return dns;
}

/**
 * Starts dnsmasq on a free port of 127.0.0.1 (TCP and UDP), answering
 * `name` with `address` and nothing else: no upstream, no hosts file, no
 * configuration file.
 *
 * @example
 * ```ts
 * const ns1 = await startDnsmasq("www.example.test", "192.0.2.1");
 * try { ... } finally { await ns1.stop(); }
 * ```
 */
export function startDnsmasq(name: string, address: string): Promise<Daemon> {
  if (!DNSMASQ) throw new Error("dnsmasq is not installed");
  return startDaemon({
    name: "dnsmasq",
    program: DNSMASQ,
    files: () => ({}),
    args: (_dir, port) => [
      "--keep-in-foreground",
      "--conf-file=/dev/null",
      "--no-resolv",
      "--no-hosts",
      "--listen-address=127.0.0.1",
      "--bind-interfaces",
      `--port=${port}`,
      "--pid-file",
      "--log-facility=-",
      `--address=/${name}/${address}`,
    ],
  });
}
