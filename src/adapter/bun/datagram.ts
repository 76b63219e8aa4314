/**
 * `--udp` under Bun: `Bun.udpSocket` for the listening socket and for each
 * session's connected socket to its channel (whose ICMP port unreachable
 * Bun reports as an `ECONNREFUSED` error). The core's {@link DatagramRelay}
 * decides everything else.
 *
 * @module
 */
/// <reference types="bun-types" />
import type { udp } from "bun";
import { type Balancer, formatHostPort } from "../../core/model/balancer.ts";
import type { Channel } from "../../core/model/channel.ts";
import type { Session } from "../../core/session/session.ts";
import { type ChannelSocket, DatagramRelay, type UdpSettings } from "../../core/udp/relay.ts";
import type { UdpFlow } from "../../core/udp/flow.ts";
import { errorText, listenError } from "../../core/util/errors.ts";
import type { ServeOptions, Server } from "../types.ts";

/**
 * Bun.udpSocket's listen flags (its `node:dgram` passes them; the published
 * types do not show them): SO_REUSEPORT, and fail rather than bind without it.
 */
const LISTEN_REUSE_PORT = 4;
const LISTEN_DISALLOW_REUSE_PORT_FAILURE = 32;

/** Bun gives SO_REUSEPORT to datagram sockets (see {@link LISTEN_REUSE_PORT}). */
export const datagramReusePort = true;

/**
 * Receives datagrams on `options.hostname:port` and relays each client's
 * through its session. Throws an `ExitError` ({@link listenError}) when it
 * cannot bind.
 *
 * @example
 * ```ts
 * const server = await serveDatagrams(balancer, { ...options, udp });
 * ```
 */
export async function serveDatagrams(
  balancer: Balancer,
  options: ServeOptions & { udp: UdpSettings },
): Promise<Server> {
  // Made once the socket is bound (it needs its port); nothing arrives before.
  const bound: { relay?: DatagramRelay } = {};
  let socket: udp.Socket<"uint8array">;
  try {
    socket = await Bun.udpSocket({
      hostname: options.hostname,
      port: options.port,
      binaryType: "uint8array",
      ...(options.reusePort ? { flags: LISTEN_REUSE_PORT | LISTEN_DISALLOW_REUSE_PORT_FAILURE } : {}),
      socket: {
        data(_socket, datagram, port, address) {
          bound.relay?.receive(datagram, address, port);
        },
        // An ICMP error about a client (gone, unreachable): nothing to do.
        error() {},
      },
    });
  } catch (err) {
    throw listenError(err, `${formatHostPort(options.hostname, options.port)} (UDP)`);
  }
  const from = options.sourceAddress;
  const dial = (channel: Channel, session: Session<UdpFlow>) => openChannelSocket(channel, session.link, from);
  const relay = bound.relay = new DatagramRelay(
    balancer,
    options,
    options.udp,
    { send: (datagram, port, address) => socket.send(datagram, port, address) },
    dial,
    { address: options.hostname, port: socket.port },
  );
  let stop!: () => void;
  const finished = new Promise<void>((resolve) => (stop = resolve));
  return {
    port: socket.port,
    finished,
    close() {
      relay.stop();
      stop();
    },
    async endConnections() {
      await relay.endAll();
      socket.close();
    },
  };
}

// A session's own socket, connected to its channel, from -B if given.
async function openChannelSocket(channel: Channel, flow: UdpFlow, from: string | undefined): Promise<ChannelSocket> {
  const socket = await Bun.udpSocket({
    ...(from ? { hostname: from } : {}),
    binaryType: "uint8array",
    connect: { hostname: channel.address, port: channel.port },
    socket: {
      data(_socket, datagram) {
        flow.fromChannel(datagram);
      },
      // Bun passes the error alone, though its types say (socket, error).
      error(...args: unknown[]) {
        flow.refused(errorText(args.at(-1)));
      },
    },
  });
  return { send: (datagram) => void socket.send(datagram), close: () => socket.close() };
}
