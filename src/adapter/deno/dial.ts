import * as net from "node:net";
import type { Channel } from "../../core/model/channel.ts";
import { type ByteStream, NodeSocketStream } from "./byte_stream.ts";

/** How outgoing connections are made, with balance's defaults explicit. */
export interface DialOptions {
  /** `-t`, in milliseconds: a connect not done by then counts as failed. */
  timeoutMs: number;
  /** `-B`: bind outgoing connections to this local address. */
  sourceAddress?: string;
}

/**
 * Connects to a channel with TCP_NODELAY and keepalive on, or rejects on
 * refusal or after the connect timeout.
 *
 * @example
 * ```ts
 * const server = await dialChannel(channel, { timeoutMs: 5000 });
 * ```
 */
export function dialChannel(channel: Channel, options: DialOptions): Promise<ByteStream> {
  return options.sourceAddress === undefined
    ? dialDeno(channel, options.timeoutMs)
    : dialNodeFrom(channel, options.timeoutMs, options.sourceAddress);
}

async function dialDeno(channel: Channel, timeoutMs: number): Promise<ByteStream> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({
      hostname: channel.address,
      port: channel.port,
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === "TimeoutError") {
      throw new Error(`connect timed out after ${timeoutMs / 1000}s`);
    }
    throw err;
  }
  conn.setNoDelay(true);
  conn.setKeepAlive(true);
  return conn;
}

// Deno.connect has no local address option; node:net has.
function dialNodeFrom(channel: Channel, timeoutMs: number, localAddress: string): Promise<ByteStream> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({
      host: channel.address,
      port: channel.port,
      localAddress,
      allowHalfOpen: true,
      noDelay: true,
      keepAlive: true,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect timed out after ${timeoutMs / 1000}s`));
    }, timeoutMs);
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      resolve(new NodeSocketStream(socket));
    });
  });
}
