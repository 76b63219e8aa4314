/**
 * `--ftp`: a control connection's session, which rewrites its data
 * addresses and opens the data listeners they name, and the sessions of the
 * data connections that follow it.
 *
 * @module
 */
import { Channel } from "../model/channel.ts";
import { formatHostPort } from "../model/balancer.ts";
import type { Direction } from "../observe/packet_dump.ts";
import type { TimedConnect } from "../session/listener.ts";
import { Session, type SessionLink } from "../session/session.ts";
import { type HostPort, plainAddress, sameHost } from "./addresses.ts";
import { FtpControl, type FtpHost } from "./control.ts";
import { type DataAccept, type DataPort, listenInRange } from "./data.ts";

/**
 * `--ftp` as resolved: the address `227` replies name instead of the one
 * the client connected to (`--ftp-address`, behind NAT), and the ports of
 * data listeners (`--ftp-data-ports`).
 *
 * @example
 * ```ts
 * const ftp: FtpSettings = { address: "203.0.113.5", ports: { lo: 50000, hi: 50099 } };
 * ```
 */
export interface FtpSettings {
  address?: string;
  ports?: { lo: number; hi: number };
}

/**
 * One FTP control connection. It is balanced, counted (`c`, `totalc`) and
 * logged as any client; in between, its {@link FtpControl} rewrites the
 * data addresses, and each one named opens a data listener for the one
 * connection it expects (the client's in passive mode, the channel's in
 * active mode), for at most `-t`. The data connections' bytes count as this
 * session's, and they end with it.
 *
 * @example
 * ```ts
 * const session = options.ftp ? new FtpSession(listener, link, address) : new Session(listener, link, address);
 * ```
 */
export class FtpSession<L extends SessionLink = SessionLink> extends Session<L> implements FtpHost {
  private readonly control = new FtpControl(this);
  private readonly waits = new Set<DataWait>();
  private readonly data = new Set<DataSession<SessionLink>>();

  /** Its commands and replies are read, and some rewritten: never moved unseen. */
  override get watchesBytes(): boolean {
    return true;
  }

  /** Rewritten as {@link FtpControl} says; `-p` shows what is written. */
  override relaying(direction: Direction, chunk: Uint8Array): Uint8Array {
    const out = direction === "->" ? this.control.fromClient(chunk) : this.control.fromServer(chunk);
    if (out.length > 0) return super.relaying(direction, out);
    this.active = true;
    return out;
  }

  get serverAddress(): string {
    return this.channel!.address;
  }

  // The client connects to the address it reached balance at, or the one
  // --ftp-address announces; balance connects on from its channel side,
  // where a server that checks (vsftpd) expects the control connection's
  // address.
  openPassive(server: HostPort): HostPort | undefined {
    const host = plainAddress(this.link.endpoints().dst.address);
    const port = this.openData(host, plainAddress(this.link.serverLocalAddress()), this.clientAddress, server, false);
    return port === undefined ? undefined : { address: this.listener.options.ftp?.address ?? host, port };
  }

  // The channel connects to balance's channel side; balance connects on to
  // the client from the address the client reached it at.
  openActive(client: HostPort): HostPort | undefined {
    const host = plainAddress(this.link.serverLocalAddress());
    const port = this.openData(
      host,
      plainAddress(this.link.endpoints().dst.address),
      this.channel!.address,
      client,
      true,
    );
    return port === undefined ? undefined : { address: host, port };
  }

  warn(message: string, key: string): void {
    this.listener.options.warn(message, key);
  }

  private openData(
    host: string,
    from: string,
    expect: string,
    target: HostPort,
    toClient: boolean,
  ): number | undefined {
    const { listener } = this;
    if (!listener.data || !listener.admit()) return undefined;
    const wait = new DataWait(this, expect, target, toClient);
    const port = listenInRange(listener.data, host, listener.options.ftp?.ports, from, wait.accept);
    if (!port) {
      this.warn(`FTP: no free data port on ${host} in --ftp-data-ports: data connection refused`, "FTP no data port");
      return undefined;
    }
    wait.port = port;
    this.waits.add(wait);
    listener.holdData(1);
    listener.watchConnect(wait);
    listener.options.trace?.(
      `${this.clientAddress}: FTP data listener ${formatHostPort(host, port.port)} for ${expect}, on to ${
        formatHostPort(target.address, target.port)
      }`,
    );
    return port.port;
  }

