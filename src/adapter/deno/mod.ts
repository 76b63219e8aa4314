/**
 * The Deno adapter: `Deno.listen` / `Deno.connect` sockets driven by the core.
 *
 * @example
 * ```ts
 * import { serve } from "./adapter/deno/mod.ts";
 * const server = await serve(balancer, options);
 * ```
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import type { Balancer } from "../../core/balancer.ts";
import { EX_NOPERM, EX_OSERR, EX_USAGE } from "../../core/sysexits.ts";
import { ExitError } from "../../core/exit_error.ts";
import { formatHostPort } from "../../core/balancer.ts";
import { IdleTimer } from "../../core/idle.ts";
import { Throttle } from "../../core/throttle.ts";
import type { ServeOptions, Server } from "../types.ts";
export { openSyslogSocket } from "./syslog.ts";
export { makeProbe } from "../probe.ts";
import { dialChannel } from "./dial.ts";
import { relay, type Stoppable } from "./relay.ts";
import type { ByteStream } from "./byte_stream.ts";
import { readProxyHeader } from "./proxy_header.ts";
import type { EndReason } from "../../core/connection_log.ts";
import { encodeProxyHeader } from "../../core/proxy_protocol.ts";
import { describeProxied, proxiedEndpoints, type ProxyEndpoints } from "../../core/proxy_header_reader.ts";
import { concatBytes } from "../../core/bytes.ts";

/**
 * Listens on `options.hostname:port` and relays every client to a channel
 * the balancer picks. Throws an {@link ExitError} when it cannot listen.
 */
export function serve(balancer: Balancer, options: ServeOptions): Promise<Server> {
  // Deno exits the process on reusePort without --unstable-net: check first
  // (listenDatagram exists exactly when that flag is given).
  if (options.reusePort && !("listenDatagram" in Deno)) {
    throw new ExitError("-w under Deno needs its --unstable-net flag (for SO_REUSEPORT)", EX_USAGE);
  }
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({
      hostname: options.hostname,
      port: options.port,
      transport: "tcp",
      ...(options.reusePort ? { reusePort: true } : {}),
    });
  } catch (err) {
    throw listenError(err, formatHostPort(options.hostname, options.port));
  }
  const idle = options.idleTimeoutMs > 0 ? new IdleTimer(options.idleTimeoutMs) : undefined;
  let closing = false;
  // Only a connection log needs to hear of connections a shutdown ends.
  const live = options.onConnectionEnd ? new Set<Stoppable>() : undefined;
  const finished = acceptLoop(listener, { balancer, options, idle, live, awaitingHeader: 0 }, () => closing);
  return Promise.resolve({
    port: listener.addr.port,
    finished,
    close() {
      closing = true;
      listener.close();
    },
    endConnections: () => endAll(live),
  });
}

/** How long {@link endAll} waits for the relays it ended to report. */
const END_WAIT_MS = 1000;

