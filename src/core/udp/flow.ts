/**
 * One UDP session's datagrams: from its client to its channel and back, one
 * datagram in, one out, never merged or split.
 *
 * @module
 */
import { encodeProxyV2 } from "../proxy/proxy_protocol.ts";
import type { ProxyEndpoints } from "../proxy/proxy_header_reader.ts";
import type { Session, SessionLink } from "../session/session.ts";
import { concatBytes } from "../util/bytes.ts";
import { type ChannelSocket, type DatagramRelay, MAX_DATAGRAM } from "./relay.ts";

/** Datagrams a session holds while its channel socket is opened; more are dropped. */
const MAX_PENDING = 64;

/**
 * The link of a UDP {@link Session}: the session decides its channel, its
 * end and its record; the flow moves its datagrams and closes its socket.
 *
 * @example
 * ```ts
 * const flow = new UdpFlow(relay, "127.0.0.1 40000", "127.0.0.1", 40000);
 * flow.session = relay.listener.open(flow, "127.0.0.1");
 * await flow.connect();
 * flow.fromClient(query); // ... and the adapter, for each reply: flow.fromChannel(reply)
 * ```
 */
export class UdpFlow implements SessionLink {
  session!: Session<UdpFlow>;
  private socket: ChannelSocket | undefined = undefined;
  /** Datagrams that came while the channel socket was opened. */
  private pending: Uint8Array[] = [];
  /** `--proxy-protocol v2`: the header in front of every datagram to the channel. */
  private header: Uint8Array | undefined = undefined;
  /** Datagrams sent to the channel, and received from it. */
  private requests = 0;
  private responses = 0;
  private closed = false;

  constructor(
    readonly relay: DatagramRelay,
    /** The relay's key for this client address and port. */
    readonly key: string,
    readonly address: string,
    readonly port: number,
  ) {}

  clientPort(): number {
    return this.port;
  }

  // Asked only by `--ftp`, whose sessions are TCP's: the relay's own address will do.
  serverLocalAddress(): string {
    return this.relay.local.address;
  }

  endpoints(): ProxyEndpoints {
    return { src: { address: this.address, port: this.port }, dst: this.relay.local };
  }

  /** Opens the session's channel socket, then sends what came meanwhile. */
  async connect(): Promise<void> {
    const socket = await this.session.connect(this.relay.dial, closeSocket);
    const pending = this.pending;
    this.pending = [];
    if (!socket) {
      if (this.session.channel === undefined && pending.length > 0) this.relay.drop("no-channel", pending.length);
      return;
    }
    this.socket = socket;
    if (this.session.listener.options.proxyProtocol === 2) {
      const { src, dst } = this.endpoints();
      this.header = encodeProxyV2(src, dst, true);
    }
    for (const datagram of pending) this.toChannel(datagram);
  }

  /** A datagram from the client. */
  fromClient(datagram: Uint8Array): void {
    // A client refused by the access rules: counted as such, not as a drop.
    if (this.closed) return;
    if (this.socket) this.toChannel(datagram);
    // The runtime may reuse its receive buffer: a datagram kept is copied.
    else if (this.pending.length < MAX_PENDING) this.pending.push(datagram.slice());
    else this.relay.drop("over-cap");
  }

  /** A datagram from the channel, which goes to the client as it is. */
  fromChannel(datagram: Uint8Array): void {
    if (this.closed) return;
    const session = this.session;
    session.relaying("-<", datagram);
    this.relay.clients.send(datagram, this.port, this.address);
    session.rcvd += datagram.length;
    session.channel!.countDatagramRcvd(datagram.length);
    // As nginx's proxy_responses: N answers for each datagram sent, so a
    // client with two queries in flight on one port gets both answers.
    const limit = this.relay.udp.responses;
    if (limit > 0 && ++this.responses >= limit * this.requests) session.abort("responses");
  }

  /** The channel answered with an ICMP port unreachable: a failed connect, and the session ends. */
  refused(reason: string): void {
    if (this.closed || !this.session.channel) return;
    this.relay.balancer.refusedAfterConnect(this.session.channel, this.address, reason);
    this.session.abort("connect-failed");
  }

  /** Closes the channel socket; the session finishes at once. */
  abort(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket?.close();
    this.relay.forget(this);
    this.session.finish();
  }

  private toChannel(datagram: Uint8Array): void {
    const out = this.header ? concatBytes(this.header, datagram) : datagram;
    if (out.length > MAX_DATAGRAM) return this.relay.drop("too-large");
    const session = this.session;
    session.relaying("->", datagram);
    this.socket!.send(out);
    this.requests++;
    session.sent += datagram.length;
    session.channel!.countDatagramSent(datagram.length);
  }
}

// A socket opened for a session that ended meanwhile.
function closeSocket(socket: ChannelSocket): void {
  socket.close();
}
