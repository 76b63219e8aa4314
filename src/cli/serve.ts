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
import type { Adapter, ServeOptions } from "../adapter/types.ts";
import { controlAddress, ensurePrivateDirectory } from "../control/address.ts";
import { claimControlAddress, startControlServer } from "../control/server.ts";
import type { Config } from "./config.ts";
import { type LogTarget, setupLog } from "./log.ts";
import { VERSION } from "./usage.ts";
import { serveInWorkers } from "./workers.ts";

/**
 * Runs the balancer until it is stopped (`kill`, SIGTERM, SIGINT): resolves
 * hosts, claims the control channel, listens (in this thread, or in `-w`
 * workers started from `workerUrl`) and serves control commands.
 *
 * @example
 * ```ts
 * // workerUrl: made in the entry module (main.ts), where a compiled binary can resolve it
 * await serveUntilStopped(config, adapter, workerUrl, lookupPort, { kind: "stderr" });
 * ```
 */
export async function serveUntilStopped(
  config: Config,
  adapter: Adapter,
  workerUrl: URL,
  lookupPort: ServiceLookup,
  logTarget: LogTarget,
): Promise<number> {
  const log = await setupLog(config.debug, logTarget);
  const trace = config.debug ? (m: string) => log.debug(m) : undefined;
  const hosts = new Map<string, string>();
  for (const host of config.groups.flatMap((g) => g.channels.map((c) => c.host))) {
    hosts.set(host, await resolveHost(host, "channel host"));
  }
  // Workers need SO_REUSEPORT that spreads connections, which only Linux has.
  const workers = process.platform === "linux" ? config.workers : 1;
  if (workers < config.workers) log.warning(`-w: worker threads need Linux; running one (${process.platform})`);
  const balancer = Balancer.fromSpecs(
    config.groups,
    { autodisable: config.autodisable, hashFailover: config.hashFailover },
    trace,
    (host) => hosts.get(host)!,
    workers,
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
  let stopListening = () => Promise.resolve();
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) process.exit(EX_OK);
    stopping = true;
    await stopListening();
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
  // Each proxied connection takes two descriptors; beyond the limit new
  // clients wait (or are turned away) instead of failing accept in a loop.
  const fileLimit = openFilesLimit();
  const maxConnections = fileLimit === undefined
    ? undefined
    : Math.max(1, Math.floor((fileLimit - RESERVED_DESCRIPTORS) / 2));
  const options: ServeOptions = {
    maxConnections,
    hostname,
    port: config.listenPort,
    connectTimeoutMs: config.connectTimeout * 1000,
    idleTimeoutMs: config.idleTimeout * 1000,
    sourceAddress,
    dump: config.packetDump ? (dir, chunk) => process.stdout.write(formatPacketDump(dir, chunk)) : undefined,
    trace,
    warn: (m) => log.warning(m),
  };
  const inWorkers = workers > 1 ? await serveInWorkers(balancer, options, workers, workerUrl) : undefined;
  const server = inWorkers ?? await adapter.serve(balancer, options);
  let controlServer;
  try {
    controlServer = await startControlServer(
      { balancer, version: VERSION, lookupPort },
      control,
      () => {
        log.info("kill: exiting");
        process.exit(EX_OK);
      },
      inWorkers?.syncLayout,
    );
  } catch (err) {
    // Nothing may go on serving without its control channel.
    if (inWorkers) inWorkers.terminate();
    else server.close();
    throw err;
  }
  stopListening = () => {
    server.close();
    controlServer.close();
    return server.finished;
  };
  trace?.(
    `listening on ${hostname} port ${server.port} in ${workers} thread(s), ${balancer.groups.length} group(s), control ${control}`,
  );
  trace?.(
    maxConnections === undefined
      ? "open files limit unknown: no connection limit"
      : `open files limit ${fileLimit}: at most ${maxConnections} proxied connections at once`,
  );
  await server.finished;
  return EX_OK;
}

/** Descriptors kept free for the runtime, the control channel and logging. */
const RESERVED_DESCRIPTORS = 32;

/**
 * The open-files soft limit (both runtimes raise it to the hard limit at
 * start), where the platform tells it; `undefined` elsewhere.
 */
function openFilesLimit(): number | undefined {
  try {
    const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"));
    const soft = Number(line!.trim().split(/\s+/)[3]);
    return Number.isFinite(soft) ? soft : undefined;
  } catch {
    return undefined;
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
