/// <reference types="bun-types" />
import type { Socket } from "bun";
import type { Channel } from "../../core/model/channel.ts";
import type { EndReason } from "../../core/observe/connection_log.ts";
import type { Direction } from "../../core/observe/packet_dump.ts";
import type { ProxyEndpoints } from "../../core/proxy/proxy_header_reader.ts";
import type { Session, SessionLink, Side } from "../../core/session/session.ts";
import type { TimedConnect } from "../../core/session/listener.ts";
import { concatBytes } from "../../core/util/bytes.ts";

/** One direction of a {@link Pipe}: bytes the destination has not taken yet. */
export class Flow {
  /** Unwritten tail of the last chunk; while set, the source is paused. */
  pending: Uint8Array | undefined = undefined;
  /** The source sent FIN. */
  ended = false;
  /** FIN passed on to the destination. */
  done = false;

  constructor(readonly direction: Direction) {}
}

/**
 * One proxied connection on Bun's callback sockets: the client, the server
 * once connected, and a {@link Flow} per direction; its {@link Session}
 * decides the rest. Bun's `write` is unbuffered, so a short write is the
 * backpressure signal: the rest is kept in `pending` and the source paused
 * until the destination drains. At most one chunk per direction is ever held.
 *
 * @example
 * ```ts
 * const pipe = new Pipe(clientSocket, serving);
 * pipe.session = listener.open(pipe, clientSocket.remoteAddress);
 * ```
 */
export class Pipe implements SessionLink {
  server: Socket<Attempt> | undefined = undefined;
  session!: Session<Pipe>;
  readonly toServer = new Flow("->");
  readonly toClient = new Flow("-<");
  closed = false;
  /** Paused while connecting because it sent too much too early. */
  clientPaused = false;

  constructor(readonly client: Socket<Pipe>, readonly serving: Serving) {}

  /** Counts `n` bytes that reached the destination of `flow`. */
  count(flow: Flow, n: number): void {
    if (flow === this.toServer) this.session.countSent(n);
    else this.session.countRcvd(n);
  }

  /** Ends the connection: both sockets closed gracefully, the session finished once. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    // First: Bun may run a socket's close handler inside end(), which must
    // find the session finished (not, say, still awaiting a header).
    this.session.finish();
    this.client.end();
    this.server?.end();
  }

  abort(): void {
    this.close();
  }

  clientPort(): number {
    return this.client.remotePort;
  }

  serverLocalAddress(): string {
    return this.server!.localAddress;
  }

  // The listener's port is every client's local port: no getsockname for it.
  endpoints(): ProxyEndpoints {
    const client = this.client;
    return {
      src: { address: client.remoteAddress, port: this.session.clientPort || client.remotePort },
      dst: { address: client.localAddress, port: this.serving.listenPort },
    };
  }
}

/** What every pipe of one listener shares. */
export interface Serving {
  /** Every accepted connection's local port: no getsockname needed for it. */
  listenPort: number;
  /** `-B`, as Bun.connect takes it (not in Bun's published types, but honoured). */
  from: { localAddress?: string };
}

/**
 * One connect attempt to a channel. A Bun.connect cannot be cancelled: once
 * the listener's clock says `-t` has passed, the attempt fails and is
 * abandoned, and its socket is dropped whenever it shows up.
 */
export class Attempt implements TimedConnect {
  abandoned = false;
  /** Rejects the dial while it is in flight; dropped once it settles, so an open connection keeps no promise alive. */
  fail: ((err: Error) => void) | undefined = undefined;

  constructor(readonly pipe: Pipe, readonly channel: Channel) {}

