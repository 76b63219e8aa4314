/// <reference types="bun-types" />
import type { Socket } from "bun";
import type { Channel } from "../../core/channel.ts";
import type { EndReason } from "../../core/connection_log.ts";
import type { Idleable } from "../../core/idle.ts";
import type { Direction } from "../../core/packet_dump.ts";
import type { ProxyEndpoints, ProxyHeaderReader } from "../../core/proxy_header_reader.ts";
import { concatBytes } from "../../core/bytes.ts";

/** One direction of a {@link Pipe}: bytes the destination has not taken yet. */
export class Flow {
  /** Unwritten tail of the last chunk; while set, the source is paused. */
  pending: Uint8Array | undefined = undefined;
  /** The source sent FIN. */
  ended = false;
  /** FIN passed on to the destination. */
  done = false;
  /** Bytes the destination has taken. */
  bytes = 0;
  /** PROXY header bytes still at the front of `pending`: not the client's, so not counted. */
  uncounted = 0;

  constructor(readonly direction: Direction) {}
}

/** What a {@link Pipe} reports as bytes move. */
export interface PipeHooks {
  dump?: (direction: Direction, chunk: Uint8Array) => void;
  /** Called once when both sockets are closed or abandoned. */
  onClose(pipe: Pipe): void;
}

/**
 * One proxied connection on Bun's callback sockets: the client, the server
 * once connected, and a {@link Flow} per direction. Bun's `write` is
 * unbuffered, so a short write is the backpressure signal: the rest is kept
 * in `pending` and the source paused until the destination drains. At most
 * one chunk per direction is ever held.
 *
 * @example
 * ```ts
 * const pipe = new Pipe(clientSocket, hooks);
 * pipe.attach(channel, serverSocket);
 * ```
 */
export class Pipe implements Idleable {
  server: Socket<Attempt> | undefined;
  channel: Channel | undefined;
  readonly toServer = new Flow("->");
  readonly toClient = new Flow("-<");
  active = false;
  closed = false;
  /** Paused while connecting because it sent too much too early. */
  clientPaused = false;
  /** Whose FIN came first: how the connection ended unless something tore it down. */
  fin: EndReason | undefined = undefined;
  /** What tore the connection down (a reset, the idle timeout, a shutdown, no channel). */
  torn: EndReason | undefined = undefined;
  /** Milliseconds until connected, failed attempts included. */
  connectMs = 0;
  /** `performance.now()` at accept: set only for `--log-connections`. */
  accepted = 0;
  /** The client as balance names it: the peer, or the one a PROXY header named (`--accept-proxy`). */
  clientAddress: string;
  /** Its port: 0 unless a log, a trace or `--accept-proxy` needs it (a system call to read). */
  clientPort = 0;
  /** `--accept-proxy`: the header being read; undefined once it is in. */
  headerReader: ProxyHeaderReader | undefined = undefined;
  headerTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  /** The endpoints a received PROXY header named, to pass on with `--proxy-protocol`. */
  proxied: ProxyEndpoints | undefined = undefined;

  constructor(readonly client: Socket<Pipe>, readonly hooks: PipeHooks) {
    this.clientAddress = client.remoteAddress;
  }

  attach(channel: Channel, server: Socket<Attempt>): void {
    this.channel = channel;
    this.server = server;
  }

  /** Counts `n` bytes that reached the destination of `flow`. */
  count(flow: Flow, n: number): void {
    this.active = true;
    flow.bytes += n;
    if (flow === this.toServer) this.channel!.countSent(n);
    else this.channel!.countRcvd(n);
  }

  /** Ends the connection: both sockets closed gracefully, hooks told once. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.end();
    this.server?.end();
    this.hooks.onClose(this);
  }

  /** Ends the connection at once because of `reason`, unless it has ended already. */
  abort(reason: EndReason): void {
    if (this.closed) return;
    this.torn = reason;
    this.close();
  }

  /** How the connection ended (once it has). */
  get reason(): EndReason {
    return this.torn ?? this.fin ?? "client-closed";
  }

  closeIdle(): void {
    this.abort("idle-timeout");
  }
}

/** One connect attempt to a channel; abandoned once it timed out. */
export interface Attempt {
  pipe: Pipe;
  channel: Channel;
  abandoned: boolean;
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
 * The server is connected: send what the client sent meanwhile, and its FIN.
 * A PROXY `header` (`--proxy-protocol`) goes first, in the same write.
 */
export function sendEarlyChunks(pipe: Pipe, header?: Uint8Array): void {
  const flow = pipe.toServer;
  const early = flow.pending;
  flow.pending = undefined;
  if (header) sendHeader(pipe, header, early);
  else if (early) forwardChunk(pipe, flow, pipe.client, pipe.server!, early);
  if (flow.pending) return;
  if (pipe.clientPaused) {
    pipe.client.resume();
    pipe.clientPaused = false;
  }
  if (flow.ended) endFlow(pipe, flow, pipe.server);
}

// Counts only the client's bytes: a write that ends inside the header leaves
// the rest of it uncounted in `pending` for drainFlow.
function sendHeader(pipe: Pipe, header: Uint8Array, early: Uint8Array | undefined): void {
  const flow = pipe.toServer;
  if (early) pipe.hooks.dump?.(flow.direction, early);
  const bytes = early ? concatBytes(header, early) : header;
  const n = pipe.server!.write(bytes);
  if (n < 0) return pipe.abort("server-reset");
  if (n > header.length) pipe.count(flow, n - header.length);
  if (n < bytes.length) {
    flow.pending = bytes.subarray(n);
    flow.uncounted = Math.max(0, header.length - n);
    pipe.client.pause();
  }
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
  pipe.hooks.dump?.(flow.direction, chunk);
  if (flow.pending) {
    // Only reachable if data raced a pause: keep order, hold it too.
    flow.pending = concatBytes(flow.pending, chunk);
    src.pause();
    return;
  }
  const n = dst.write(chunk);
  if (n < 0) return pipe.abort(resetOf(pipe, dst));
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
  if (n < 0) return pipe.abort(resetOf(pipe, dst));
  const header = Math.min(flow.uncounted, n);
  flow.uncounted -= header;
  pipe.count(flow, n - header);
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
  pipe.fin ??= flow === pipe.toServer ? "client-closed" : "server-closed";
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
export function closedUnder(pipe: Pipe, side: "client" | "server", error: Error | undefined): void {
  if (error) return pipe.abort(side === "client" ? "client-reset" : "server-reset");
  pipe.fin ??= side === "client" ? "client-closed" : "server-closed";
  pipe.close();
}
