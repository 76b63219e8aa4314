/**
 * The Bun adapter: `Bun.listen` / `Bun.connect` callback sockets driven by
 * the core, with the same relay properties as the Deno adapter.
 *
 * @example
 * ```ts
 * import { serve } from "./adapter/bun/mod.ts";
 * const server = await serve(balancer, options);
 * ```
 *
 * @module
 */
/// <reference types="bun-types" />
import type { Socket, SocketHandler } from "bun";
import process from "node:process";
import { type Balancer, formatHostPort } from "../../core/balancer.ts";
import type { Channel } from "../../core/channel.ts";
import { ExitError } from "../../core/exit_error.ts";
import { IdleTimer } from "../../core/idle.ts";
import { Throttle } from "../../core/throttle.ts";
import { EX_NOPERM, EX_OSERR } from "../../core/sysexits.ts";
import { encodeProxyHeader } from "../../core/proxy_protocol.ts";
import {
  describeProxied,
  proxiedEndpoints,
  type ProxyEndpoints,
  ProxyHeaderReader,
  proxyHeaderTimedOut,
  type ProxyRefusal,
} from "../../core/proxy_header_reader.ts";
import type { ServeOptions, Server } from "../types.ts";
export { openSyslogSocket } from "./syslog.ts";
export { makeProbe } from "./probe.ts";
import {
  type Attempt,
  closedUnder,
  drainFlow,
  endFlow,
  forwardChunk,
  holdEarlyChunk,
  Pipe,
  type PipeHooks,
  sendEarlyChunks,
} from "./relay.ts";

// Server-side events: `s.data` is the connect attempt; an abandoned one
// (timed out) is dropped as soon as it shows up.
const serverHandlers: SocketHandler<Attempt> = {
  open(s) {
    if (s.data.abandoned || s.data.pipe.closed) return void s.terminate();
    // Bun turns TCP_NODELAY on for every socket itself; keepalive is ours.
    s.setKeepAlive(true);
    s.data.pipe.attach(s.data.channel, s);
  },
  data(s, chunk) {
    const pipe = s.data.pipe;
    if (pipe.server === s) forwardChunk(pipe, pipe.toClient, s, pipe.client, chunk);
  },
  drain(s) {
    const pipe = s.data.pipe;
    if (pipe.server === s) drainFlow(pipe, pipe.toServer, pipe.client, s);
  },
  end(s) {
    const pipe = s.data.pipe;
    if (pipe.server === s) endFlow(pipe, pipe.toClient, pipe.client);
  },
  close(s, error) {
    const pipe = s.data.pipe;
    if (pipe.server === s) closedUnder(pipe, "server", error);
  },
  error() {/* close follows */},
  connectError() {/* the connect promise rejects */},
};

/**
 * Listens on `options.hostname:port` and relays every client to a channel
 * the balancer picks. Throws an {@link ExitError} when it cannot listen.
 */
