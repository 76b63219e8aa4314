import { dirname } from "node:path";
import process from "node:process";
import { Balancer, formatHostPort } from "../core/model/balancer.ts";
import { ExitError } from "../core/util/exit_error.ts";
import type { ServiceLookup } from "../core/config/grammar.ts";
import { addressBytes } from "../core/selection/hash.ts";
import { shown } from "../core/util/shown.ts";
import { formatPacketDump } from "../core/observe/packet_dump.ts";
import { ConnectionBatch, formatConnectionLine } from "../core/observe/connection_log.ts";
import { EX_NOHOST, EX_OK } from "../core/util/sysexits.ts";
import { HealthChecker } from "../core/health/health_checker.ts";
import { type NameResolver, NameWatch } from "../core/dns/name_watch.ts";
import { makeResolver } from "../adapter/resolver.ts";
import type { Adapter, ServeOptions } from "../adapter/types.ts";
import type { ProbeOptions } from "../adapter/probe.ts";
import type { HealthSettings } from "../core/health/health.ts";
import { concatBytes } from "../core/util/bytes.ts";
import { encodeProxyHeader } from "../core/proxy/proxy_protocol.ts";
import type { ProxySettings } from "../core/proxy/proxy_protocol.ts";
import { controlAddress, ensureControlDirectory } from "../control/address.ts";
import { claimControlAddress, startControlServer } from "../control/server.ts";
import { type MetricsServer, startMetricsServer } from "./observe/metrics_server.ts";
import { METRICS_CONTENT_TYPE, renderMetrics } from "../core/observe/metrics.ts";
import { showJson } from "../core/commands/control.ts";
import { openFilesLimit, processFigures } from "../adapter/process_stats.ts";
import type { Config } from "./config.ts";
import { reload, type ReloadAnswer, type ReloadContext } from "./reload.ts";
import { type Log, logTargets, setupLog } from "./observe/log.ts";
import { RUNTIME, VERSION } from "../cli/usage.ts";
import { serveInWorkers } from "./workers.ts";

/**
 * Runs the balancer until it is stopped (`kill`, SIGTERM, SIGINT): resolves
 * hosts, claims the control channel, listens (in this thread, or in `-w`
 * workers started from `workerUrl`) and serves control commands.
 *
 * @example
 * ```ts
 * // workerUrl: made in the entry module (main.ts), where a compiled binary can resolve it
 * await serveUntilStopped(config, adapter, workerUrl, lookupPort);
 * ```
 */
