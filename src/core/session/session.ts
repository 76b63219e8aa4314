/**
 * One client connection's life, decided once for every adapter: the PROXY
 * header it accepts, the channel it is connected to, the header it sends, the
 * bytes it moves, how it ended, and the one report of its end.
 *
 * @module
 */
import type { Channel } from "../model/channel.ts";
import { formatHostPort } from "../model/balancer.ts";
import type { ConnectionRecord, EndReason } from "../observe/connection_log.ts";
import type { Idleable } from "./idle.ts";
import type { Direction } from "../observe/packet_dump.ts";
import { encodeProxyHeader, type ProxyHeader } from "../proxy/proxy_protocol.ts";
import { ClientHelloReader, type HelloRead } from "../tls/client_hello.ts";
import {
  describeProxied,
  proxiedEndpoints,
  type ProxyEndpoints,
  ProxyHeaderReader,
  proxyHeaderTimedOut,
} from "../proxy/proxy_header_reader.ts";
import type { Listener } from "./listener.ts";
import { type ClientGate, UNTRACKED } from "../access/gate.ts";
import { concatBytes } from "../util/bytes.ts";

/**
 * What an adapter gives a session: its sockets, as far as the session has to
 * reach them. Adapters implement it on the object they keep per connection
 * anyway, so a session costs no closure.
 *
 * @example
 * ```ts
 * class Pipe implements SessionLink {
 *   abort() { this.client.terminate(); this.server?.terminate(); this.session.finish(); }
 *   clientPort() { return this.client.remotePort; }
 *   endpoints() { return { src: peerOf(this.client), dst: localOf(this.client) }; }
 *   serverLocalAddress() { return this.server!.localAddress; }
 * }
 * ```
 */
export interface SessionLink {
  /**
   * Closes both sockets at once. The adapter calls {@link Session.finish}
   * once they are closed: at once, or when its relay has wound down.
   */
  abort(): void;
  /** The client's port: a system call on some runtimes, so asked only when something shows it. */
  clientPort(): number;
  /** The client and the address it connected to, as the client's socket has them. */
  endpoints(): ProxyEndpoints;
  /** balance's own address on its connection to the channel (asked only once it is connected, by `--ftp`). */
  serverLocalAddress(): string;
}

/**
 * Where an `--accept-proxy` client is with its header: `"more"` (keep
 * reading), `"refused"` (the session is being torn down), or the header is in
 * and these are the client's bytes that came after it (maybe none).
 *
 * @example
 * ```ts
 * const step: HeaderStep = session.inspect(chunk);
 * if (step instanceof Uint8Array) holdEarly(step);
 * ```
 */
export type HeaderStep = "more" | "refused" | Uint8Array;

/** Which socket of a session something happened on. */
export type Side = "client" | "server";

/**
 * One client connection, from its accept to its end. The adapter accepts,
 * dials and moves bytes, and tells the session what happened; the session
 * decides everything else, in one place for every runtime:
 *
 * - who may connect (`--allow`/`--deny`, `--proxy-from`, the per-client
 *   limits): decided as soon as the client is known, before any read;
 * - the first bytes it inspects: the PROXY header (`--accept-proxy`), then
 *   the TLS ClientHello (`--sni`, which picks the service); refusal, one
 *   timeout for both, and the front balancer's bare connect check, which is
 *   neither counted nor logged;
 * - the channel: {@link connect}, including a client that leaves meanwhile
 *   (the connection is made, then closed, and reported with its channel);
 * - the PROXY header it sends (`--proxy-protocol`);
 * - `-p` (a chunk is dumped as it is taken from its source, before it is
 *   written) and the byte counts (as the destination takes them);
 * - the end reason: whatever tore the connection down, else the side whose
 *   FIN came first;
 * - {@link finish}: released, traced and recorded exactly once.
 *
 * @example
 * ```ts
 * const session = listener.open(pipe, client.remoteAddress);
 * const server = await session.connect(dial, hangUp);
 * if (server) relay(session, client, server);
 * ```
 */
