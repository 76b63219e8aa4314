import type { Idleable } from "../../core/idle.ts";
import type { ByteStream } from "./byte_stream.ts";

/**
 * Size of each direction's buffer: one read at most. 64 KiB matches the
 * kernel's usual loopback segment batch, so a bulk transfer needs few reads.
 */
export const RELAY_BUFFER_SIZE = 64 * 1024;

/** Called after each chunk has been written to the other side. */
export type ChunkHook = (chunk: Uint8Array) => void;

/**
 * Copies bytes from `from` to `to` until `from` ends, then half-closes `to`.
 * One buffer, reused: a read waits until the previous chunk is fully written,
 * which is the backpressure — a slow reader on `to` stops reads from `from`
 * and nothing piles up in memory.
 *
 * @example
 * ```ts
 * await copyBytes(client, server, new Uint8Array(RELAY_BUFFER_SIZE), (c) => (sent += c.length));
 * ```
 */
export async function copyBytes(
  from: ByteStream,
  to: ByteStream,
  buffer: Uint8Array,
  onChunk: ChunkHook,
): Promise<void> {
  for (;;) {
    const n = await from.read(buffer);
    if (n === null) break;
    const chunk = buffer.subarray(0, n);
    let written = 0;
    while (written < n) written += await to.write(chunk.subarray(written));
    onChunk(chunk);
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
  const up = copyBytes(client, server, new Uint8Array(RELAY_BUFFER_SIZE), onSent).catch(closeBoth);
  const down = copyBytes(server, client, new Uint8Array(RELAY_BUFFER_SIZE), onRcvd).catch(closeBoth);
  await Promise.all([up, down]);
  if (watch) idle!.delete(watch);
  closeBoth();
}
