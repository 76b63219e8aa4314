import type { Balancer } from "../core/model/balancer.ts";
import type { ListenerOptions } from "../core/session/listener.ts";
import type { Probe } from "../core/health/health_checker.ts";
import type { ProbeOptions } from "./probe.ts";
import type { UdpSettings } from "../core/udp/relay.ts";
import type { Engine } from "./linux/engine.ts";

/**
 * What an adapter needs to run a balancer: what its sessions do
 * ({@link ListenerOptions}) and where to listen and dial from; all values
 * resolved, defaults applied, times in milliseconds.
 *
 * @example
 * ```ts
 * const options: ServeOptions = { hostname: "0.0.0.0", port: 80, connectTimeoutMs: 5000, idleTimeoutMs: 0, warn };
 * ```
 */
export interface ServeOptions extends ListenerOptions {
  /** Listen address (`0.0.0.0`, `::`, or `-b`). */
  hostname: string;
  port: number;
  /** `-B`: source address of outgoing connections. */
  sourceAddress?: string;
  /** Set SO_REUSEPORT: several workers listen on the port (Linux spreads clients over them). */
  reusePort?: boolean;
  /** `--udp`/`--udp-only`; absent, TCP only. */
  udp?: UdpSettings;
  /** `--engine native`, where it can run (checked at start); absent, the runtime's sockets serve TCP. */
  engine?: "native";
}

/**
 * A running listener.
 *
 * @example
 * ```ts
 * const server = await adapter.serve(balancer, options);
 * server.close(); await server.finished;
 * ```
 */
export interface Server {
  /** The address actually bound (port 0 resolved). */
  readonly port: number;
  /** Stops accepting; open connections go on. */
  close(): void;
  /** Resolves once the accept loop has ended: after `close`, no client is accepted any more. */
  readonly finished: Promise<void>;
  /**
   * Closes every open connection at once (the grace period is over), each
   * reported to `onConnectionEnd` as `shutdown`; resolves once they have
   * been. Without `onConnectionEnd` there is nothing to report and it does nothing.
   */
  endConnections(): Promise<void>;
  /**
   * The native engine's eventfd (`--engine native`): the thread that posts
   * this thread a message writes it, so that a loop waiting in epoll_wait
   * reads the message at once. Absent on the runtime's sockets.
   */
  readonly wakeFd?: number;
}

/**
 * One runtime's sockets. Each adapter is a thin translation of these calls.
 *
 * @example
 * ```ts
 * const adapter: Adapter = await import("./deno/mod.ts");
 * ```
 */
export interface Adapter {
  /** Listens and relays; throws an ExitError when it cannot listen. */
  serve(balancer: Balancer, options: ServeOptions): Promise<Server>;
  /** Receives datagrams (`options.udp`) and relays them through a DatagramRelay; throws an ExitError when it cannot. */
  serveDatagrams(balancer: Balancer, options: ServeOptions & { udp: UdpSettings }): Server | Promise<Server>;
  /** Whether datagram sockets in several threads can share a port (SO_REUSEPORT). */
  readonly datagramReusePort: boolean;
  /** The command that starts this same program again (for background mode). */
  selfCommand(): string[];
  /** Connects to the local syslog socket (`/dev/log`); throws when there is none. */
  openSyslogSocket(path: string): DatagramSender;
  /** The health check (`--check`) its options ask for. */
  makeProbe(options: ProbeOptions): Probe;
  /** `--engine native` bound with this runtime's FFI, for the calling thread; or why it cannot run here. */
  loadNativeEngine(): Engine | string;
}

/**
 * A connected local datagram socket; each `send` has reached the socket when
 * it returns (so lines logged just before exit arrive). `false`: dropped.
 *
 * @example
 * ```ts
 * const syslog = adapter.openSyslogSocket("/dev/log");
 * syslog.send("<30>Jan  5 09:03:07 balance[42]: started");
 * ```
 */
export interface DatagramSender {
  send(line: string): boolean;
  close(): void;
}