export class Session<L extends SessionLink = SessionLink> implements Idleable {
  /** Set on every chunk, for the idle timer: cheaper than reading a clock. */
  active = false;
  /** The client as balance names it: the peer, or the one a PROXY header named (`--accept-proxy`). */
  clientAddress: string;
  /** Its port: 0 unless a log, a trace or `--accept-proxy` needs it. */
  clientPort = 0;
  /** The channel connected to; undefined until then, or when none was. */
  channel: Channel | undefined = undefined;
  /** Milliseconds until connected, failed attempts included. */
  connectMs = 0;
  /** Client bytes the channel has taken. */
  sent = 0;
  /** Channel bytes the client has taken. */
  rcvd = 0;
  /** The endpoints a received PROXY header named. */
  proxied: ProxyEndpoints | undefined = undefined;
  /** The client's place in the access gate's table while connected; see {@link ClientGate.admit}. */
  private clientSlot = UNTRACKED;
  /** `performance.now()` at accept: read only for the connection log. */
  readonly accepted: number;
  private fin: EndReason | undefined = undefined;
  private torn: EndReason | undefined = undefined;
  private headerReader: ProxyHeaderReader | undefined = undefined;
  /** `--sni`: the ClientHello being read, then where it sent the client; absent without `--sni`. */
  private hello: { reader?: ClientHelloReader; service: string; serverName: string | undefined } | undefined =
    undefined;
  /** PROXY header bytes the channel has still to take: not the client's, so not counted. */
  private headerUnsent = 0;
  protected connecting = false;
  /** The adapter finished while a connect was in flight: finish once it is settled. */
  protected finishAfterConnect = false;
  /** A bare connect that sent nothing to an `--accept-proxy` listener: no client at all. */
  private probe = false;
  protected finished = false;

  constructor(readonly listener: Listener, readonly link: L, clientAddress: string) {
    this.clientAddress = clientAddress;
    if (listener.needsClientPort) this.clientPort = link.clientPort();
    this.accepted = listener.options.onConnectionEnd ? performance.now() : 0;
    this.admit();
  }

  /**
   * Who may connect, and what is read first: decided at accept. A subclass
   * whose connections were admitted otherwise (an FTP data connection, with
   * its control connection) has nothing to decide here.
   */
  protected admit(): void {
    const { listener, clientAddress } = this;
    const { options } = listener;
    options.trace?.(`accepted ${formatHostPort(clientAddress, this.clientPort)}`);
    if (options.acceptProxy) {
      // A peer --proxy-from does not name may not even send a header: refused
      // at its connect, which the adapter makes at once as for any client.
      if (options.gate && !options.gate.peerAllowed(clientAddress)) {
        this.torn = "denied";
        return;
      }
      this.headerReader = new ProxyHeaderReader();
    } else if (options.gate?.active) {
      // The client is known now: the rules and limits come before any read.
      this.admitClient(options.gate);
      if (this.torn !== undefined) return;
    }
    if (options.sni) this.hello = { reader: new ClientHelloReader(), service: "", serverName: undefined };
    if (this.inspecting) listener.awaitInspection(this);
  }

  /**
   * The client's first bytes are still being read: its PROXY header
   * (`--accept-proxy`), then its TLS ClientHello (`--sni`). Until they are
   * in, the adapter hands every chunk to {@link inspect}.
   */
  get inspecting(): boolean {
    return this.headerReader !== undefined || this.hello?.reader !== undefined;
  }

  /** How the connection ended (once it has): what tore it down, else whose FIN came first. */
  get reason(): EndReason {
    return this.torn ?? this.fin ?? "client-closed";
  }

  /** Whether {@link finish} has run: nothing is reported any more. */
  get isFinished(): boolean {
    return this.finished;
  }

  /**
   * The client's next bytes while {@link inspecting}. Once its PROXY header
   * is in, the client is known by the address it names; once its ClientHello
   * is, the session knows its service. The bytes returned go to the channel
   * first: those after the header, the ClientHello's among them.
   */
  inspect(chunk: Uint8Array): HeaderStep {
    if (this.headerReader) {
      const read = this.headerReader.push(chunk);
      if (read.kind === "incomplete") return "more";
      if (read.kind === "error") {
        this.refuse(read.reason);
        return "refused";
      }
      this.headerReader = undefined;
      this.takeProxied(read.header);
      const gate = this.listener.options.gate;
      if (gate?.active) {
        this.admitClient(gate);
        if (this.torn !== undefined) {
          this.stopInspecting();
          this.link.abort();
          return "refused";
        }
      }
      if (!this.hello) {
        this.stopInspecting();
        return read.rest;
      }
      if (read.rest.length === 0) return "more";
      chunk = read.rest;
    }
    return this.routeBy(this.hello!.reader!.push(chunk));
  }

