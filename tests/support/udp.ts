/**
 * UDP on loopback for the tests: backends that record what they receive and
 * answer, and a client exchange from a fresh source port (a new session).
 *
 * @module
 */
import * as dgram from "node:dgram";
import { onTimeout } from "./test.ts";

/** One datagram a {@link UdpBackend} received. */
export interface Received {
  data: Uint8Array;
  address: string;
  port: number;
}

/** A UDP server on loopback. */
export interface UdpBackend {
  name: string;
  host: string;
  port: number;
  /** Every datagram received, in order. */
  received: Received[];
  close(): Promise<void>;
}

/**
 * How a {@link UdpBackend} answers: `echo` sends each datagram back as it
 * is, `name` sends `NAME:` and the datagram, `none` answers nothing.
 */
export type UdpReply = "echo" | "name" | "none";

/**
 * Starts a UDP backend on `host` and a port the system picks.
 *
 * @example
 * ```ts
 * const a = await startUdpBackend("a");
 * await udpExchange(lbPort, "q"); // "a:q"
 * ```
 */
export function startUdpBackend(name: string, reply: UdpReply = "name", host = "127.0.0.1"): Promise<UdpBackend> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
    const backend: UdpBackend = {
      name,
      host,
      port: 0,
      received: [],
      close: () => new Promise((r) => socket.close(() => r())),
    };
    onTimeout(() => socket.close());
    socket.once("error", reject);
    socket.on("message", (data: Uint8Array, from: dgram.RemoteInfo) => {
      backend.received.push({ data: new Uint8Array(data), address: from.address, port: from.port });
      if (reply === "none") return;
      const answer = reply === "echo" ? data : Buffer.concat([Buffer.from(`${name}:`), data]);
      socket.send(answer, from.port, from.address);
    });
    socket.bind(0, host, () => {
      backend.port = socket.address().port;
      resolve(backend);
    });
  });
}

/** Options of {@link udpExchange}. */
export interface UdpExchangeOptions {
  /** Where balance listens (default 127.0.0.1). */
  host?: string;
  /** The client's source address (default: the system's choice). */
  localAddress?: string;
  /** How long to wait for the answer (default 2 s). */
  timeoutMs?: number;
}

/**
 * Sends `data` from a new socket (a new source port: a new session) to
 * `port`, and resolves to the first datagram back, or undefined when none
 * came within the timeout.
 *
 * @example
 * ```ts
 * const answer = await udpExchange(port, "q", { localAddress: "127.0.0.9" });
 * new TextDecoder().decode(answer); // "a:q"
 * ```
 */
export function udpExchange(
  port: number,
  data: string | Uint8Array,
  { host = "127.0.0.1", localAddress, timeoutMs = 2000 }: UdpExchangeOptions = {},
): Promise<Uint8Array | undefined> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
    const done = (answer: Uint8Array | undefined) => {
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.close();
      resolve(answer);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    socket.once("error", (err) => {
      clearTimeout(timer);
      socket.close();
      reject(err);
    });
    socket.once("message", (answer: Uint8Array) => done(new Uint8Array(answer)));
    socket.bind({ address: localAddress }, () => socket.send(data, port, host));
  });
}

/**
 * {@link udpExchange}, the answer as text (undefined when none came).
 *
 * @example
 * ```ts
 * await udpText(port, "q"); // "a:q"
 * ```
 */
export async function udpText(port: number, data: string, options?: UdpExchangeOptions): Promise<string | undefined> {
  const answer = await udpExchange(port, data, options);
  return answer && new TextDecoder().decode(answer);
}
