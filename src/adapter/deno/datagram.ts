/**
 * `--udp` under Deno: `Deno.listenDatagram` (behind `--unstable-net`) for the
 * listening socket and for each session's socket to its channel. Deno can
 * neither connect a datagram socket nor set SO_REUSEPORT on one: an ICMP
 * port unreachable is not seen (the session ends at `--udp-timeout`, and
 * `--check` finds the channel down), and with `-w` one thread serves UDP.
 * The core's {@link DatagramRelay} decides everything else.
 *
 * @module
 */
import { type Balancer, formatHostPort } from "../../core/model/balancer.ts";
import type { Channel } from "../../core/model/channel.ts";
import type { Session } from "../../core/session/session.ts";
import { type ChannelSocket, DatagramRelay, type UdpSettings } from "../../core/udp/relay.ts";
import type { UdpFlow } from "../../core/udp/flow.ts";
import { ExitError } from "../../core/util/exit_error.ts";
import { listenError } from "../../core/util/errors.ts";
import { EX_USAGE } from "../../core/util/sysexits.ts";
import type { ServeOptions, Server } from "../types.ts";

/** Deno's datagram sockets have no SO_REUSEPORT. */
export const datagramReusePort = false;

/**
 * Receives datagrams on `options.hostname:port` and relays each client's
 * through its session; ready at once (a Deno datagram socket is bound when
 * made). Throws an `ExitError` ({@link listenError}) when it cannot bind,
 * and one with exit 64 without `--unstable-net`.
 *
 * @example
 * ```ts
 * const server = serveDatagrams(balancer, { ...options, udp });
 * ```
 */
export function serveDatagrams(balancer: Balancer, options: ServeOptions & { udp: UdpSettings }): Server {
  if (!("listenDatagram" in Deno)) {
    throw new ExitError("--udp under Deno needs its --unstable-net flag (for datagram sockets)", EX_USAGE);
  }
  let socket: Deno.DatagramConn;
  try {
    socket = Deno.listenDatagram({ transport: "udp", hostname: options.hostname, port: options.port });
  } catch (err) {
    throw listenError(err, `${formatHostPort(options.hostname, options.port)} (UDP)`);
  }
  const port = (socket.addr as Deno.NetAddr).port;
  const from = options.sourceAddress;
  const relay = new DatagramRelay(
    balancer,
    options,
    options.udp,
    {
      send: (datagram, port, hostname) =>
        void socket.send(datagram, { transport: "udp", hostname, port }).catch(ignore),
    },
    (channel: Channel, session: Session<UdpFlow>) => Promise.resolve(openChannelSocket(channel, session.link, from)),
    { address: options.hostname, port },
  );
  const finished = receiveAll(socket, (datagram, addr) => relay.receive(datagram, addr.hostname, addr.port));
  let stopped!: () => void;
  const closed = new Promise<void>((resolve) => (stopped = resolve));
  return {
    port,
    finished: closed,
    close() {
      relay.stop();
      stopped();
    },
    async endConnections() {
      await relay.endAll();
      socket.close();
      await finished;
    },
  };
}

// Every datagram of `socket` to `take`, until it is closed.
async function receiveAll(socket: Deno.DatagramConn, take: (datagram: Uint8Array, from: Deno.NetAddr) => void) {
  try {
    for (;;) {
      const [datagram, from] = await socket.receive();
      take(datagram, from as Deno.NetAddr);
    }
  } catch {
    // Closed.
  }
}

// A session's own socket to its channel (from -B if given), of the channel's
// family; what arrives from anyone else is not the channel's answer.
function openChannelSocket(channel: Channel, flow: UdpFlow, from: string | undefined): ChannelSocket {
  const hostname = from ?? (channel.address.includes(":") ? "::" : "0.0.0.0");
  const socket = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
  const to: Deno.NetAddr = { transport: "udp", hostname: channel.address, port: channel.port };
  void receiveAll(socket, (datagram, addr) => {
    if (addr.port === to.port && sameAddress(addr.hostname, to.hostname)) flow.fromChannel(datagram);
  });
  return {
    send: (datagram) => void socket.send(datagram, to).catch(ignore),
    close: () => socket.close(),
  };
}

// An IPv4 channel may answer a `::` socket as `::ffff:a.b.c.d`.
function sameAddress(a: string, b: string): boolean {
  return a === b || a === `::ffff:${b}` || b === `::ffff:${a}`;
}

// A send that failed (the socket closed meanwhile, a full buffer) loses one
// datagram, as the network may.
function ignore(): void {}
