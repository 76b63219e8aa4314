/**
 * What every client of one listening socket shares: admission within the
 * descriptor budget (FTP data connections count too), the clients still sending their PROXY header and its
 * timeout, the idle timer, and the sessions a stop has to end.
 *
 * @module
 */
import type { Balancer } from "../model/balancer.ts";
import type { ClientGate } from "../access/gate.ts";
import type { SniRouting } from "../tls/sni_routes.ts";
import type { ConnectionRecord } from "../observe/connection_log.ts";
import { IdleTimer } from "./idle.ts";
import type { Direction } from "../observe/packet_dump.ts";
import { Throttle } from "../observe/throttle.ts";
import { TimerQueue } from "../util/timer_queue.ts";
import { errorText } from "../util/errors.ts";
import { Session, type SessionLink } from "./session.ts";
import { FtpSession, type FtpSettings } from "../ftp/sessions.ts";
import type { DataSockets } from "../ftp/data.ts";

/**
 * What a listener's sessions are to do, all values resolved, times in
 * milliseconds.
 *
 * @example
 * ```ts
 * const options: ListenerOptions = { connectTimeoutMs: 5000, idleTimeoutMs: 0, warn: console.warn };
 * ```
 */
export interface ListenerOptions {
  /** `-t`: a connect, and an `--accept-proxy` header, not done by then fails. */
  connectTimeoutMs: number;
  /** `-T`; 0 = no idle timeout. */
  idleTimeoutMs: number;
  /** `-p`: receives every relayed chunk; absent when not dumping. */
  dump?: (direction: Direction, chunk: Uint8Array) => void;
  /** `-d`: receives every decision; absent when not tracing. */
  trace?: (message: string) => void;
  /** `--proxy-protocol`: the PROXY header version written to channels first; absent, none. */
  proxyProtocol?: 1 | 2;
  /** `--accept-proxy`: every client must begin with a PROXY header, within `connectTimeoutMs`. */
  acceptProxy?: boolean;
  /** `--sni`: the routes by TLS server name; absent, nothing is read ahead of the connect. */
  sni?: SniRouting;
  /** `--allow`/`--deny`, `--proxy-from` and the per-client limits; absent, every client is let in. */
  gate?: ClientGate;
  /** `--ftp`: control connections whose data connections follow them; absent, bytes pass untouched. */
  ftp?: FtpSettings;
  /** Most proxied connections at once (descriptors allow); undefined = no limit. */
  maxConnections?: number;
  /**
   * Problems worth a log line even without `-d`. The log throttles repeats
   * by `key`, by default the message's text before its first colon.
   */
  warn: (message: string, key?: string) => void;
  /** `--log-connections`: told of every client once it has gone; absent, nothing is tracked for it. */
  onConnectionEnd?: (record: ConnectionRecord) => void;
}

/**
 * A connect attempt the listener gives up on once `-t` has passed: the
 * adapter cancels it in {@link timedOut} and fails it with
 * {@link Listener.connectTimeoutError}.
 *
 * @example
 * ```ts
 * class Attempt implements TimedConnect { timedOut() { this.abort.abort(); } }
 * ```
 */
export interface TimedConnect {
  timedOut(): void;
}

/** At most one "at the limit" warning per this interval. */
const LIMIT_REPORT_MS = 10_000;
/** How long {@link Listener.endAll} waits for the sessions it ended to finish. */
const END_WAIT_MS = 1000;

/**
 * The core's side of one listening socket. The adapter asks {@link admit}
 * before it takes a client on, {@link open}s a session for each, and calls
 * {@link endAll} when the grace period is over.
 *
 * @example
 * ```ts
 * const listener = new Listener(balancer, options, "turn-away");
 * if (listener.admit()) listener.open(pipe, socket.remoteAddress);
 * ```
 */
export class Listener {
  /** The `-T` timer every open session is watched by; absent without `-T`. */
  readonly idle: IdleTimer | undefined;
  /** Whether a session reads its client's port at once (a log, a trace or a PROXY header shows it). */
  readonly needsClientPort: boolean;
  /** Sessions a stop must end and report: kept only for the connection log. */
  private readonly live: Set<Session<SessionLink>> | undefined;
  /** Clients still sending their PROXY header: they hold descriptors too. */
  private awaiting = 0;
  /** `--ftp` data listeners and connections: they hold descriptors too. */
  private dataHeld = 0;
  /** Made by the first client inspected (`--accept-proxy`, `--sni`): none without them. */
  private inspections: TimerQueue<Session> | undefined = undefined;
  private readonly connectTimeouts = new TimerQueue<TimedConnect>((a) => a.timedOut(), 5, () => performance.now());
  private readonly atLimit = new Throttle(LIMIT_REPORT_MS);
  private readonly max: number;