export function serve(balancer: Balancer, options: ServeOptions): Promise<Server> {
  const idle = options.idleTimeoutMs > 0 ? new IdleTimer(options.idleTimeoutMs) : undefined;
  const trace = options.trace;
  const onEnd = options.onConnectionEnd;
  // Only a connection log needs to hear of connections a shutdown ends.
  const live = onEnd ? new Set<Pipe>() : undefined;
  const serving: Serving = { balancer, options, idle, live, listenPort: options.port, awaitingHeader: 0 };
  const hooks: PipeHooks = {
    dump: options.dump,
    onClose(pipe) {
      idle?.delete(pipe);
      if (pipe.headerReader) stopAwaitingHeader(pipe, serving);
      // A pipe taken out of `live` before its close ends unrecorded.
      if (live?.delete(pipe)) {
        onEnd!({
          clientAddress: pipe.clientAddress,
          clientPort: pipe.clientPort,
          channel: pipe.channel && balancer.describe(pipe.channel),
          connectMs: pipe.connectMs,
          durationMs: performance.now() - pipe.accepted,
          sent: pipe.toServer.bytes,
          rcvd: pipe.toClient.bytes,
          reason: pipe.reason,
        });
      }
      if (pipe.channel) {
        const channel = pipe.channel;
        balancer.release(channel);
        trace?.(
          `${pipe.clientAddress}: closed ${
            balancer.describe(channel)
          }, channel sent ${channel.sent} rcvd ${channel.rcvd}`,
        );
      }
    },
  };
  const max = options.maxConnections ?? Infinity;
  const atLimit = new Throttle(10_000);
  const clientHandlers: SocketHandler<Pipe> = {
    open(client) {
      // Bun accepts on its own, so the descriptor budget is kept here: a
      // client beyond it is turned away at once rather than failing later.
      if (balancer.openConnections() + serving.awaitingHeader >= max) {
        const held = atLimit.pass();
        if (held !== undefined) options.warn(`at the limit of ${max} connections: turning new clients away`);
        client.terminate();
        return;
      }
      client.setKeepAlive(true);
      const pipe = new Pipe(client, hooks);
      client.data = pipe;
      // Each read of remotePort is a getpeername: only when something shows it.
      if (live || trace || options.acceptProxy) pipe.clientPort = client.remotePort;
      if (live) {
        live.add(pipe);
        pipe.accepted = performance.now();
      }
      trace?.(`accepted ${formatHostPort(pipe.clientAddress, pipe.clientPort)}`);
      if (options.acceptProxy) awaitProxyHeader(pipe, serving);
      else connectPipe(pipe, serving);
    },
    data(client, chunk) {
      const pipe = client.data;
      if (!pipe) return;
      if (pipe.server) forwardChunk(pipe, pipe.toServer, client, pipe.server, chunk);
      else if (pipe.headerReader) takeProxyHeader(pipe, chunk, serving);
      else holdEarlyChunk(pipe, chunk);
    },
    drain(client) {
      const pipe = client.data;
      if (pipe?.server) drainFlow(pipe, pipe.toClient, pipe.server, client);
    },
    end(client) {
      const pipe = client.data;
      if (pipe?.headerReader) headerCut(pipe, serving);
      else if (pipe) endFlow(pipe, pipe.toServer, pipe.server);
    },
    close(client, error) {
      const pipe = client.data;
      // Closed by balance itself (a shutdown) while the header was awaited: no refusal.
      if (pipe?.headerReader && !pipe.closed) headerCut(pipe, serving);
      else if (pipe) closedUnder(pipe, "client", error);
    },
    error() {/* close follows */},
  };
  let listener;
  try {
    listener = Bun.listen<Pipe>({
      hostname: options.hostname,
      port: options.port,
      allowHalfOpen: true,
      socket: clientHandlers,
      // Accepted by Bun.listen though its published types only show it for connect.
      ...(options.reusePort ? { reusePort: true } : {}),
    });
  } catch (err) {
    throw listenError(err, formatHostPort(options.hostname, options.port));
  }
  serving.listenPort = listener.port;
  let stop!: () => void;
  const finished = new Promise<void>((resolve) => (stop = resolve));
  return Promise.resolve({
    port: listener.port,
    finished,
    close() {
      listener.stop(false);
      stop();
    },
    endConnections() {
      // Each pipe reports its end as it closes, synchronously.
      for (const pipe of live ?? []) pipe.abort("shutdown");
      return Promise.resolve();
    },
  });
}

/** What every connection of one listener shares. */
interface Serving {
  balancer: Balancer;
  options: ServeOptions;
  idle: IdleTimer | undefined;
  /** Connections the log records at their close, which a shutdown ends; only kept for a connection log. */
  live: Set<Pipe> | undefined;
  /** Every accepted connection's local port: no getsockname needed for it. */
  listenPort: number;
  /** Clients waiting for their PROXY header: they hold descriptors too. */
  awaitingHeader: number;
}

// --accept-proxy: the connect waits for the header, at most -t.
function awaitProxyHeader(pipe: Pipe, serving: Serving): void {
  const timeoutMs = serving.options.connectTimeoutMs;
  pipe.headerReader = new ProxyHeaderReader();
  pipe.headerTimer = setTimeout(() => refuseProxyHeader(pipe, serving, proxyHeaderTimedOut(timeoutMs)), timeoutMs);
  serving.awaitingHeader++;
}

function takeProxyHeader(pipe: Pipe, chunk: Uint8Array, serving: Serving): void {
  const read = pipe.headerReader!.push(chunk);
  if (read.kind === "incomplete") return;
  if (read.kind === "error") return refuseProxyHeader(pipe, serving, read);
  stopAwaitingHeader(pipe, serving);
  const peer = { address: pipe.clientAddress, port: pipe.clientPort };
  pipe.proxied = proxiedEndpoints(read.header, () => endpointsOf(pipe, serving.listenPort));
  serving.options.trace?.(describeProxied(peer, read.header, pipe.proxied));
  pipe.clientAddress = pipe.proxied.src.address;
  pipe.clientPort = pipe.proxied.src.port;
  if (read.rest.length > 0) holdEarlyChunk(pipe, read.rest);
  connectPipe(pipe, serving);
}

