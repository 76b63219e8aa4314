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
import type { Adapter, ServeOptions, Server } from "../adapter/types.ts";
import type { ProbeOptions } from "../adapter/probe.ts";
import type { HealthSettings } from "../core/health/health.ts";
import { concatBytes } from "../core/util/bytes.ts";
import { type AccessSettings, ClientGate } from "../core/access/gate.ts";
import { ClientTable } from "../core/access/client_table.ts";
import { type SniRouting, sniRouting } from "../core/tls/sni_routes.ts";
import { encodeProxyHeader } from "../core/proxy/proxy_protocol.ts";
import type { ProxySettings } from "../core/proxy/proxy_protocol.ts";
import { controlAddress, ensureControlDirectory } from "../control/address.ts";
import { claimControlAddress, type ControlServer, startControlServer } from "../control/server.ts";
import { type MetricsServer, startMetricsServer } from "./observe/metrics_server.ts";
import { METRICS_CONTENT_TYPE, renderMetrics } from "../core/observe/metrics.ts";
import { type EngineName, type Protocol, showJson } from "../core/commands/control.ts";
import { openFilesLimit, processFigures } from "../adapter/process_stats.ts";
import type { Config } from "./config.ts";
import { reload, type ReloadAnswer, type ReloadContext } from "./reload.ts";
import { type Log, logTargets, setupLog } from "./observe/log.ts";
import { RUNTIME, VERSION } from "./version.ts";
import { serveInWorkers, type WorkerServer } from "./workers.ts";
import { listen } from "./listen.ts";
import { chooseEngine, wakerOf } from "./engine.ts";

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
  const workers = threadCount(config, adapter, log);
  const engine = chooseEngine(config.engine, adapter, (m) => log.info(m), config.ftp !== undefined);
  const balancer = makeBalancer(config, hosts, workers, log, trace);
  const control = await claimControl(config);
  const s: Serving = {
    log,
    trace,
    balancer,
    running: config,
    connectionLog: config.logConnections
      ? new ConnectionBatch((records) => log.infoLines(records.map(formatConnectionLine)))
      : undefined,
    reload: () => Promise.resolve({ output: "not serving yet", error: true }),
    stopListening: () => Promise.resolve(),
    endConnections: () => Promise.resolve(),
  };
  handleSignals(s);
  const fileLimit = openFilesLimit();
  const options = serveOptions(config, { hostname, sourceAddress }, fileLimit, s);
  if (engine === "native") options.engine = "native";
  const gate = options.gate!;
  const proxy: ProxySettings = { send: config.proxyProtocol, accept: config.acceptProxy };
  const checker = healthChecker(config, adapter, sourceAddress, proxy, s);
  const observe = checker && ((slot: number, reason: string) => checker.observeFailure(slot, reason));
  if (observe) balancer.onConnectFailed = (channel, reason) => observe(channel.cells.slot, reason);
  const inWorkers = workers > 1
    ? await serveInWorkers(balancer, options, workers, workerUrl, observe, wakerOf(adapter, options))
    : undefined;
  const server = inWorkers ?? await listen(adapter, balancer, options, true);
  const names = watchNames(config, resolver, inWorkers, s);
  s.reload = reloader(s, { options, gate, resolver, reread, checker, names, inWorkers });
  const { controlServer, metricsServer } = await startControlAndMetrics(s, config, control, {
    lookupPort,
    resolver,
    checker,
    proxy,
    gate,
    server,
    inWorkers,
    engine,
  });
  s.stopListening = () => {
    checker?.stop();
    names.stop();
    server.close();
    controlServer.close();
    metricsServer?.close();
    return server.finished;
  };
  s.endConnections = () => server.endConnections();
  checker?.start();
  names.start();
  logStarted(s, config, {
    hostname,
    port: server.port,
    workers,
    engine,
    proxy,
    metricsServer,
    control,
    fileLimit,
    maxConnections: options.maxConnections,
  });
  await server.finished;
  return EX_OK;
}

/** What the steps of {@link serveUntilStopped} share. */
interface Serving {
  log: Log;
  trace?: (message: string) => void;
  balancer: Balancer;
  /** The configuration in force: a reload replaces it. */
  running: Config;
  /** `--log-connections`: the lines not yet written. */
  connectionLog?: ConnectionBatch;
  /** Reads the configuration again and applies it (SIGHUP, `reload`). */
  reload(): Promise<ReloadAnswer>;
  /** Stops accepting, checking, watching names and serving control; resolves once the listener is closed. */
  stopListening(): Promise<void>;
  /** Closes every connection still open. */
  endConnections(): Promise<void>;
}