  /**
   * The client ended (FIN or reset) before its first bytes did. Having sent
   * nothing it was a front balancer's connect check: not refused, not
   * counted, not logged.
   */
  inspectionCut(): void {
    const hello = this.hello?.reader;
    if (this.headerReader) {
      const ended = this.headerReader.ended();
      if (ended.kind === "error") return this.refuse(ended.reason);
    } else if (hello && hello.buffered().length > 0) {
      const ended = hello.ended();
      return this.refuseHello(ended.kind === "error" ? ended.reason : "closed before the ClientHello was read");
    }
    this.stopInspecting();
    this.probe = true;
    this.link.abort();
  }

  /** The listener's timer: no whole header or ClientHello within `-t`. */
  inspectionTimedOut(): void {
    const late = `none within ${this.listener.options.connectTimeoutMs / 1000}s`;
    if (this.headerReader) this.refuse(proxyHeaderTimedOut(this.listener.options.connectTimeoutMs).reason);
    else if (this.hello?.reader) this.refuseHello(`no whole ClientHello: ${late}`);
  }

  private takeProxied(header: ProxyHeader): void {
    const peer = { address: this.clientAddress, port: this.clientPort };
    this.proxied = proxiedEndpoints(header, () => this.link.endpoints());
    this.listener.options.trace?.(describeProxied(peer, header, this.proxied));
    this.clientAddress = this.proxied.src.address;
    this.clientPort = this.proxied.src.port;
  }

  // `--sni`: the service the ClientHello (or its absence) sends the client
  // to, once the reader has decided; the bytes read go to its channel first.
  private routeBy(read: HelloRead): HeaderStep {
    if (read.kind === "more") return "more";
    if (read.kind === "error") {
      this.refuseHello(read.reason);
      return "refused";
    }
    const hello = this.hello!;
    const { table, defaultService } = this.listener.options.sni!;
    const serverName = read.kind === "hello" ? read.serverName : undefined;
    const route = serverName === undefined ? undefined : table.route(serverName);
    hello.service = route?.service ?? defaultService;
    hello.serverName = serverName;
    this.listener.options.trace?.(
      `${this.clientAddress}: ${
        read.kind === "not-tls" ? "not TLS" : serverName === undefined ? "no server name" : `server name ${serverName}`
      }: ${route ? `--sni ${route.pattern}=@${route.service}` : "the default"} service${
        hello.service ? ` @${hello.service}` : ""
      }`,
    );
    const early = hello.reader!.buffered();
    hello.reader = undefined;
    this.stopInspecting();
    return early;
  }

  private refuseHello(reason: string): void {
    this.stopInspecting();
    this.listener.balancer.refuseClientHello(this.clientAddress, this.clientPort || this.link.clientPort(), reason);
    this.abort("sni-refused");
  }

  // The rules and limits, on the client as balance knows it: at accept, or
  // as soon as its PROXY header names it; before any ClientHello is read
  // and any channel chosen.
  private admitClient(gate: ClientGate): void {
    const slot = gate.admit(this.clientAddress);
    if (typeof slot === "number") this.clientSlot = slot;
    else this.torn = slot;
  }

  private refuse(reason: string): void {
    this.stopInspecting();
    this.listener.balancer.refuseProxyHeader(this.clientAddress, this.clientPort, reason);
    this.abort("proxy-refused");
  }

  private stopInspecting(): void {
    this.headerReader = undefined;
    if (this.hello) this.hello.reader = undefined;
    this.listener.inspectionDone(this);
  }

  /**
   * Connects to the channel the balancer picks (`dial` makes one attempt).
   * Resolves to the connection, or undefined when there is nothing to relay:
   * no channel took the client (the session is torn down), or the client
   * left meanwhile (`hangUp` closes the connection just made, and the session
   * finishes with its channel).
   */
  async connect<T>(
    dial: (channel: Channel, session: Session<L>) => Promise<T>,
    hangUp: (conn: T) => void,
  ): Promise<T | undefined> {
    if (this.torn !== undefined) {
      this.link.abort();
      return undefined;
    }
    this.connecting = true;
    const connected = await this.listener.balancer.connect(this.clientAddress, dial, this, this.hello?.service);
    this.connecting = false;
    if (!connected.channel) {
      this.torn ??= connected.reason;
      if (this.finishAfterConnect) this.finish();
      else this.link.abort();
      return undefined;
    }
    this.channel = connected.channel;
    this.connectMs = connected.connectMs;
    if (this.finishAfterConnect) {
      hangUp(connected.conn);
      this.finish();
      return undefined;
    }
    this.listener.idle?.add(this);
    return connected.conn;
  }