function headerCut(pipe: Pipe, serving: Serving): void {
  const ended = pipe.headerReader!.ended();
  if (ended.kind === "error") return refuseProxyHeader(pipe, serving, ended);
  stopAwaitingHeader(pipe, serving);
  // A probe: closed without a record.
  serving.live?.delete(pipe);
  pipe.close();
}

function refuseProxyHeader(pipe: Pipe, serving: Serving, refusal: ProxyRefusal): void {
  stopAwaitingHeader(pipe, serving);
  serving.balancer.refuseProxyHeader(pipe.clientAddress, pipe.clientPort, refusal.reason);
  pipe.abort("proxy-refused");
}

// Once: the socket's close that follows finds no header awaited.
function stopAwaitingHeader(pipe: Pipe, serving: Serving): void {
  clearTimeout(pipe.headerTimer);
  pipe.headerReader = undefined;
  serving.awaitingHeader--;
}

async function connectPipe(pipe: Pipe, serving: Serving) {
  const { balancer, options } = serving;
  const connected = await balancer.connect(pipe.clientAddress, (channel) => dial(pipe, channel, options));
  if (!connected.channel) {
    pipe.abort(connected.reason);
    return;
  }
  pipe.connectMs = connected.connectMs;
  if (pipe.closed) {
    // The client left while we were connecting.
    connected.conn.end();
    balancer.release(connected.channel);
    return;
  }
  // Bytes and a FIN that came while connecting are passed on now, after
  // the PROXY header if one is sent.
  let header: Uint8Array | undefined;
  if (options.proxyProtocol) {
    const { src, dst } = pipe.proxied ?? endpointsOf(pipe, serving.listenPort);
    header = encodeProxyHeader(options.proxyProtocol, src, dst);
  }
  sendEarlyChunks(pipe, header);
  // Unless a failed write has closed it already.
  if (!pipe.closed) serving.idle?.add(pipe);
}

// The client and the address it connected to, as its connection has them.
function endpointsOf(pipe: Pipe, listenPort: number): ProxyEndpoints {
  const client = pipe.client;
  return {
    src: { address: client.remoteAddress, port: pipe.clientPort || client.remotePort },
    dst: { address: client.localAddress, port: listenPort },
  };
}

function dial(pipe: Pipe, channel: Channel, options: ServeOptions): Promise<Socket<Attempt>> {
  const attempt: Attempt = { pipe, channel, abandoned: false };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      attempt.abandoned = true;
      reject(new Error(`connect timed out after ${options.connectTimeoutMs / 1000}s`));
    }, options.connectTimeoutMs);
    Bun.connect<Attempt>({
      hostname: channel.address,
      port: channel.port,
      allowHalfOpen: true,
      data: attempt,
      socket: serverHandlers,
      // Not in Bun's published types, but honoured by Bun.connect: -B.
      ...(options.sourceAddress ? { localAddress: options.sourceAddress } : {}),
    }).then(
      (s) => {
        clearTimeout(timer);
        if (attempt.abandoned) s.terminate();
        else resolve(s);
      },
      (err) => {
        clearTimeout(timer);
        if (!attempt.abandoned) reject(err);
      },
    );
  });
}

/** A compiled binary is itself the program; from source, bun runs the main file. */
export function selfCommand(): string[] {
  return Bun.main.startsWith("/$bunfs/") || Bun.main.includes("~BUN")
    ? [process.execPath]
    : [process.execPath, Bun.main];
}

function listenError(err: unknown, where: string): ExitError {
  const code = (err as { code?: string }).code;
  if (code === "EADDRINUSE") return new ExitError(`cannot listen on ${where}: address already in use`, EX_OSERR);
  if (code === "EACCES") return new ExitError(`cannot listen on ${where}: permission denied`, EX_NOPERM);
  if (code === "EADDRNOTAVAIL") return new ExitError(`cannot listen on ${where}: address not available`, EX_OSERR);
  return new ExitError(`cannot listen on ${where}: ${(err as Error).message}`, EX_OSERR);
}
