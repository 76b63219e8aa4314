import type { Idleable } from "../../core/idle.ts";
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
 * Copies bytes from `from` to `to` until `from` ends, then half-closes `to`.
 * A read waits until the previous chunk is fully written, which is the
 * backpressure: a slow reader on `to` stops reads from `from` and nothing
 * piles up in memory.
 *
 * @example
 * ```ts
 * await copyBytes(client, server, (c) => (sent += c.length));
 * ```
 */
export async function copyBytes(from: ByteStream, to: ByteStream, onChunk: ChunkHook): Promise<void> {
  const small = new Uint8Array(SMALL_BUFFER_SIZE);
  let large: Uint8Array | undefined;
  try {
    for (;;) {
      const buffer = large ?? small;
      const n = await from.read(buffer);
      if (n === null) break;
      const chunk = buffer.subarray(0, n);
      let written = 0;
      while (written < n) written += await to.write(chunk.subarray(written));
      onChunk(chunk);
      if (large === undefined && n === SMALL_BUFFER_SIZE) large = takeLarge();
      else if (large !== undefined && n < SMALL_BUFFER_SIZE) {
        giveLarge(large);
        large = undefined;
      }
    }
  } finally {
    if (large !== undefined) giveLarge(large);
  }
  await to.closeWrite();
}

/** Per-connection callbacks of {@link relay}. */
export interface RelayHooks {
  /** A chunk went client → server. */
  onSent: ChunkHook;
  /** A chunk went server → client. */
  onRcvd: ChunkHook;
}

/**
 * Relays both directions independently until both have ended, then closes
 * both sockets. A FIN from one side is passed on as a half-close and the
 * other direction keeps flowing; an error in either direction (a reset)
 * closes both at once. Registers with `idle` (if given) so that the idle
 * timeout can close the connection.
 *
 * @example
 * ```ts
 * await relay(client, server, { onSent, onRcvd });
 * ```
 */
export async function relay(
  client: ByteStream,
  server: ByteStream,
  hooks: RelayHooks,
  idle?: { add(c: Idleable): void; delete(c: Idleable): void },
): Promise<void> {
  let closed = false;
  const closeBoth = () => {
    if (closed) return;
    closed = true;
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
    const w: Idleable = { active: false, closeIdle: closeBoth };
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
  const up = copyBytes(client, server, onSent).catch(closeBoth);
  const down = copyBytes(server, client, onRcvd).catch(closeBoth);
  await Promise.all([up, down]);
  if (watch) idle!.delete(watch);
  closeBoth();
}