  timedOut(): void {
    this.abandoned = true;
    this.fail?.(this.pipe.session.listener.connectTimeoutError());
    this.fail = undefined;
  }
}

/**
 * Bytes a client may send before its channel is connected; past this the
 * client is paused. Most clients send one request at once (HTTP), which is
 * held without the two system calls of a pause and a resume.
 */
export const EARLY_BYTES_MAX = 64 * 1024;

/** Client bytes that came before the server connection: keep them, in order. */
export function holdEarlyChunk(pipe: Pipe, chunk: Uint8Array): void {
  const flow = pipe.toServer;
  flow.pending = flow.pending ? concatBytes(flow.pending, chunk) : chunk;
  if (flow.pending.length >= EARLY_BYTES_MAX && !pipe.clientPaused) {
    pipe.client.pause();
    pipe.clientPaused = true;
  }
}

/**
 * The server is connected: send what the client sent meanwhile (after the
 * PROXY header, if one is sent), and its FIN.
 */
export function sendEarlyChunks(pipe: Pipe): void {
  const flow = pipe.toServer;
  const opening = pipe.session.opening(flow.pending);
  flow.pending = undefined;
  if (opening) writeChunk(pipe, flow, pipe.client, pipe.server!, opening);
  if (flow.pending) return;
  if (pipe.clientPaused) {
    pipe.client.resume();
    pipe.clientPaused = false;
  }
  if (flow.ended) endFlow(pipe, flow, pipe.server);
}

/**
 * Writes a chunk from `src` to `dst`; on a short write keeps the rest and
 * pauses `src` until `dst` drains. The named hot path of the Bun relay.
 */
export function forwardChunk(
  pipe: Pipe,
  flow: Flow,
  src: Socket<unknown>,
  dst: Socket<unknown>,
  chunk: Uint8Array,
): void {
  chunk = pipe.session.relaying(flow.direction, chunk);
  if (flow.pending) {
    // Only reachable if data raced a pause: keep order, hold it too.
    flow.pending = concatBytes(flow.pending, chunk);
    src.pause();
    return;
  }
  writeChunk(pipe, flow, src, dst, chunk);
}

function writeChunk(pipe: Pipe, flow: Flow, src: Socket<unknown>, dst: Socket<unknown>, chunk: Uint8Array): void {
  const n = dst.write(chunk);
  if (n < 0) return pipe.session.abort(resetOf(pipe, dst));
  pipe.count(flow, n);
  if (n < chunk.length) {
    // Bun hands each callback a fresh buffer, so keeping a view is safe.
    flow.pending = chunk.subarray(n);
    src.pause();
  }
}

/** `dst` can take more: write what `flow` holds, then let `src` read again. */
export function drainFlow(pipe: Pipe, flow: Flow, src: Socket<unknown>, dst: Socket<unknown>): void {
  const pending = flow.pending;
  if (!pending) return;
  const n = dst.write(pending);
  if (n < 0) return pipe.session.abort(resetOf(pipe, dst));
  pipe.count(flow, n);
  if (n < pending.length) {
    flow.pending = pending.subarray(n);
    return;
  }
  flow.pending = undefined;
  if (flow.ended) finishFlow(pipe, flow, dst);
  else src.resume();
}

/** The source of `flow` sent FIN: pass it on once nothing is pending. */
export function endFlow(pipe: Pipe, flow: Flow, dst: Socket<unknown> | undefined): void {
  flow.ended = true;
  pipe.session.ended(flow === pipe.toServer ? "client" : "server");
  if (!flow.pending && dst) finishFlow(pipe, flow, dst);
}

function finishFlow(pipe: Pipe, flow: Flow, dst: Socket<unknown>): void {
  if (flow.done) return;
  flow.done = true;
  dst.shutdown();
  if (pipe.toServer.done && pipe.toClient.done) pipe.close();
}

// A socket that takes no more writes has gone away under us: a reset.
function resetOf(pipe: Pipe, dst: Socket<unknown>): EndReason {
  return dst === pipe.client ? "client-reset" : "server-reset";
}

/**
 * A socket closed without balance closing it. With an error the peer reset;
 * without, it sent its FIN (Bun reports a FIN that comes after our own as a
 * close alone, without `end`).
 */
export function closedUnder(pipe: Pipe, side: Side, error: Error | undefined): void {
  if (error) return pipe.session.abort(side === "client" ? "client-reset" : "server-reset");
  pipe.session.ended(side);
  pipe.close();
}