  constructor(
    readonly balancer: Balancer,
    readonly options: ListenerOptions,
    /**
     * What a full listener does with new clients: leaves them in the
     * kernel's queue (`wait`: an adapter that accepts when it chooses) or
     * closes them at once (`turn-away`: one whose runtime accepts on its own).
     */
    private readonly whenFull: "wait" | "turn-away",
    /** The adapter's data listeners, for `--ftp`. */
    readonly data?: DataSockets,
    /** `udp`: the sessions are a datagram relay's (`udp/relay.ts`), logged as such. */
    readonly transport: "tcp" | "udp" = "tcp",
  ) {
    this.idle = options.idleTimeoutMs > 0 ? new IdleTimer(options.idleTimeoutMs) : undefined;
    this.needsClientPort = !!(options.onConnectionEnd || options.trace || options.acceptProxy);
    this.live = options.onConnectionEnd ? new Set() : undefined;
    this.max = options.maxConnections ?? Infinity;
  }

  /**
   * Whether one more client fits the descriptor budget. When it does not,
   * says so (at most once per 10 s): the adapter then leaves it waiting or
   * turns it away, as `whenFull` says.
   */
  admit(): boolean {
    if (this.balancer.openConnections() + this.awaiting + this.dataHeld < this.max) return true;
    if (this.atLimit.pass() !== undefined) {
      const action = this.whenFull === "wait" ? "new clients wait" : "turning new clients away";
      this.options.warn(`at the limit of ${this.max} connections: ${action}`);
    }
    return false;
  }

  /** A client was accepted on `link`: its session, tracked until it finishes. */
  open<L extends SessionLink>(link: L, clientAddress: string): Session<L> {
    const session = this.options.ftp
      ? new FtpSession(this, link, clientAddress)
      : new Session(this, link, clientAddress);
    this.live?.add(session);
    return session;
  }

  /**
   * `--ftp`: `n` more (or fewer) data listeners or connections hold
   * descriptors; each counts as a connection against the budget.
   */
  holdData(n: number): void {
    this.dataHeld += n;
  }

  /** `session` awaits its first bytes (a PROXY header, a ClientHello), for at most `-t`. */
  awaitInspection(session: Session): void {
    this.awaiting++;
    this.inspections ??= new TimerQueue((session) => session.inspectionTimedOut(), 5, () => performance.now());
    this.inspections.schedule(session, performance.now() + this.options.connectTimeoutMs);
  }

  /** `session` has its first bytes, was refused, or finished while awaiting them. */
  inspectionDone(session: Session): void {
    this.awaiting--;
    this.inspections!.cancel(session);
  }

  /**
   * Gives `attempt` until `-t` from now: one timer for every connect in
   * flight, not one each. The adapter calls {@link connectSettled} when it
   * succeeds or fails first.
   */
  watchConnect(attempt: TimedConnect): void {
    this.connectTimeouts.schedule(attempt, performance.now() + this.options.connectTimeoutMs);
  }

  /** `attempt` succeeded or failed before its time was up. */
  connectSettled(attempt: TimedConnect): void {
    this.connectTimeouts.cancel(attempt);
  }

  /** What a timed-out connect fails with, in the same words on every runtime. */
  connectTimeoutError(): Error {
    return new Error(`connect timed out after ${this.options.connectTimeoutMs / 1000}s`);
  }

  /**
   * The catch of every session's task: a failure no rule above covers is a
   * bug, and is said (throttled as one kind) rather than lost.
   */
  readonly unexpected = (err: unknown): void => {
    this.options.warn(`internal error in a connection: ${errorText(err)}`, "internal error");
  };

  /** `session` finished: nothing here tracks it any more. */
  forget(session: Session): void {
    this.idle?.delete(session);
    this.live?.delete(session);
  }

  /**
   * The grace period is over: ends every open session as `shutdown`, and
   * resolves once they have reported their end (at most a second). Without a
   * connection log nothing needs reporting, and nothing is done: the process
   * is about to exit.
   */
  async endAll(): Promise<void> {
    const live = this.live;
    if (!live) return;
    for (const session of live) session.abort("shutdown");
    const deadline = Date.now() + END_WAIT_MS;
    while (live.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  }
}
