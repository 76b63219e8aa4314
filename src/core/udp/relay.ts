/**
 * UDP through the balancer (`--udp`, `--udp-only`): the core's side of one
 * listening datagram socket. A client address and port is a session, tied to
 * one channel through a socket of its own; every session is a
 * {@link Session} of the relay's own {@link Listener}, so selection, `c`,
 * `maxc`, health, the access rules, the idle timer (`--udp-timeout`), `-p`,
 * the trace and the connection log are the TCP ones. The adapter receives
 * and sends datagrams, and opens a session's socket ({@link DatagramDial}).
 *
 * @module
 */
import type { Balancer } from "../model/balancer.ts";
import type { Channel } from "../model/channel.ts";
import type { DropReason } from "../model/state.ts";
import type { ProxyEndpoint } from "../proxy/proxy_protocol.ts";
import { Listener, type ListenerOptions } from "../session/listener.ts";
import type { Session } from "../session/session.ts";
import { UdpFlow } from "./flow.ts";

/**
 * `--udp`/`--udp-only` and their options, resolved; times in milliseconds.
 *
 * @example
 * ```ts
 * const udp: UdpSettings = { only: false, timeoutMs: 30_000, responses: 1, maxSessions: Infinity };
 * ```
 */
export interface UdpSettings {
  /** `--udp-only`: no TCP listener. */
  only: boolean;
  /** `--udp-timeout`: a session no datagram crossed for this long ends. */
  timeoutMs: number;
  /** `--udp-responses`: a session ends once its channel sent this many datagrams for each of the client's; 0 = never. */
  responses: number;
  /** Most sessions at once, over every thread: `--udp-max-sessions` within the descriptors (one each). */
  maxSessions: number;
}

/**
 * The largest datagram relayed: the most an IPv4 UDP datagram can carry
 * (65,535 less the IP and UDP headers).
 *
 * @example
 * ```ts
 * if (datagram.length > MAX_DATAGRAM) drop("too-large");
 * ```
 */
export const MAX_DATAGRAM = 65_507;

/**
 * The listening socket, as the relay answers clients through it.
 *
 * @example
 * ```ts
 * const clients: ClientSocket = { send: (d, port, address) => socket.send(d, port, address) };
 * ```
 */
export interface ClientSocket {
  send(datagram: Uint8Array, port: number, address: string): void;
}

/**
 * A session's socket to its channel: connected where the runtime can
 * connect one, so that an ICMP port unreachable comes back as an error.
 *
 * @example
 * ```ts
 * const socket: ChannelSocket = { send: (d) => s.send(d), close: () => s.close() };
 * ```
 */
export interface ChannelSocket {
  send(datagram: Uint8Array): void;
  close(): void;
}

/**
 * Opens the socket of `session` to `channel` (`-B` is the adapter's). The
 * adapter hands every datagram that comes back on it to the session's flow
 * ({@link UdpFlow.fromChannel}), and an ICMP refusal to
 * {@link UdpFlow.refused}.
 *
 * @example
 * ```ts
 * const dial: DatagramDial = async (channel, { link: flow }) => openSocket(channel, flow);
 * ```
 */
export type DatagramDial = (channel: Channel, session: Session<UdpFlow>) => Promise<ChannelSocket>;

/**
 * The core's side of one datagram socket: finds or opens the session of each
 * client datagram, within `--udp-max-sessions` and the descriptor budget, and
 * counts what it drops.
 *
 * @example
 * ```ts
 * const relay = new DatagramRelay(balancer, options, udp, clients, dial, { address: "0.0.0.0", port: 53 });
 * socket.onDatagram = (datagram, address, port) => relay.receive(datagram, address, port);
 * ```
 */
export class DatagramRelay {
  /** The sessions' listener: its idle timer is `--udp-timeout`. */
  readonly listener: Listener;
  private readonly flows = new Map<string, UdpFlow>();
  private stopped = false;

  constructor(
    readonly balancer: Balancer,
    options: ListenerOptions,
    readonly udp: UdpSettings,
    readonly clients: ClientSocket,
    readonly dial: DatagramDial,
    /** The address and port clients send to: a PROXY header's destination. */
    readonly local: ProxyEndpoint,
  ) {
    // A datagram has no header of its own to accept, no ClientHello to
    // route by and no FTP command to follow: those are the TCP listener's.
    this.listener = new Listener(
      balancer,
      { ...options, idleTimeoutMs: udp.timeoutMs, acceptProxy: false, sni: undefined, ftp: undefined },
      "turn-away",
      undefined,
      "udp",
    );
  }

  /** Sessions open now on this socket. */
  get sessions(): number {
    return this.flows.size;
  }

  /**
   * A client's datagram: relayed on its session, opened now if it has none
   * and the relay has not {@link stop}ped.
   */
  receive(datagram: Uint8Array, address: string, port: number): void {
    const key = `${address} ${port}`;
    const flow = this.flows.get(key) ?? (this.stopped ? undefined : this.open(key, address, port));
    flow?.fromClient(datagram);
  }

  /**
   * A stop: no new session is opened, as a TCP listener accepts no new
   * client; open ones go on through the grace period, since their replies
   * leave through the same socket.
   */
  stop(): void {
    this.stopped = true;
  }

  /** Counts `n` datagrams dropped for `reason`. */
  drop(reason: DropReason, n = 1): void {
    this.balancer.state.countUdpDropped(reason, n);
  }

  /** `flow` has ended: its client's next datagram opens a new session. */
  forget(flow: UdpFlow): void {
    this.flows.delete(flow.key);
    this.balancer.state.countUdpSession(false);
  }

  /** Ends every session now (the grace period is over), each reported as `shutdown`. */
  endAll(): Promise<void> {
    for (const flow of this.flows.values()) flow.session.abort("shutdown");
    return this.listener.endAll();
  }

  private open(key: string, address: string, port: number): UdpFlow | undefined {
    // Every thread's sessions count: the cap is the instance's, as the descriptors are.
    if (this.balancer.state.udpSessions >= this.udp.maxSessions) {
      this.drop("over-cap");
      return undefined;
    }
    const flow = new UdpFlow(this, key, address, port);
    this.flows.set(key, flow);
    this.balancer.state.countUdpSession(true);
    flow.session = this.listener.open(flow, address);
    flow.connect().catch(this.listener.unexpected);
    return flow;
  }
}