// Each relay leaves `live` once it has reported its end.
async function endAll(live: Set<Stoppable> | undefined): Promise<void> {
  if (!live) return;
  for (const conn of live) conn.shutdown();
  const deadline = Date.now() + END_WAIT_MS;
  while (live.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

/** Pause after an accept that failed for want of descriptors or memory: long enough not to spin, short enough not to be noticed. */
const ACCEPT_RETRY_MS = 100;
/** At most one accept-failure report per this interval. */
const ACCEPT_REPORT_MS = 10_000;

/** What every connection of one listener shares. */
interface Serving {
  balancer: Balancer;
  options: ServeOptions;
  idle: IdleTimer | undefined;
  /** Connections a shutdown must end; only kept for a connection log. */
  live: Set<Stoppable> | undefined;
  /** Clients waiting for their PROXY header: they hold descriptors too. */
  awaitingHeader: number;
}

async function acceptLoop(listener: Deno.TcpListener, serving: Serving, closing: () => boolean): Promise<void> {
  const { balancer, options } = serving;
  const acceptFailures = new Throttle(ACCEPT_REPORT_MS);
  const atLimit = new Throttle(ACCEPT_REPORT_MS);
  const max = options.maxConnections ?? Infinity;
  for (;;) {
    // At the descriptor budget, leave new clients in the kernel's queue
    // until a connection ends.
    while (balancer.openConnections() + serving.awaitingHeader >= max && !closing()) {
      const held = atLimit.pass();
      if (held !== undefined) options.warn(`at the limit of ${max} connections: new clients wait`);
      await new Promise((r) => setTimeout(r, ACCEPT_RETRY_MS));
    }
    let client: Deno.TcpConn;
    try {
      client = await listener.accept();
    } catch (err) {
      if (closing() || err instanceof Deno.errors.BadResource) return;
      const held = acceptFailures.pass();
      if (held !== undefined) {
        options.warn(`accept failed: ${(err as Error).message}${held ? ` (${held} more since the last report)` : ""}`);
      }
      // A client that reset before its accept completed concerns only
      // itself: go straight on. Out of descriptors or memory, let the
      // pressure ease instead of spinning; the kernel keeps the waiting
      // clients queued meanwhile.
      if (isExhaustion(err)) await new Promise((r) => setTimeout(r, ACCEPT_RETRY_MS));
      continue;
    }
    handleClient(client, serving);
  }
}

// EMFILE, ENFILE, ENOBUFS, ENOMEM as Deno words them: the errors that say
// the process or the system, not one client, is out of something.
const EXHAUSTION = /too many open files|no buffer space|cannot allocate memory|out of memory/i;

function isExhaustion(err: unknown): boolean {
  return EXHAUSTION.test((err as Error).message);
}

async function handleClient(client: Deno.TcpConn, serving: Serving): Promise<void> {
  const { balancer, options, idle, live } = serving;
  client.setNoDelay(true);
  client.setKeepAlive(true);
  let clientAddress = client.remoteAddr.hostname;
  let clientPort = client.remoteAddr.port;
  const trace = options.trace;
  const onEnd = options.onConnectionEnd;
  const accepted = onEnd ? performance.now() : 0;
  trace?.(`accepted ${formatHostPort(clientAddress, clientPort)}`);
  let proxied: ProxyEndpoints | undefined;
  // Client bytes that came with the PROXY header: written before the relay.
  let early: Uint8Array | undefined;
  let earlySent = 0;
  if (options.acceptProxy) {
    // A shutdown ends a client still sending its header too.
    let stopped = false;
    const waiting = live && { shutdown: () => (stopped = true, closeQuietly(client)) };
    if (waiting) live.add(waiting);
    serving.awaitingHeader++;
    const outcome = await readProxyHeader(client, options.connectTimeoutMs);
    serving.awaitingHeader--;
    if (waiting) live!.delete(waiting);
    if (stopped) return unconnected(client, onEnd, clientAddress, clientPort, accepted, "shutdown");
    if (outcome.kind === "probe") return closeQuietly(client);
    if (outcome.kind === "error") {
      balancer.refuseProxyHeader(clientAddress, clientPort, outcome.reason);
      return unconnected(client, onEnd, clientAddress, clientPort, accepted, "proxy-refused");
    }
    proxied = proxiedEndpoints(outcome.header, () => endpointsOf(client));
    trace?.(describeProxied({ address: clientAddress, port: clientPort }, outcome.header, proxied));
    ({ address: clientAddress, port: clientPort } = proxied.src);
    if (outcome.rest.length > 0) early = outcome.rest;
  }
  const connected = await balancer.connect(
    clientAddress,
    (channel) => dialChannel(channel, { timeoutMs: options.connectTimeoutMs, sourceAddress: options.sourceAddress }),
  );
  if (!connected.channel) {
    return unconnected(client, onEnd, clientAddress, clientPort, accepted, connected.reason);
  }
  const { channel, conn: server } = connected;
  const dump = options.dump;
  try {
    const version = options.proxyProtocol;
    const ends = version && (proxied ?? endpointsOf(client));
    const header = ends && encodeProxyHeader(version, ends.src, ends.dst);
    if (header || early) {
      const bytes = header && early ? concatBytes(header, early) : header || early!;
      // A failed write shows in the relay's first read or write.
      const written = await writeAll(server, bytes).then(() => true, () => false);
      if (early && written) {
        earlySent = early.length;
        channel.countSent(earlySent);
        dump?.("->", early);
      }
    }
    const relayed = await relay(
      client,
      server,
      {
        onSent: dump ? (c) => (channel.countSent(c.length), dump("->", c)) : (c) => channel.countSent(c.length),
        onRcvd: dump ? (c) => (channel.countRcvd(c.length), dump("-<", c)) : (c) => channel.countRcvd(c.length),
      },
      idle,
      live,
    );
    onEnd?.({
      clientAddress,
      clientPort,
      channel: balancer.describe(channel),
      connectMs: connected.connectMs,
      durationMs: performance.now() - accepted,
      ...relayed,
      sent: relayed.sent + earlySent,
    });
  } finally {
    balancer.release(channel);
    trace?.(
      `${clientAddress}: closed ${balancer.describe(channel)}, channel sent ${channel.sent} rcvd ${channel.rcvd}`,
    );
  }
}

// Closes a client that got no channel, and reports it to the connection log.
function unconnected(
  client: Deno.TcpConn,
  onEnd: ServeOptions["onConnectionEnd"],
  clientAddress: string,
  clientPort: number,
  accepted: number,
  reason: EndReason,
): void {
  closeQuietly(client);
  onEnd?.({
    clientAddress,
    clientPort,
    connectMs: 0,
    durationMs: performance.now() - accepted,
    sent: 0,
    rcvd: 0,
    reason,
  });
}

// The client and the address it connected to, as its connection has them.
function endpointsOf(conn: Deno.TcpConn): ProxyEndpoints {
  return {
    src: { address: conn.remoteAddr.hostname, port: conn.remoteAddr.port },
    dst: { address: conn.localAddr.hostname, port: conn.localAddr.port },
  };
}

// A client the timeout of its PROXY header closed already.
function closeQuietly(conn: Deno.TcpConn): void {
  try {
    conn.close();
  } catch { /* closed */ }
}

async function writeAll(to: ByteStream, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) written += await to.write(bytes.subarray(written));
}

/** `deno run` of this same main module, with the permissions it runs with. */
export function selfCommand(): string[] {
  return [Deno.execPath(), "run", "--allow-all", "--unstable-net", fileURLToPath(Deno.mainModule)];
}

function listenError(err: unknown, where: string): ExitError {
  if (err instanceof Deno.errors.AddrInUse) {
    return new ExitError(`cannot listen on ${where}: address already in use`, EX_OSERR);
  }
  if (err instanceof Deno.errors.PermissionDenied) {
    return new ExitError(`cannot listen on ${where}: permission denied`, EX_NOPERM);
  }
  if (err instanceof Deno.errors.AddrNotAvailable) {
    return new ExitError(`cannot listen on ${where}: address not available`, EX_OSERR);
  }
  return new ExitError(`cannot listen on ${where}: ${(err as Error).message}`, EX_OSERR);
}
