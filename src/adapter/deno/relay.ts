import type { Idleable } from "../../core/idle.ts";
import type { EndReason } from "../../core/connection_log.ts";
import type { ByteStream } from "./byte_stream.ts";

/**
 * Each direction reads into its own small buffer; a read that fills it
 * switches to a large buffer from a shared pool, and a short read returns it.
 * An idle connection thus holds 2 × 4 KiB instead of 2 × 64 KiB, while a bulk
 * transfer reads 64 KiB at a time; no buffer is allocated per chunk.
 */
export const SMALL_BUFFER_SIZE = 4 * 1024;
/** The bulk read size: the kernel's usual loopback segment batch. */
export const LARGE_BUFFER_SIZE = 64 * 1024;

const largePool: Uint8Array[] = [];
const LARGE_POOL_MAX = 256;

function takeLarge(): Uint8Array {
  return largePool.pop() ?? new Uint8Array(LARGE_BUFFER_SIZE);
}

function giveLarge(buffer: Uint8Array): void {
  if (largePool.length < LARGE_POOL_MAX) largePool.push(buffer);
}

/** Called after each chunk has been written to the other side. */
export type ChunkHook = (chunk: Uint8Array) => void;

/**
 * How {@link copyBytes} ended: the source's FIN (passed on), or a read or a
 * write that failed (a reset, or the socket closed under it).
 */
export type CopyEnd = "fin" | "read-failed" | "write-failed";

/** What {@link copyBytes} did: how it ended and how many bytes it copied. */
export interface Copied {
  end: CopyEnd;
  bytes: number;
}

/**
 * Copies bytes from `from` to `to` until `from` ends, then half-closes `to`.
 * A read waits until the previous chunk is fully written, which is the
 * backpressure: a slow reader on `to` stops reads from `from` and nothing
 * piles up in memory. Never rejects: a failure is its {@link CopyEnd}.
 *
 * @example
 * ```ts
 * const { end, bytes } = await copyBytes(client, server, (c) => dump(c));
 * ```
 */
export async function copyBytes(from: ByteStream, to: ByteStream, onChunk: ChunkHook): Promise<Copied> {
  const small = new Uint8Array(SMALL_BUFFER_SIZE);
  let large: Uint8Array | undefined;
  let bytes = 0;
  // Which side failed is where the loop was: a flag, no allocation per chunk.
  let writing = false;
  try {
    for (;;) {
      const buffer = large ?? small;
      const n = await from.read(buffer);
      if (n === null) break;
      const chunk = buffer.subarray(0, n);
      writing = true;
      let written = 0;
      while (written < n) written += await to.write(chunk.subarray(written));
      writing = false;
      bytes += n;
      onChunk(chunk);
      if (large === undefined && n === SMALL_BUFFER_SIZE) large = takeLarge();
      else if (large !== undefined && n < SMALL_BUFFER_SIZE) {
        giveLarge(large);
        large = undefined;
      }
    }
    writing = true;
    await to.closeWrite();
  } catch {
    return { end: writing ? "write-failed" : "read-failed", bytes };
  } finally {
    if (large !== undefined) giveLarge(large);
  }
  return { end: "fin", bytes };
}

/** Per-connection callbacks of {@link relay}. */
export interface RelayHooks {
  /** A chunk went client → server. */
  onSent: ChunkHook;
  /** A chunk went server → client. */
  onRcvd: ChunkHook;
}

/** A relayed connection that balance itself can end (the grace period is over). */
export interface Stoppable {
  /** Closes both sockets at once; the relay ends as `shutdown`. */
  shutdown(): void;
}

/** How a {@link relay} ended and the bytes it moved each way. */
export interface Relayed {
  reason: EndReason;
  /** Client → server. */
  sent: number;
  /** Server → client. */
  rcvd: number;
}

/**
 * Relays both directions independently until both have ended, then closes
 * both sockets. A FIN from one side is passed on as a half-close and the
 * other direction keeps flowing; an error in either direction (a reset)
 * closes both at once. Registers with `idle` (if given) so that the idle
 * timeout can close the connection, and in `live` (if given) so that a
 * shutdown can. Resolves to how it ended: the first FIN, unless a reset, the
 * idle timeout or a shutdown tore it down.
 *
 * @example
 * ```ts
 * const { reason, sent, rcvd } = await relay(client, server, { onSent, onRcvd });
 * ```
 */
export async function relay(
  client: ByteStream,
  server: ByteStream,
  hooks: RelayHooks,
  idle?: { add(c: Idleable): void; delete(c: Idleable): void },
  live?: Set<Stoppable>,
): Promise<Relayed> {
  let closed = false;
  let torn: EndReason | undefined;
  const closeBoth = (reason: EndReason) => {
    if (closed) return;
    closed = true;
    torn = reason;
    for (const s of [client, server]) {
      try {
        s.close();
      } catch { /* already closed by the peer's reset */ }
    }
  };
  let onSent = hooks.onSent;
  let onRcvd = hooks.onRcvd;
  let watch: Idleable | undefined;
  if (idle) {
    const w: Idleable = { active: false, closeIdle: () => closeBoth("idle-timeout") };
    watch = w;
    idle.add(w);
    onSent = (c) => {
      w.active = true;
      hooks.onSent(c);
    };
    onRcvd = (c) => {
      w.active = true;
      hooks.onRcvd(c);
    };
  }
  const stoppable = live && { shutdown: () => closeBoth("shutdown") };
  if (stoppable) live.add(stoppable);
  let fin: EndReason | undefined;
  const up = copyBytes(client, server, onSent).then((r) => {
    if (r.end === "fin") fin ??= "client-closed";
    else closeBoth(r.end === "read-failed" ? "client-reset" : "server-reset");
    return r.bytes;
  });
  const down = copyBytes(server, client, onRcvd).then((r) => {
    if (r.end === "fin") fin ??= "server-closed";
    else closeBoth(r.end === "read-failed" ? "server-reset" : "client-reset");
    return r.bytes;
  });
  const [sent, rcvd] = await Promise.all([up, down]);
  if (watch) idle!.delete(watch);
  if (stoppable) live!.delete(stoppable);
  const reason = torn ?? fin ?? "client-closed";
  closeBoth(reason);
  return { reason, sent, rcvd };
}