export async function serveUntilStopped(
  config: Config,
  adapter: Adapter,
  workerUrl: URL,
  lookupPort: ServiceLookup,
  reread: () => Config,
): Promise<number> {
  const log = await setupLog(config.debug, logTargets(config), adapter.openSyslogSocket);
  const trace = config.debug ? (m: string) => log.debug(m) : undefined;
  const { resolver, hosts, hostname, sourceAddress } = await resolveConfig(config);
  // What a reload may change: the groups and the live settings (reload.ts).
  let running = config;
  let reloadNow = (): Promise<ReloadAnswer> => Promise.resolve({ output: "not serving yet", error: true });
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
  balancer.warn = (message, key) => log.throttled(message, key);

  const control = controlAddress(config.listenPort, config.bindAddress);
  ensureControlDirectory(dirname(control));
  await claimControlAddress(control, config.listenPort);

  // Stopping: no new clients at once, open connections get the grace period,
  // then whatever is left is closed. A second signal ends the grace period
  // (the operator will not wait): the same close and last line, exit 0.
  let stopListening = () => Promise.resolve();
  let endConnections = () => Promise.resolve();
  const connectionLog = config.logConnections
    ? new ConnectionBatch((records) => log.infoLines(records.map(formatConnectionLine)))
    : undefined;
  let stopping = false;
  let hurried = false;
  const stop = async (signal: string) => {
    if (stopping) {
      if (!hurried) log.info(`second ${signal}: closing ${balancer.openConnections()} open connection(s) now`);
      hurried = true;
      return;
    }
    stopping = true;
    await stopListening();
    const open = balancer.openConnections();
    log.info(`${signal}: stopped accepting; ${open} open connection(s), grace ${running.graceSeconds}s`);
    const deadline = Date.now() + running.graceSeconds * 1000;
    while (balancer.openConnections() > 0 && Date.now() < deadline && !hurried) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const left = balancer.openConnections();
    // With --log-connections, each one left gets its line before the exit.
    await endConnections();
    connectionLog?.flush();
    log.info(`exiting, ${left} connection(s) closed`);
    await exitLogged(log, EX_OK);
  };
  // A daemon's signals: only INT and TERM stop it. HUP (sent by reload
  // scripts) and USR2 would kill it by default, leaving the control socket.
  const handlers = {
    SIGINT: () => void stop("SIGINT"),
    SIGTERM: () => void stop("SIGTERM"),
    SIGHUP: () => {
      if (running.configFiles.length === 0) return log.info("SIGHUP: no configuration file to reload; going on");
      log.info("SIGHUP: reloading");
      void reloadNow();
    },
    SIGUSR1: () => log.info(log.reopen() ? "SIGUSR1: log file reopened" : "SIGUSR1: no log file to reopen"),
    SIGUSR2: () => log.info("SIGUSR2: ignored"),
    SIGPIPE: () => {},
  };
  for (const [signal, handler] of Object.entries(handlers)) {
    try {
      process.on(signal as NodeJS.Signals, handler);
    } catch { /* Windows has only SIGINT of these */ }
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
    warn: (message, key) => log.throttled(message, key),
    onConnectionEnd: connectionLog && ((record) => connectionLog.add(record)),
    proxyProtocol: config.proxyProtocol,
    acceptProxy: config.acceptProxy,
  };
  const proxy: ProxySettings = { send: config.proxyProtocol, accept: config.acceptProxy };
  // Checks run here, in the thread that owns control; workers see the
  // health through the shared state and tell of failed connects.
  const checker = config.check &&
    new HealthChecker(balancer, config.check, adapter.makeProbe(probeOptions(config.check, sourceAddress, proxy)), {
      info: (m) => log.info(m),
      warning: (m) => log.warning(m),
      trace,
    });
  const observe = checker && ((slot: number, reason: string) => checker.observeFailure(slot, reason));
  if (observe) balancer.onConnectFailed = (channel, reason) => observe(channel.cells.slot, reason);
  const inWorkers = workers > 1 ? await serveInWorkers(balancer, options, workers, workerUrl, observe) : undefined;
  const server = inWorkers ?? await adapter.serve(balancer, options);
  // Names are asked again here, on one timer; workers take a new address as a new layout.
  const names = new NameWatch(
    balancer,
    config.resolveInterval,
    resolver,
    { info: (m) => log.info(m), warning: (m) => log.warning(m), trace },
    () => inWorkers?.syncLayout(),
  );
  names.followSpecs(config.groups);
  const reloading: ReloadContext = {
    balancer,
    running: () => running,
    reread,
    resolve: (next) => resolveChannelHosts(resolver, next),
    applySettings: (next) => {
      balancer.options.autodisable = next.autodisable;
      balancer.options.hashFailover = next.hashFailover;
      options.connectTimeoutMs = next.connectTimeout * 1000;
      running = next;
    },
    layoutChanged: async () => {
      checker?.refresh();
      names.followSpecs(running.groups);
      await inWorkers?.syncLayout();
    },
    log: { info: (m) => log.info(m), warning: (m) => log.warning(m) },
  };
  // One reload at a time, in the order asked (SIGHUP and `reload` alike).
  let reloads = Promise.resolve<ReloadAnswer>({ output: "" });
  reloadNow = () => (reloads = reloads.then(() => reload(reloading)));
  let controlServer;
  let metricsServer: MetricsServer | undefined;
  try {
    controlServer = await startControlServer(
      {
        balancer,
        version: VERSION,
        lookupPort,
        log: (line) => log.info(line),
        health: checker,
        proxy,
        configuration: () => ({ options: running.optionWords, port: running.listenPort }),
      },
      control,
      {
        onKill: () => {
          log.info("kill: exiting");
          void exitLogged(log, EX_OK);
        },
        syncLayout: inWorkers?.syncLayout,
        resolveHost: (host) => resolveHost(resolver, host, "host").catch(() => undefined),
        reload: reloadNow,
        info: { port: config.listenPort, bind: config.bindAddress ?? null },
      },
    );
    // Here, in the control thread: it reads the shared state, so every worker's numbers add up.
    if (config.metrics) {
      metricsServer = await startMetricsServer(config.metrics.host, config.metrics.port, {
        metricsContentType: METRICS_CONTENT_TYPE,
        metrics: () => renderMetrics({ balancer, version: VERSION, runtime: RUNTIME, process: processFigures() }),
        status: () => JSON.stringify(showJson(balancer, checker || undefined, proxy)),
      });
    }
  } catch (err) {
    // Nothing may go on serving without its control channel (or the metrics asked for).
    controlServer?.close();
    if (inWorkers) inWorkers.terminate();
    else server.close();
    throw err;
  }
  stopListening = () => {
    checker?.stop();
    names.stop();
    server.close();
    controlServer.close();
    metricsServer?.close();
    return server.finished;
  };
  endConnections = () => server.endConnections();
  checker?.start();
  names.start();
  log.info(
    `balance ${VERSION} started: listening on ${hostname} port ${server.port} in ${workers} thread(s), ${balancer.groups.length} group(s)${
      proxy.accept ? ", PROXY header required from clients" : ""
    }${proxy.send ? `, PROXY v${proxy.send} header sent to channels` : ""}${
      metricsServer ? `, metrics ${formatHostPort(config.metrics!.host, metricsServer.port)}` : ""
    }, control ${control}`,
  );
  trace?.(
    maxConnections === undefined
      ? "open files limit unknown: no connection limit"
      : `open files limit ${fileLimit}: at most ${maxConnections} proxied connections at once`,
  );
  await server.finished;
  return EX_OK;
}