// Workers need SO_REUSEPORT that spreads connections, which only Linux has;
// a runtime without it on datagram sockets serves UDP in one thread.
function threadCount(config: Config, adapter: Adapter, log: Log): number {
  const workers = process.platform === "linux" ? config.workers : 1;
  if (workers < config.workers) log.warning(`-w: worker threads need Linux; running one (${process.platform})`);
  if (workers === 1 || !config.udp || adapter.datagramReusePort) return workers;
  if (config.udp.only) {
    log.warning(`-w: ${RUNTIME}'s datagram sockets have no SO_REUSEPORT; serving UDP in one thread`);
    return 1;
  }
  log.warning(`-w: ${RUNTIME}'s datagram sockets have no SO_REUSEPORT; one of the ${workers} threads serves UDP`);
  return workers;
}

function makeBalancer(
  config: Config,
  hosts: Map<string, string>,
  workers: number,
  log: Log,
  trace?: (message: string) => void,
): Balancer {
  const balancer = Balancer.fromSpecs(
    config.groups,
    { autodisable: config.autodisable, hashFailover: config.hashFailover },
    trace,
    (host) => hosts.get(host)!,
    workers,
  );
  balancer.warn = (message, key) => log.throttled(message, key);
  return balancer;
}

async function claimControl(config: Config): Promise<string> {
  const control = controlAddress(config.listenPort, config.bindAddress);
  ensureControlDirectory(dirname(control));
  await claimControlAddress(control, config.listenPort);
  return control;
}

// Stopping: no new clients at once, open connections get the grace period,
// then whatever is left is closed. A second signal ends the grace period
// (the operator will not wait): the same close and last line, exit 0.
function stopper(s: Serving): (signal: string) => Promise<void> {
  const { log, balancer } = s;
  let stopping = false;
  let hurried = false;
  return async (signal) => {
    if (stopping) {
      if (!hurried) log.info(`second ${signal}: closing ${balancer.openConnections()} open connection(s) now`);
      hurried = true;
      return;
    }
    stopping = true;
    await s.stopListening();
    const open = balancer.openConnections();
    log.info(`${signal}: stopped accepting; ${open} open connection(s), grace ${s.running.graceSeconds}s`);
    const deadline = Date.now() + s.running.graceSeconds * 1000;
    while (balancer.openConnections() > 0 && Date.now() < deadline && !hurried) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const left = balancer.openConnections();
    // With --log-connections, each one left gets its line before the exit.
    await s.endConnections();
    s.connectionLog?.flush();
    log.info(`exiting, ${left} connection(s) closed`);
    await exitLogged(log, EX_OK);
  };
}

