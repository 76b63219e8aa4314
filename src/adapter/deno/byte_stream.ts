import type { Socket } from "node:net";

/**
 * The part of a TCP connection the relay uses. `Deno.TcpConn` is one as it
 * is; {@link NodeSocketStream} makes a `node:net` socket one (for `-B`,
 * which `Deno.connect` cannot do).
 */
export interface ByteStream {
  /** Fills `p` with what has arrived; `null` at end of stream (peer's FIN). */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p`, resolving to how much; `p` may be reused afterwards. */
  write(p: Uint8Array): Promise<number>;
  /** Sends FIN, keeping the read side open. */
  closeWrite(): Promise<void>;
  close(): void;
}

/**
 * A `node:net` socket seen as a {@link ByteStream}: paused-mode reads, and
 * writes that resolve only once node has handed the bytes to the kernel, so
 * the relay's buffer can be reused without a copy.
 *
 * @example
 * ```ts
 * const socket = net.connect({ host, port, localAddress, allowHalfOpen: true });
 * const stream = new NodeSocketStream(socket);
 * ```
 */
export class NodeSocketStream implements ByteStream {
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(private readonly socket: Socket) {
    const wake = () => {
      const w = this.#wake;
      this.#wake = undefined;
      w?.();
    };
    socket.on("readable", wake);
    socket.on("end", () => {
      this.#ended = true;
      wake();
    });
    socket.on("error", (err) => {
      this.#error = err;
      wake();
    });
    socket.on("close", () => {
      this.#ended = true;
      wake();
    });
  }

  async read(p: Uint8Array): Promise<number | null> {
    for (;;) {
      const chunk: Uint8Array | null = this.socket.read();
      if (chunk !== null) {
        const n = Math.min(chunk.length, p.length);
        p.set(chunk.subarray(0, n));
        if (n < chunk.length) this.socket.unshift(chunk.subarray(n));
        return n;
      }
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  write(p: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      this.socket.write(p, (err) => (err ? reject(err) : resolve(p.length)));
    });
  }

  closeWrite(): Promise<void> {
    return new Promise((resolve) => this.socket.end(resolve));
  }

  close(): void {
    this.socket.destroy();
  }

  /** The local address the socket is bound to. */
  get localAddress(): string {
    return this.socket.localAddress ?? "";
  }
}

/**
 * The local address of a connection to a channel, whichever kind it is.
 *
 * @example
 * ```ts
 * localAddressOf(await Deno.connect({ hostname: "127.0.0.1", port: 80 })); // "127.0.0.1"
 * ```
 */
export function localAddressOf(stream: ByteStream): string {
  return stream instanceof NodeSocketStream ? stream.localAddress : (stream as Deno.TcpConn).localAddr.hostname;
}
