import { lookup } from "node:dns/promises";
import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import process from "node:process";
import { Balancer } from "../core/balancer.ts";
import { ExitError } from "../core/exit_error.ts";
import type { ServiceLookup } from "../core/grammar.ts";
import { addressBytes } from "../core/hash.ts";
import { shown } from "../core/shown.ts";
import { formatPacketDump } from "../core/packet_dump.ts";
import { EX_OK, EX_USAGE } from "../core/sysexits.ts";
import type { Adapter } from "../adapter/types.ts";
import { controlAddress, ensurePrivateDirectory } from "../control/address.ts";
import { claimControlAddress, startControlServer } from "../control/server.ts";
import type { Config } from "./config.ts";
import { type LogTarget, setupLog } from "./log.ts";
import { VERSION } from "./usage.ts";

/**
 * Runs the balancer until it is stopped (`kill`, SIGTERM, SIGINT): resolves
 * hosts, claims the control channel, listens, and calls `onReady` once
 * clients and control commands are served.
 *
 * @example
 * ```ts
 * await serveUntilStopped(config, adapter, lookupPort, { kind: "stderr" });
 * ```
 */
export async function serveUntilStopped(
  config: Config,
  adapter: Adapter,
  lookupPort: ServiceLookup,
  logTarget: LogTarget,
): Promise<number> {
  const log = await setupLog(config.debug, logTarget);
  const trace = config.debug ? (m: string) => log.debug(m) : undefined;
  const hosts = new Map<string, string>();
  for (const host of config.groups.flatMap((g) => g.channels.map((c) => c.host))) {
    hosts.set(host, await resolveHost(host, "channel host"));
  }
  const balancer = Balancer.fromSpecs(
    config.groups,
    { autodisable: config.autodisable, hashFailover: config.hashFailover },
    trace,
    (host) => hosts.get(host)!,
  );
  const hostname = config.bindAddress !== undefined
    ? await resolveHost(config.bindAddress, "bind address (-b)")
    : config.ipv6
    ? "::"
    : "0.0.0.0";
  const sourceAddress = config.sourceAddress === undefined
    ? undefined
    : await resolveHost(config.sourceAddress, "source address (-B)");

  const control = controlAddress(config.listenPort, config.bindAddress);
  ensurePrivateDirectory(dirname(control));
  await claimControlAddress(control, config.listenPort);

  // Stopping: no new clients at once, open connections get the grace period,
  // then whatever is left is closed. A second signal stops at once.
  // process.exit runs the 'exit' handlers, which remove the control socket.
  let stopListening = () => {};
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) process.exit(EX_OK);
    stopping = true;
    stopListening();
    const open = balancer.openConnections();
    log.info(`${signal}: stopped accepting; ${open} open connection(s), grace ${config.graceSeconds}s`);
    const deadline = Date.now() + config.graceSeconds * 1000;
    while (balancer.openConnections() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    log.info(`exiting, ${balancer.openConnections()} connection(s) closed`);
    process.exit(EX_OK);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      process.on(signal, () => void stop(signal));
    } catch { /* Windows has no SIGTERM to listen for */ }
  }
  const server = await adapter.serve(balancer, {
    hostname,
    port: config.listenPort,
    connectTimeoutMs: config.connectTimeout * 1000,
    idleTimeoutMs: config.idleTimeout * 1000,
    sourceAddress,
    dump: config.packetDump ? (dir, chunk) => process.stdout.write(formatPacketDump(dir, chunk)) : undefined,
    trace,
    warn: (m) => log.warning(m),
  });
  const controlServer = await startControlServer({ balancer, version: VERSION, lookupPort }, control, () => {
    log.info("kill: exiting");
    process.exit(EX_OK);
  });
  stopListening = () => {
    server.close();
    controlServer.close();
  };
  trace?.(`listening on ${hostname} port ${server.port}, ${balancer.groups.length} group(s), control ${control}`);
  trace?.(openFilesLimit());
  await server.finished;
  return EX_OK;
}

// Each proxied connection takes two descriptors. Both runtimes raise the
// soft limit to the hard limit at start; -d says what that gave.
function openFilesLimit(): string {
  try {
    const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"));
    const [soft, hard] = line!.trim().split(/\s+/).slice(3, 5);
    return `open files limit ${soft} (hard ${hard}): up to ${Math.floor((Number(soft) - 32) / 2)} proxied connections`;
  } catch {
    return "open files limit: unknown on this platform";
  }
}

async function resolveHost(host: string, what: string): Promise<string> {
  // An address needs no resolver (and loading one costs memory and time).
  if (addressBytes(host)) return host;
  try {
    return (await lookup(host)).address;
  } catch {
    throw new ExitError(`cannot resolve ${what} '${shown(host)}'`, EX_USAGE, true);
  }
}