// With --proxy-protocol a check begins with the header that names no client
// (v2 LOCAL, v1 UNKNOWN), so that a channel requiring one accepts it.
function probeOptions(check: HealthSettings, sourceAddress: string | undefined, proxy: ProxySettings): ProbeOptions {
  if (!proxy.send) return { ...check, sourceAddress };
  const header = encodeProxyHeader(proxy.send);
  return { ...check, sourceAddress, send: check.send ? concatBytes(header, check.send) : header };
}

/** The addresses a configuration names, resolved as a start resolves them. */
export interface ResolvedConfig {
  resolver: NameResolver;
  /** Every channel host and its address. */
  hosts: Map<string, string>;
  /** Where to listen. */
  hostname: string;
  /** `-B`, resolved. */
  sourceAddress?: string;
}

/**
 * Resolves every name of `config` (channel hosts, `-b`, `-B`) through its
 * resolver; throws an {@link ExitError} (exit 68) for one that does not
 * resolve. `--check-config` stops here; a start and a reload go on.
 *
 * @example
 * ```ts
 * const { hosts } = await resolveConfig(config);
 * ```
 */
export async function resolveConfig(config: Config): Promise<ResolvedConfig> {
  const resolver = makeResolver(config.resolver);
  const hosts = await resolveChannelHosts(resolver, config);
  const hostname = config.bindAddress !== undefined
    ? await resolveHost(resolver, config.bindAddress, "bind address (-b)")
    : config.ipv6
    ? "::"
    : "0.0.0.0";
  const sourceAddress = config.sourceAddress === undefined
    ? undefined
    : await resolveHost(resolver, config.sourceAddress, "source address (-B)");
  return { resolver, hosts, hostname, sourceAddress };
}

async function resolveChannelHosts(resolver: NameResolver, config: Config): Promise<Map<string, string>> {
  const hosts = new Map<string, string>();
  for (const host of config.groups.flatMap((g) => g.channels.map((c) => c.host))) {
    if (!hosts.has(host)) hosts.set(host, await resolveHost(resolver, host, "channel host"));
  }
  return hosts;
}

/** How long an exit waits for a remote syslog to take the last lines. */
const LOG_FLUSH_MS = 1000;

// process.exit runs the 'exit' handlers, which remove the control socket.
async function exitLogged(log: Log, code: number): Promise<never> {
  await Promise.race([log.close(), new Promise((r) => setTimeout(r, LOG_FLUSH_MS))]);
  process.exit(code);
}

/** Descriptors kept free for the runtime, the control channel and logging. */
const RESERVED_DESCRIPTORS = 32;

// Exit 68 with one line: a name that does not resolve is no typo in the
// command line, so the usage would not help.
async function resolveHost(resolver: NameResolver, host: string, what: string): Promise<string> {
  // An address needs no resolver (and loading one costs memory and time).
  if (addressBytes(host)) return host;
  const result = await resolver(host);
  if ("error" in result) throw new ExitError(`cannot resolve ${what} '${shown(host)}'`, EX_NOHOST);
  return result.address;
}