  /** A connection to `wait`'s listener from `peer`: its session, or undefined when `peer` may not connect there. */
  acceptData<M extends SessionLink>(wait: DataWait, link: M, peer: string): DataSession<M> | undefined {
    if (!this.waits.has(wait)) return undefined;
    if (!sameHost(peer, wait.expect)) {
      this.listener.balancer.refuseFtpData(peer, link.clientPort(), wait.expect);
      return undefined;
    }
    this.closeWait(wait);
    const target = new Channel(wait.target.address, wait.target.port);
    const session = new DataSession(this.listener, link, peer, this, target, wait.toClient);
    this.data.add(session);
    this.listener.holdData(1);
    return session;
  }

  /** `wait`'s listener is done: its connection came, `-t` passed, or the control connection ended. */
  closeWait(wait: DataWait): void {
    if (!this.waits.delete(wait)) return;
    wait.port.close();
    this.listener.connectSettled(wait);
    this.listener.holdData(-1);
  }

  /** `session` has finished. */
  dataEnded(session: DataSession<SessionLink>): void {
    if (this.data.delete(session)) this.listener.holdData(-1);
  }

  /** Ends the data listeners and connections with the control connection. */
  override finish(): void {
    super.finish();
    if (!this.isFinished) return;
    for (const wait of this.waits) this.closeWait(wait);
    for (const session of this.data) session.abort(this.reason);
  }
}

/** A data listener waiting for its one connection. */
class DataWait implements TimedConnect {
  port!: DataPort;

  constructor(
    readonly control: FtpSession,
    /** The only address that may connect: the client's (passive) or the channel's (active). */
    readonly expect: string,
    /** Where the connection goes on to. */
    readonly target: HostPort,
    /** Active mode: the connection accepted is the channel's, the one dialled the client's. */
    readonly toClient: boolean,
  ) {}

  readonly accept: DataAccept = (link, peer) => this.control.acceptData(this, link, peer);

  timedOut(): void {
    this.control.closeWait(this);
  }
}

/**
 * One FTP data connection: accepted on a data listener, connected to the
 * end its control connection's command or reply named, and relayed like a
 * client's. It is no client of the balancer: no channel is chosen, and
 * `c`, `totalc` and the log see only its control connection, whose bytes
 * (and channel's `sent`/`rcvd`) its bytes add to; `-p` shows them in the
 * control connection's directions.
 *
 * @example
 * ```ts
 * const session = new DataSession(listener, link, "10.0.0.7", control, new Channel("198.18.0.2", 50000), false);
 * ```
 */
export class DataSession<L extends SessionLink = SessionLink> extends Session<L> {
  constructor(
    listener: FtpSession["listener"],
    link: L,
    peer: string,
    private readonly control: FtpSession,
    private readonly target: Channel,
    /** Active mode: this side is the channel, and what it sends goes to the client. */
    private readonly toClient: boolean,
  ) {
    super(listener, link, peer);
  }

  // Admitted with its control connection.
  protected override admit(): void {}

  /** Connects to the end named; undefined when that fails (the connection is closed) or it was ended meanwhile. */
  override async connect<T>(
    dial: (channel: Channel, session: Session<L>) => Promise<T>,
    hangUp: (conn: T) => void,
  ): Promise<T | undefined> {
    this.connecting = true;
    let conn: T;
    try {
      conn = await dial(this.target, this);
    } catch (err) {
      this.connecting = false;
      this.listener.options.trace?.(
        `${this.clientAddress}: FTP data connection to ${
          formatHostPort(this.target.address, this.target.port)
        } failed: ${(err as Error).message}`,
      );
      if (this.finishAfterConnect) this.finish();
      else this.link.abort();
      return undefined;
    }
    this.connecting = false;
    if (this.finishAfterConnect) {
      hangUp(conn);
      this.finish();
      return undefined;
    }
    return conn;
  }

  /** No PROXY header: that goes on the control connection only. */
  override opening(early: Uint8Array | undefined): Uint8Array | undefined {
    return early && this.relaying("->", early);
  }

  override relaying(direction: Direction, chunk: Uint8Array): Uint8Array {
    this.active = true;
    // A transfer keeps its control connection from the idle timeout (-T).
    this.control.active = true;
    this.listener.options.dump?.(this.toClient ? (direction === "->" ? "-<" : "->") : direction, chunk);
    return chunk;
  }

  override countSent(n: number): void {
    if (this.toClient) this.control.countRcvd(n);
    else this.control.countSent(n);
  }

  override countRcvd(n: number): void {
    if (this.toClient) this.control.countSent(n);
    else this.control.countRcvd(n);
  }

  override finish(): void {
    if (this.finished) return;
    if (this.connecting) {
      this.finishAfterConnect = true;
      return;
    }
    this.finished = true;
    this.control.dataEnded(this);
    this.listener.options.trace?.(`${this.clientAddress}: FTP data connection closed`);
  }
}
