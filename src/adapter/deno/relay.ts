import type { Direction } from "../../core/observe/packet_dump.ts";
import type { ProxyEndpoints } from "../../core/proxy/proxy_header_reader.ts";
import type { Session, SessionLink, Side } from "../../core/session/session.ts";
import { type ByteStream, localAddressOf } from "./byte_stream.ts";
import type { DialOptions } from "./dial.ts";

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

/**
 * How {@link copyBytes} ended: the source's FIN (passed on), or a read or a
 * write that failed (a reset, or the socket closed under it).
 */
export type CopyEnd = "fin" | "read-failed" | "write-failed";

/**
 * Copies bytes from `from` to `to` until `from` ends, then half-closes `to`;
 * the session sees each chunk before it is written (`-p`, and `--ftp`'s
 * rewriting) and counts what it gives back once written. A read waits until the previous chunk is fully written, which is
 * the backpressure: a slow reader on `to` stops reads from `from` and nothing
 * piles up in memory. Never rejects: a failure is its {@link CopyEnd}.
 *
 * @example
 * ```ts
 * const end = await copyBytes(client, server, session, "->");
 * ```
 */
export async function copyBytes(
  from: ByteStream,
  to: ByteStream,
  session: Session,
  direction: Direction,
): Promise<CopyEnd> {
  const small = new Uint8Array(SMALL_BUFFER_SIZE);
  const toServer = direction === "->";
  let large: Uint8Array | undefined;
  // Which side failed is where the loop was: a flag, no allocation per chunk.
  let writing = false;
  try {
    for (;;) {
      const buffer = large ?? small;
      const n = await from.read(buffer);
      if (n === null) break;
      const chunk = session.relaying(direction, buffer.subarray(0, n));
      writing = true;
      let written = 0;
      while (written < chunk.length) written += await to.write(chunk.subarray(written));
      writing = false;
      if (toServer) session.countSent(chunk.length);
      else session.countRcvd(chunk.length);
      if (large === undefined && n === SMALL_BUFFER_SIZE) large = takeLarge();
      else if (large !== undefined && n < SMALL_BUFFER_SIZE) {
        giveLarge(large);
        large = undefined;
      }
    }
    writing = true;
    await to.closeWrite();
  } catch {
    return writing ? "write-failed" : "read-failed";
  } finally {
    if (large !== undefined) giveLarge(large);
  }
  return "fin";
}

/**
 * One proxied connection on Deno's sockets: the client and, once connected,
 * the server; its {@link Session} decides the rest. Closing it while a relay
 * runs ends the relay, which then finishes the session; otherwise closing
 * finishes it at once.
 *
 * @example
 * ```ts
 * const pipe = new Pipe(client, { sourceAddress: "10.0.0.2" });
 * pipe.session = listener.open(pipe, client.remoteAddr.hostname);
 * ```
 */
export class Pipe implements SessionLink {
  session!: Session<Pipe>;
  server: ByteStream | undefined = undefined;
  private relaying = false;

  constructor(readonly client: Deno.TcpConn, readonly dial: DialOptions) {}

  abort(): void {
    closeQuietly(this.client);
    if (this.server) closeQuietly(this.server);
    if (!this.relaying) this.session.finish();
  }

  clientPort(): number {
    return this.client.remoteAddr.port;
  }

  serverLocalAddress(): string {
    return localAddressOf(this.server!);
  }

  endpoints(): ProxyEndpoints {
    const { remoteAddr, localAddr } = this.client;
    return {
      src: { address: remoteAddr.hostname, port: remoteAddr.port },
      dst: { address: localAddr.hostname, port: localAddr.port },
    };
  }

  /**
   * Relays both directions independently until both have ended, then closes
   * both sockets and finishes the session. A FIN from one side is passed on
   * as a half-close and the other direction keeps flowing; a failure in
   * either direction (a reset) tears both down at once.
   */
  async relay(server: ByteStream): Promise<void> {
    this.server = server;
    this.relaying = true;
    const session = this.session;
    await Promise.all([
      copyBytes(this.client, server, session, "->").then((end) => settle(session, "client", end)),
      copyBytes(server, this.client, session, "-<").then((end) => settle(session, "server", end)),
    ]);
    this.relaying = false;
    this.abort();
  }
}

// A direction that read a FIN from `side` passed it on; one whose read
// failed saw `side` reset, one whose write failed saw the other side reset.
function settle(session: Session, side: Side, end: CopyEnd): void {
  if (end === "fin") return session.ended(side);
  const reset = (end === "read-failed") === (side === "client") ? "client-reset" : "server-reset";
  session.abort(reset);
}

/** Closes a socket (or a listener) that may be closed already (by the peer's reset, or a timeout). */
export function closeQuietly(stream: { close(): void }): void {
  try {
    stream.close();
  } catch { /* closed already */ }
}
