import * as net from "node:net";
import type { Channel } from "../../core/model/channel.ts";
import type { Listener, TimedConnect } from "../../core/session/listener.ts";
import { type ByteStream, NodeSocketStream } from "./byte_stream.ts";

/** How outgoing connections are made, with balance's defaults explicit. */
export interface DialOptions {
  /** `-B`: bind outgoing connections to this local address. */
  sourceAddress?: string;
}

/**
 * One connect attempt: cancelled (its signal aborted, or its node socket
 * destroyed) when the listener's clock says `-t` has passed.
 */
class Attempt implements TimedConnect {
  expired = false;
  readonly abort = new AbortController();
  socket: net.Socket | undefined = undefined;

  timedOut(): void {
    this.expired = true;
    this.abort.abort();
    this.socket?.destroy();
  }
}

/**
 * Connects to a channel with TCP_NODELAY and keepalive on, or rejects on
 * refusal or once `listener`'s connect timeout has passed.
 *
 * @example
 * ```ts
 * const server = await dialChannel(channel, {}, listener);
 * ```
 */
export async function dialChannel(channel: Channel, options: DialOptions, listener: Listener): Promise<ByteStream> {
  const attempt = new Attempt();
  listener.watchConnect(attempt);
  try {
    return options.sourceAddress === undefined
      ? await dialDeno(channel, attempt)
      : await dialNodeFrom(channel, attempt, options.sourceAddress);
  } catch (err) {
    throw attempt.expired ? listener.connectTimeoutError() : err;
  } finally {
    listener.connectSettled(attempt);
  }
}

async function dialDeno(channel: Channel, attempt: Attempt): Promise<ByteStream> {
  const conn = await Deno.connect({ hostname: channel.address, port: channel.port, signal: attempt.abort.signal });
  conn.setNoDelay(true);
  conn.setKeepAlive(true);
  return conn;
}

// Deno.connect has no local address option; node:net has.
function dialNodeFrom(channel: Channel, attempt: Attempt, localAddress: string): Promise<ByteStream> {
  return new Promise((resolve, reject) => {
    const socket = attempt.socket = net.connect({
      host: channel.address,
      port: channel.port,
      localAddress,
      allowHalfOpen: true,
      noDelay: true,
      keepAlive: true,
    });
    socket.once("error", reject);
    // Destroyed by the timeout, which brings no error.
    socket.once("close", () => reject(new Error("closed before connecting")));
    socket.once("connect", () => {
      socket.removeAllListeners("error");
      socket.removeAllListeners("close");
      resolve(new NodeSocketStream(socket));
    });
  });
}