// A daemon's signals: only INT and TERM stop it. HUP (sent by reload
// scripts) and USR2 would kill it by default, leaving the control socket.
function handleSignals(s: Serving): void {
  const { log } = s;
  const stop = stopper(s);
  const handlers = {
    SIGINT: () => void stop("SIGINT"),
    SIGTERM: () => void stop("SIGTERM"),
    SIGHUP: () => {
      if (s.running.configFiles.length === 0) return log.info("SIGHUP: no configuration file to reload; going on");
      log.info("SIGHUP: reloading");
      void s.reload();
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
}

function serveOptions(
  config: Config,
  { hostname, sourceAddress }: Pick<ResolvedConfig, "hostname" | "sourceAddress">,
  fileLimit: number | undefined,
  s: Serving,
): ServeOptions {
  const maxConnections = connectionBudget(fileLimit);
  const { log, trace, connectionLog } = s;
  const warn = (message: string, key?: string) => log.throttled(message, key);
  return {
    maxConnections,
    hostname,
    port: config.listenPort,
    connectTimeoutMs: config.connectTimeout * 1000,
    idleTimeoutMs: config.idleTimeout * 1000,
    sourceAddress,
    dump: config.packetDump ? (dir, chunk) => process.stdout.write(formatPacketDump(dir, chunk)) : undefined,
    trace,
    warn,
    onConnectionEnd: connectionLog && ((record) => connectionLog.add(record)),
    proxyProtocol: config.proxyProtocol,
    acceptProxy: config.acceptProxy,
    sni: sniOf(config),
    udp: config.udp && {
      only: config.udp.only,
      timeoutMs: config.udp.timeout * 1000,
      responses: config.udp.responses,
      maxSessions: Math.min(config.udp.maxSessions ?? Infinity, sessionBudget(fileLimit)),
    },
    ftp: config.ftp,
    // One table for every thread, made here and shared with workers.
    gate: new ClientGate(ClientTable.create(config.clientTable), s.balancer.state, warn, config.access),
  };
}

// A UDP session takes one descriptor, its channel socket.
function sessionBudget(fileLimit: number | undefined): number {
  return fileLimit === undefined ? Infinity : Math.max(1, fileLimit - RESERVED_DESCRIPTORS);
}

// Each proxied connection takes two descriptors; beyond the limit new
// clients wait (or are turned away) instead of failing accept in a loop.
function connectionBudget(fileLimit: number | undefined): number | undefined {
  return fileLimit === undefined ? undefined : Math.max(1, Math.floor((fileLimit - RESERVED_DESCRIPTORS) / 2));
}

// Checks run here, in the thread that owns control; workers see the
// health through the shared state and tell of failed connects.
function healthChecker(
  config: Config,
  adapter: Adapter,
  sourceAddress: string | undefined,
  proxy: ProxySettings,
  s: Serving,
): HealthChecker | undefined {
  if (!config.check) return undefined;
  const { log, trace } = s;
  return new HealthChecker(
    s.balancer,
    config.check,
    adapter.makeProbe({ ...probeOptions(config.check, sourceAddress, proxy), datagram: config.udp?.only }),
    { info: (m) => log.info(m), warning: (m) => log.warning(m), trace },
  );
}

// Names are asked again here, on one timer; workers take a new address as a new layout.
function watchNames(
  config: Config,
  resolver: NameResolver,
  inWorkers: WorkerServer | undefined,
  s: Serving,
): NameWatch {
  const { log, trace } = s;
  const names = new NameWatch(
    s.balancer,
    config.resolveInterval,
    resolver,
    { info: (m) => log.info(m), warning: (m) => log.warning(m), trace },
    () => inWorkers?.syncLayout(),
  );
  names.followSpecs(config.groups);
  return names;
}

/** What a reload changes besides the balancer. */
interface ReloadTargets {
  options: ServeOptions;
  gate: ClientGate;
  resolver: NameResolver;
  reread: () => Config;
  checker?: HealthChecker;
  names: NameWatch;
  inWorkers?: WorkerServer;
}

// One reload at a time, in the order asked (SIGHUP and `reload` alike).
function reloader(s: Serving, t: ReloadTargets): () => Promise<ReloadAnswer> {
  const { balancer, log } = s;
  const ctx: ReloadContext = {
    balancer,
    running: () => s.running,
    reread: t.reread,
    resolve: (next) => resolveChannelHosts(t.resolver, next),
    applySettings: (next) => {
      balancer.options.autodisable = next.autodisable;
      balancer.options.hashFailover = next.hashFailover;
      t.options.connectTimeoutMs = next.connectTimeout * 1000;
      t.gate.configure(next.access);
      t.options.sni = sniOf(next);
      s.running = next;
    },
    layoutChanged: async () => {
      t.checker?.refresh();
      t.names.followSpecs(s.running.groups);
      await t.inWorkers?.syncLayout();
    },
    log: { info: (m) => log.info(m), warning: (m) => log.warning(m) },
  };
  let reloads = Promise.resolve<ReloadAnswer>({ output: "" });
  return () => (reloads = reloads.then(() => reload(ctx)));
}

/** What the control channel and the metrics listener serve. */
interface Served {
  lookupPort: ServiceLookup;
  resolver: NameResolver;
  checker?: HealthChecker;
  proxy: ProxySettings;
  gate: ClientGate;
  server: Server;
  inWorkers?: WorkerServer;
  engine: EngineName;
}

// Nothing may go on serving without its control channel (or the metrics asked for).
async function startControlAndMetrics(
  s: Serving,
  config: Config,
  control: string,
  served: Served,
): Promise<{ controlServer: ControlServer; metricsServer?: MetricsServer }> {
  const { log, balancer } = s;
  const { checker, proxy, gate, inWorkers, engine } = served;
  let controlServer: ControlServer | undefined;
  try {
    controlServer = await startControlServer(
      {
        balancer,
        version: VERSION,
        lookupPort: served.lookupPort,
        log: (line) => log.info(line),
        health: checker,
        proxy,
        access: gate,
        protocols: protocolsOf(config),
        engine,
        configuration: () => ({ options: s.running.optionWords, port: s.running.listenPort }),
      },
      control,
      {
        onKill: () => {
          log.info("kill: exiting");
          void exitLogged(log, EX_OK);
        },
        syncLayout: inWorkers?.syncLayout,
        resolveHost: (host) => resolveHost(served.resolver, host, "host").catch(() => undefined),
        reload: () => s.reload(),
        info: { port: config.listenPort, bind: config.bindAddress ?? null },
      },
    );
    // Here, in the control thread: it reads the shared state, so every worker's numbers add up.
    const metricsServer = config.metrics
      ? await startMetricsServer(config.metrics.host, config.metrics.port, {
        metricsContentType: METRICS_CONTENT_TYPE,
        metrics: () =>
          renderMetrics({
            balancer,
            version: VERSION,
            runtime: RUNTIME,
            process: processFigures(),
            udp: config.udp !== undefined,
          }),
        status: () => JSON.stringify(showJson(balancer, checker, proxy, gate, protocolsOf(config), engine)),
      })
      : undefined;
    return { controlServer, metricsServer };
  } catch (err) {
    controlServer?.close();
    if (inWorkers) inWorkers.terminate();
    else served.server.close();
    throw err;
  }
}

function logStarted(
  s: Serving,
  config: Config,
  at: {
    hostname: string;
    port: number;
    workers: number;
    engine: EngineName;
    proxy: ProxySettings;
    metricsServer?: MetricsServer;
    control: string;
    fileLimit?: number;
    maxConnections?: number;
  },
): void {
  const { hostname, port, workers, engine, proxy, metricsServer, control, fileLimit, maxConnections } = at;
  s.log.info(
    `balance ${VERSION} started: listening on ${hostname} port ${port}${
      protocols(config)
    } in ${workers} thread(s), ${engine} engine, ${s.balancer.groups.length} group(s)${
      proxy.accept ? ", PROXY header required from clients" : ""
    }${proxy.send ? `, PROXY v${proxy.send} header sent to channels` : ""}${ftpSummary(config)}${
      accessSummary(config.access)
    }${
      metricsServer ? `, metrics ${formatHostPort(config.metrics!.host, metricsServer.port)}` : ""
    }, control ${control}`,
  );
  s.trace?.(
    maxConnections === undefined
      ? "open files limit unknown: no connection limit"
      : `open files limit ${fileLimit}: at most ${maxConnections} proxied connections at once`,
  );
}

// What `show --json` and /status say the port serves.
function protocolsOf({ udp }: Config): Protocol[] {
  return !udp ? ["tcp"] : udp.only ? ["udp"] : ["tcp", "udp"];
}

// Said only when UDP is on: TCP alone is what balance has always served.
function protocols({ udp }: Config): string {
  if (!udp) return "";
  const limits = `${udp.timeout}s timeout${udp.responses ? `, ${udp.responses} response(s) per session` : ""}${
    udp.maxSessions ? `, at most ${udp.maxSessions} sessions` : ""
  }`;
  return udp.only ? ` (UDP only: ${limits})` : ` (TCP and UDP: ${limits})`;
}

// `--sni`: built once per configuration; absent, nothing is read ahead.
function sniOf(config: Config): SniRouting | undefined {
  return config.sni.length ? sniRouting(config.sni, config.sniDefault ?? "") : undefined;
}

// `--ftp` and its options, for the start line: whether data connections follow.
function ftpSummary({ ftp }: Config): string {
  if (!ftp) return "";
  const ports = ftp.ports ? ` on ports ${ftp.ports.lo}-${ftp.ports.hi}` : "";
  return `, FTP data connections followed${ports}${ftp.address ? `, passive replies naming ${ftp.address}` : ""}`;
}

// The access settings in force, for the start line: what an operator checks first.
function accessSummary({ rules, proxyFrom, maxPerClient, ratePerClient }: AccessSettings): string {
  const parts = [
    rules.length ? `${rules.length} access rule(s)` : "",
    proxyFrom ? `PROXY headers only from ${proxyFrom}` : "",
    maxPerClient ? `at most ${maxPerClient} connection(s) per client` : "",
    ratePerClient ? `at most ${ratePerClient.connections} new per client per ${ratePerClient.seconds}s` : "",
  ];
  return parts.filter((p) => p).map((p) => `, ${p}`).join("");
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