  /**
   * The first write to a connected channel: the PROXY header
   * (`--proxy-protocol`) and the client's early bytes together, so the channel
   * gets them in one segment. `-p` shows the early bytes now, and
   * {@link countSent} leaves the header's bytes out. Undefined when there is
   * nothing to write.
   */
  opening(early: Uint8Array | undefined): Uint8Array | undefined {
    if (early) early = this.relaying("->", early);
    const version = this.listener.options.proxyProtocol;
    if (!version) return early;
    const { src, dst } = this.proxied ?? this.link.endpoints();
    const header = encodeProxyHeader(version, src, dst);
    this.headerUnsent = header.length;
    return early ? concatBytes(header, early) : header;
  }

  /**
   * Whether every chunk must be handed to {@link relaying}: `-p` shows it,
   * and a subclass that rewrites (`--ftp`) says so. When not, an adapter may
   * move bytes it never holds (splice(2)); it then calls {@link relaying}
   * with an empty chunk for each move, and counts what the other side took.
   */
  get watchesBytes(): boolean {
    return this.listener.options.dump !== undefined;
  }

  /**
   * A chunk was taken from one side: the bytes to write to the other, which
   * `-p` shows now. They are the chunk itself but where a subclass rewrites
   * (`--ftp`); what is written is what is counted.
   */
  relaying(direction: Direction, chunk: Uint8Array): Uint8Array {
    this.active = true;
    this.listener.options.dump?.(direction, chunk);
    return chunk;
  }

  /** `n` bytes reached the channel: the client's, after any of the PROXY header. */
  countSent(n: number): void {
    if (this.headerUnsent > 0) {
      const header = Math.min(this.headerUnsent, n);
      this.headerUnsent -= header;
      n -= header;
    }
    this.sent += n;
    this.channel!.countSent(n);
  }

  /** `n` of the channel's bytes reached the client. */
  countRcvd(n: number): void {
    this.rcvd += n;
    this.channel!.countRcvd(n);
  }

  /** `side` sent its FIN. */
  ended(side: Side): void {
    this.fin ??= side === "client" ? "client-closed" : "server-closed";
  }

  /** Tears the connection down because of `reason`, unless something already did. */
  abort(reason: EndReason): void {
    if (this.finished) return;
    this.torn ??= reason;
    this.link.abort();
  }

  /** The idle timer's verdict. */
  closeIdle(): void {
    this.abort("idle-timeout");
  }

  /**
   * Both sockets are closed: releases the channel, traces and records the
   * connection, exactly once. While a connect is in flight this waits for it.
   */
  finish(): void {
    if (this.finished) return;
    if (this.connecting) {
      this.finishAfterConnect = true;
      return;
    }
    this.finished = true;
    if (this.inspecting) this.stopInspecting();
    this.listener.forget(this);
    const { balancer, options } = this.listener;
    if (this.clientSlot !== UNTRACKED) options.gate!.release(this.clientSlot);
    const channel = this.channel;
    if (channel) {
      balancer.release(channel);
      options.trace?.(
        `${this.clientAddress}: closed ${
          balancer.describe(channel)
        }, channel sent ${channel.sent} rcvd ${channel.rcvd}`,
      );
    }
    if (options.onConnectionEnd && !this.probe) {
      const record: ConnectionRecord = {
        clientAddress: this.clientAddress,
        clientPort: this.clientPort,
        channel: channel && balancer.describe(channel),
        connectMs: this.connectMs,
        durationMs: performance.now() - this.accepted,
        sent: this.sent,
        rcvd: this.rcvd,
        reason: this.reason,
        serverName: this.hello?.serverName,
      };
      if (this.listener.transport === "udp") record.udp = true;
      options.onConnectionEnd(record);
    }
  }
}
