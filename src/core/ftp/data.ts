/**
 * What an adapter lends `--ftp` for data connections: a plain listening
 * socket on a given address and port, whose connections the core admits or
 * refuses one by one and then runs as any client's (dial, relay).
 *
 * @module
 */
import type { Session, SessionLink } from "../session/session.ts";

/**
 * The core's verdict on a connection a data listener accepted from `peer`:
 * the session to connect and relay it as, or undefined to close it.
 *
 * @example
 * ```ts
 * const accept: DataAccept = (link, peer) => peer === "10.0.0.7" ? wait.open(link, peer) : undefined;
 * ```
 */
export type DataAccept = <L extends SessionLink>(link: L, peer: string) => Session<L> | undefined;

/**
 * A data listener.
 *
 * @example
 * ```ts
 * const port: DataPort = sockets.listen("198.18.0.1", 0, undefined, accept);
 * port.close();
 * ```
 */
export interface DataPort {
  /** The port bound (the one asked for, or the OS's choice for 0). */
  readonly port: number;
  /** Stops listening; connections accepted go on. */
  close(): void;
}

/**
 * An adapter's listening primitive for data connections.
 *
 * @example
 * ```ts
 * const port = sockets.listen("198.18.0.1", 50000, "198.18.1.1", accept);
 * ```
 */
export interface DataSockets {
  /**
   * Listens on `host`:`port` (0: the OS chooses), without SO_REUSEPORT, so
   * that the connection comes to this thread. Every connection accepted is
   * offered to `accept`: a session it returns is dialled (from `from`, when
   * given) and relayed as a client's; otherwise the connection is closed.
   * Throws when it cannot listen there (the port is taken).
   */
  listen(host: string, port: number, from: string | undefined, accept: DataAccept): DataPort;
}

/**
 * `--ftp-data-ports LO-HI`: the ports data listeners may use.
 *
 * @example
 * ```ts
 * const range: PortRange = { lo: 50000, hi: 50099 };
 * ```
 */
export interface PortRange {
  lo: number;
  hi: number;
}

/**
 * A data listener on `host`, on a free port of `range` (tried from a random
 * one on, each once) or the OS's choice without a range; undefined when
 * every port of the range is taken.
 *
 * @example
 * ```ts
 * const port = listenInRange(sockets, "198.18.0.1", { lo: 50000, hi: 50099 }, undefined, accept);
 * ```
 */
export function listenInRange(
  sockets: DataSockets,
  host: string,
  range: PortRange | undefined,
  from: string | undefined,
  accept: DataAccept,
): DataPort | undefined {
  if (!range) return sockets.listen(host, 0, from, accept);
  const size = range.hi - range.lo + 1;
  // A random start spreads concurrent transfers (and threads) over the range.
  const start = Math.floor(Math.random() * size);
  for (let i = 0; i < size; i++) {
    try {
      return sockets.listen(host, range.lo + (start + i) % size, from, accept);
    } catch { /* taken: the next one */ }
  }
  return undefined;
}
