/**
 * The native engine (`--engine native`): TCP on raw Linux system calls, one
 * epoll loop per thread, driven by the core's {@link Session} lifecycle like
 * every other adapter. It accepts, dials and moves bytes; the core decides
 * the rest.
 *
 * What a connection costs here: one {@link Conn} (the session's link) and
 * its {@link Session}; everything the hot path reads per descriptor is in
 * typed arrays indexed by descriptor; one read buffer serves the whole
 * thread, and bytes a destination has not taken are copied out of it and
 * kept only until written, while their source is not read (backpressure).
 *
 * The loop must not starve the runtime, whose event loop still runs the
 * timers (`-t`, `-T`, checks), the control channel and worker messages: each
 * round blocks in `epoll_wait` for at most {@link MAX_WAIT_MS}, then yields
 * to the runtime with `setImmediate`.
 *
 * @module
 */
import { type Balancer, formatHostPort } from "../../core/model/balancer.ts";
import type { Channel } from "../../core/model/channel.ts";
import type { EndReason } from "../../core/observe/connection_log.ts";
import type { ProxyEndpoints } from "../../core/proxy/proxy_header_reader.ts";
import { Listener, type TimedConnect } from "../../core/session/listener.ts";
import type { Session, SessionLink } from "../../core/session/session.ts";
import { concatBytes } from "../../core/util/bytes.ts";
import { errorText, listenError } from "../../core/util/errors.ts";
import process from "node:process";
import { libcNames } from "../libc_datagram.ts";
import { Throttle } from "../../core/observe/throttle.ts";
import type { ServeOptions, Server } from "../types.ts";
import { setImmediate } from "node:timers";
import {
  decodeSockaddr,
  EAGAIN,
  ECONNABORTED,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  EINPROGRESS,
  EINTR,
  encodeSockaddr,
  EPOLL_CLOEXEC,
  EPOLL_CTL_ADD,
  EPOLL_CTL_DEL,
  EPOLL_CTL_MOD,
  EPOLLERR,
  EPOLLHUP,
  EPOLLIN,
  epollLayout,
  EPOLLOUT,
  errnoError,
  IPPROTO_TCP,
  nativePlatform,
  SHUT_WR,
  SO_ERROR,
  SO_KEEPALIVE,
  SO_REUSEADDR,
  SO_REUSEPORT,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  SOCKADDR_SIZE,
  sockaddrFamily,
  SOL_SOCKET,
  type Sys,
  TCP_NODELAY,
} from "./sys.ts";

/**
 * A TCP engine: what `--engine` chooses between, for the thread it runs in.
 *
 * @example
 * ```ts
 * const server = await nativeEngine(sys, "x64").serve(balancer, options);
 * ```
 */
export interface Engine {
  serve(balancer: Balancer, options: ServeOptions): Promise<Server>;
  /**
   * Wakes the loop whose {@link Server.wakeFd} is `fd`, from any thread of
   * the process: a message posted to its thread is then read at once, not
   * after the loop's wait of at most {@link MAX_WAIT_MS}.
   */
  wake(fd: number): void;
}

/**
 * The native engine over `sys` (one runtime's binding of libc) on `arch`
 * (`process.arch`: it decides the epoll event layout).
 *
 * @example
 * ```ts
 * const engine = nativeEngine(bindLibc(), process.arch);
 * ```
 */
export function nativeEngine(sys: Sys, arch: string): Engine {
  const one = new Uint8Array(8);
  one[0] = 1;
  return {
    serve: (balancer, options) => Promise.resolve(new Loop(sys, arch, balancer, options).server),
    wake: (fd) => void sys.write(fd, one, 8),
  };
}

/**
 * Binds libc with `bind` (a runtime's FFI; throws when it cannot), trying
 * each place libc may live, and makes the native engine over it; or says
 * why the engine cannot run here (the platform, no FFI, no libc).
 *
 * @example
 * ```ts
 * const engine = loadEngine((name) => bindWithDlopen(name));
 * if (typeof engine === "string") log.info(`--engine native: ${engine}`);
 * ```
 */
export function loadEngine(bind: (libc: string) => Sys): Engine | string {
  const platform = nativePlatform(process.platform, process.arch);
  if (platform !== true) return platform;
  let lastError: unknown;
  for (const name of libcNames(process.platform, process.arch)) {
    try {
      return nativeEngine(bind(name), process.arch);
    } catch (err) {
      lastError = err;
    }
  }
  return `no FFI to libc (${errorText(lastError)})`;
}

/** Longest a round blocks in epoll_wait: the most the runtime's own timers and messages wait for the loop. */
export const MAX_WAIT_MS = 20;
/**
 * The wait when the runtime serves UDP in the same thread (`--udp`): its
 * datagrams are read only between rounds, and a burst would overflow the
 * socket's buffer during a long wait.
 */
export const UDP_WAIT_MS = 1;
/** The wait on another thread (Deno): the runtime runs meanwhile, so only an idle loop's cost bounds it. */
const ELSEWHERE_WAIT_MS = 1000;
/** The one read buffer of a thread, and the most one read takes. */
const READ_SIZE = 64 * 1024;
/** Events taken per epoll_wait. */
const MAX_EVENTS = 256;
/** Clients accepted per readiness of the listener: then the others get their turn. */
const ACCEPT_BURST = 64;
/** Client bytes held while its channel is being connected; past this the client is not read. */
const EARLY_BYTES_MAX = 64 * 1024;
/** How long accepting pauses when the process is out of descriptors (EMFILE). */
const ACCEPT_RETRY_MS = 100;
/** Retries of a call interrupted by a signal, before it counts as failed. */
const EINTR_RETRIES = 8;

// Per-descriptor flags.
/** The descriptor's peer sent FIN: nothing more to read. */
const F_EOF = 1;
/** We sent FIN on it (shutdown SHUT_WR). */
const F_SHUT = 2;
/** Not read: its destination has bytes pending, or its early bytes are at the limit. */
const F_PAUSED = 4;
/** In the epoll set. */
const F_WATCHED = 8;

/**
 * One proxied connection: the client's descriptor, the channel's once
 * connected, and the session that decides the rest.
 */
class Conn implements SessionLink {
  session!: Session<Conn>;
  server = -1;
  closed = false;
  /** The client's bytes that came before its channel was connected. */
  early: Uint8Array | undefined = undefined;

  constructor(
    readonly loop: Loop,
    readonly client: number,
    readonly clientAddress: string,
    readonly port: number,
  ) {}

  abort(): void {
    this.loop.close(this);
  }

  clientPort(): number {
    return this.port;
  }

  serverLocalAddress(): string {
    return this.loop.localOf(this.server).address;
  }

  endpoints(): ProxyEndpoints {
    return {
      src: { address: this.clientAddress, port: this.session.clientPort || this.port },
      dst: this.loop.localOf(this.client),
    };
  }
}

/** A connect in flight on descriptor `fd`, within `-t` (the listener's timer). */
class Attempt implements TimedConnect {
  constructor(
    readonly loop: Loop,
    readonly fd: number,
    readonly resolve: (fd: number) => void,
    readonly reject: (err: Error) => void,
  ) {}

  timedOut(): void {
    this.loop.abandon(this);
  }
}

/** One listening socket and its epoll loop, in the thread that serves it. */
class Loop {
  readonly server: Server;
  private readonly listener: Listener;
  private readonly listenFd: number;
  private readonly epfd: number;
  private readonly wakeFd: number;
  private readonly listenPort: number;
  private readonly events: Uint8Array;
  private readonly eventView: DataView;
  private readonly eventSize: number;
  private readonly eventData: number;
  private readonly ctlEvent: Uint8Array;
  private readonly ctlView: DataView;
  private readonly buffer = new Uint8Array(READ_SIZE);
  private readonly address = new Uint8Array(SOCKADDR_SIZE);
  private readonly addressLength = new Uint32Array(1);
  private readonly intValue = new Int32Array(1);
  private readonly intLength = new Uint32Array(1);
  private readonly dialAddress = new Uint8Array(SOCKADDR_SIZE);
  private readonly sourceAddress = new Uint8Array(SOCKADDR_SIZE);
  private readonly sourceLength: number;
  // Per descriptor, grown as descriptors grow.
  private flags = new Uint8Array(1024);
  private mask = new Uint32Array(1024);
  /** Bumped at every close: an event for a descriptor number since reused is stale. */
  private gen = new Uint32Array(1024);
  private readonly conns: (Conn | undefined)[] = [];
  private readonly attempts: (Attempt | undefined)[] = [];
  /** Bytes to write to a descriptor, copied out of the read buffer; absent, none. */
  private readonly pending: (Uint8Array | undefined)[] = [];
  private open = 0;
  private listening = true;
  private acceptPaused = false;
  private running = false;
  private idleRound = false;
  private readonly maxWaitMs: number;
  private readonly outOfFiles = new Throttle(10_000);
  private stopped!: () => void;

  constructor(private readonly sys: Sys, arch: string, balancer: Balancer, private readonly options: ServeOptions) {
    // Accepting when asked: at the descriptor budget, clients wait in the kernel's queue.
    this.listener = new Listener(balancer, options, "wait");
    this.maxWaitMs = options.udp ? UDP_WAIT_MS : MAX_WAIT_MS;
    const layout = epollLayout(arch);
    this.eventSize = layout.size;
    this.eventData = layout.data;
    this.events = new Uint8Array(layout.size * MAX_EVENTS);
    this.eventView = new DataView(this.events.buffer);
    this.ctlEvent = new Uint8Array(layout.size);
    this.ctlView = new DataView(this.ctlEvent.buffer);
    this.sourceLength = options.sourceAddress ? encodeSockaddr(options.sourceAddress, 0, this.sourceAddress) : 0;
    const where = formatHostPort(options.hostname, options.port);
    this.listenFd = this.listenOn(where);
    this.listenPort = options.port || this.localOf(this.listenFd).port;
    this.epfd = sys.epoll_create1(EPOLL_CLOEXEC);
    this.wakeFd = this.epfd < 0 ? -1 : sys.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (this.epfd < 0 || this.wakeFd < 0) {
      const err = errnoError(sys.errno(), "epoll");
      for (const fd of [this.wakeFd, this.epfd, this.listenFd]) if (fd >= 0) sys.close(fd);
      throw listenError(err, where);
    }
    this.watch(this.listenFd, EPOLLIN);
    this.watch(this.wakeFd, EPOLLIN);
    const finished = new Promise<void>((resolve) => (this.stopped = resolve));
    this.server = {
      port: this.listenPort,
      finished,
      close: () => this.stopListening(),
      endConnections: () => this.listener.endAll(),
      wakeFd: this.wakeFd,
    };
    this.run();
  }

  // socket, SO_REUSEADDR (SO_REUSEPORT for -w), TCP_NODELAY and SO_KEEPALIVE
  // (which every accepted client inherits: no call per client), bind, listen.
  private listenOn(where: string): number {
    const sys = this.sys;
    const length = encodeSockaddr(this.options.hostname, this.options.port, this.address);
    if (length === 0) throw listenError(new Error("not an IP address"), where);
    const fd = sys.socket(sockaddrFamily(this.address), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw listenError(errnoError(sys.errno(), "socket"), where);
    const options = [[SOL_SOCKET, SO_REUSEADDR], [IPPROTO_TCP, TCP_NODELAY], [SOL_SOCKET, SO_KEEPALIVE]];
    if (this.options.reusePort) options.push([SOL_SOCKET, SO_REUSEPORT]);
    this.intValue[0] = 1;
    for (const [level, name] of options) sys.setsockopt(fd, level, name, this.intValue, 4);
    if (sys.bind(fd, this.address, length) < 0 || sys.listen(fd, 4096) < 0) {
      const err = errnoError(sys.errno(), "bind");
      sys.close(fd);
      throw listenError(err, where);
    }
    return fd;
  }

  /** The local address of socket `fd` (the address a client connected to). */
  localOf(fd: number): { address: string; port: number } {
    this.addressLength[0] = SOCKADDR_SIZE;
    if (this.sys.getsockname(fd, this.address, this.addressLength) < 0) return { address: "0.0.0.0", port: 0 };
    return decodeSockaddr(this.address);
  }

  // --- the loop ---

  private run(): void {
    this.running = true;
    if (this.sys.epollWaitAsync) return void this.runElsewhere(this.sys.epollWaitAsync).catch(this.listener.unexpected);
    const round = () => {
      if (!this.running) return;
      try {
        this.round();
      } catch (err) {
        this.listener.unexpected(err);
      }
      if (this.listening || this.open > 0) setImmediate(round);
      else this.shutDown();
    };
    setImmediate(round);
  }

  // The wait on another thread (Deno): the runtime's event loop is free
  // meanwhile, so the wait can be long; a stop wakes it (the eventfd).
  private async runElsewhere(
    wait: (epfd: number, events: Uint8Array, max: number, timeoutMs: number) => Promise<number>,
  ): Promise<void> {
    while (this.listening || this.open > 0) {
      const n = await wait(this.epfd, this.events, MAX_EVENTS, ELSEWHERE_WAIT_MS);
      try {
        if (n > 0) this.dispatchAll(n);
      } catch (err) {
        this.listener.unexpected(err);
      }
    }
    this.shutDown();
  }

  // One epoll_wait: without a wait after a busy round, so that the runtime
  // gets its turn at once; at most maxWaitMs after an idle one.
  private round(): void {
    const sys = this.sys;
    const n = sys.epoll_wait(this.epfd, this.events, MAX_EVENTS, this.idleRound ? this.maxWaitMs : 0);
    if (n < 0) {
      const errno = sys.errno();
      if (errno !== EINTR) throw errnoError(errno, "epoll_wait");
      return;
    }
    this.idleRound = n === 0;
    this.dispatchAll(n);
  }

  private dispatchAll(n: number): void {
    const view = this.eventView;
    for (let i = 0; i < n; i++) {
      const at = i * this.eventSize;
      const ev = view.getUint32(at, true);
      const fd = view.getUint32(at + this.eventData, true);
      if (view.getUint32(at + this.eventData + 4, true) !== this.gen[fd]) continue;
      try {
        this.dispatch(fd, ev);
      } catch (err) {
        this.listener.unexpected(err);
      }
    }
  }

  private dispatch(fd: number, ev: number): void {
    if (fd === this.listenFd) return this.acceptBurst();
    if (fd === this.wakeFd) return void this.sys.read(fd, this.buffer, 8);
    const attempt = this.attempts[fd];
    if (attempt) return this.settle(attempt);
    const conn = this.conns[fd];
    if (!conn) return;
    if (ev & EPOLLOUT) this.flush(conn, fd);
    if (conn.closed) return;
    const reading = (this.flags[fd] & (F_EOF | F_PAUSED)) === 0;
    if (reading && ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) this.readFrom(conn, fd);
    else if (ev & EPOLLERR) conn.session.abort(resetOf(conn, fd));
    else if (ev & EPOLLHUP) this.unwatch(fd);
  }

  // A hang-up without an error on a descriptor not being read: its FIN came
  // while we had sent ours, and is read once it is resumed. Until then it
  // leaves the epoll set, which would otherwise report it on every round.
  private unwatch(fd: number): void {
    if (!(this.flags[fd] & F_WATCHED)) return;
    this.flags[fd] &= ~F_WATCHED;
    this.mask[fd] = 0;
    this.control(EPOLL_CTL_DEL, fd, 0);
  }

  private stopListening(): void {
    if (!this.listening) return;
    this.listening = false;
    this.release(this.listenFd);
    // A wait on another thread ends now, and the loop with it if nothing is open.
    if (this.sys.epollWaitAsync) this.wake();
    this.stopped();
  }

  private wake(): void {
    const one = new Uint8Array(8);
    one[0] = 1;
    this.sys.write(this.wakeFd, one, 8);
  }

  // Nothing left to serve: the loop ends, and with it its hold on the
  // runtime. The eventfd stays open: another thread may still write to its
  // number, which must not become some other descriptor's meanwhile.
  private shutDown(): void {
    this.running = false;
    this.sys.close(this.epfd);
  }

  // --- accepting ---

  private acceptBurst(): void {
    const sys = this.sys;
    for (let i = 0; i < ACCEPT_BURST && this.listening; i++) {
      if (!this.listener.admit()) return this.pauseAccepting();
      this.addressLength[0] = SOCKADDR_SIZE;
      const fd = sys.accept4(this.listenFd, this.address, this.addressLength, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        const errno = sys.errno();
        if (errno === EAGAIN) return;
        if (errno === EINTR || errno === ECONNABORTED) continue;
        // Out of descriptors (EMFILE, ENFILE) or memory: retry shortly, said at most every 10 s.
        if (this.outOfFiles.pass() !== undefined) {
          this.options.warn(`cannot accept: ${errnoError(errno, "accept4").message}`, "cannot accept");
        }
        this.pauseAccepting();
        setTimeout(() => this.resumeAccepting(), ACCEPT_RETRY_MS);
        return;
      }
      this.accepted(fd);
    }
  }

  private accepted(fd: number): void {
    this.ensureCapacity(fd);
    const { address, port } = decodeSockaddr(this.address);
    const conn = new Conn(this, fd, address, port);
    this.conns[fd] = conn;
    this.flags[fd] = 0;
    this.open++;
    conn.session = this.listener.open(conn, address);
    this.watch(fd, EPOLLIN);
    if (!conn.session.inspecting) this.connect(conn);
  }

  private pauseAccepting(): void {
    if (this.acceptPaused || !this.listening) return;
    this.acceptPaused = true;
    this.interest(this.listenFd, 0);
  }

  private resumeAccepting(): void {
    if (!this.acceptPaused || !this.listening) return;
    this.acceptPaused = false;
    this.interest(this.listenFd, EPOLLIN);
  }

  // --- connecting ---

  private connect(conn: Conn): void {
    conn.session.connect(this.dial, this.hangUp).then((fd) => {
      if (fd !== undefined) this.connected(conn, fd);
    }).catch(this.listener.unexpected);
  }

  // One attempt, within -t, from -B: resolves to the connected descriptor.
  private readonly dial = (channel: Channel): Promise<number> => {
    const sys = this.sys;
    const length = encodeSockaddr(channel.address, channel.port, this.dialAddress);
    if (length === 0) return Promise.reject(new Error(`not an IP address: ${channel.address}`));
    const fd = sys.socket(sockaddrFamily(this.dialAddress), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Promise.reject(errnoError(sys.errno(), "socket"));
    this.ensureCapacity(fd);
    this.intValue[0] = 1;
    sys.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, this.intValue, 4);
    sys.setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, this.intValue, 4);
    if (this.sourceLength > 0 && sys.bind(fd, this.sourceAddress, this.sourceLength) < 0) {
      const err = errnoError(sys.errno(), "bind");
      sys.close(fd);
      return Promise.reject(err);
    }
    if (sys.connect(fd, this.dialAddress, length) === 0) return Promise.resolve(fd);
    // An interrupted connect goes on in the background, like one in progress.
    const errno = sys.errno();
    if (errno !== EINPROGRESS && errno !== EINTR) {
      sys.close(fd);
      return Promise.reject(errnoError(errno, "connect"));
    }
    this.open++;
    return new Promise((resolve, reject) => {
      const attempt = new Attempt(this, fd, resolve, reject);
      this.attempts[fd] = attempt;
      this.flags[fd] = 0;
      this.watch(fd, EPOLLOUT);
      this.listener.watchConnect(attempt);
    });
  };

  private readonly hangUp = (fd: number): void => {
    this.release(fd);
  };

  // The connect in flight on `attempt.fd` is done: SO_ERROR says how.
  private settle(attempt: Attempt): void {
    const fd = attempt.fd;
    this.attempts[fd] = undefined;
    this.open--;
    this.listener.connectSettled(attempt);
    this.intLength[0] = 4;
    const ok = this.sys.getsockopt(fd, SOL_SOCKET, SO_ERROR, this.intValue, this.intLength);
    const errno = ok < 0 ? this.sys.errno() : this.intValue[0];
    if (errno !== 0) {
      this.release(fd);
      return attempt.reject(errnoError(errno, "connect"));
    }
    // Read as soon as the session has taken it, a microtask away (before the next epoll_wait).
    this.interest(fd, EPOLLIN);
    attempt.resolve(fd);
  }

  /** `-t` passed: the attempt's socket is closed, and the connect fails as a timeout. */
  abandon(attempt: Attempt): void {
    if (this.attempts[attempt.fd] !== attempt) return;
    this.attempts[attempt.fd] = undefined;
    this.open--;
    this.release(attempt.fd);
    attempt.reject(this.listener.connectTimeoutError());
  }

  // The session has its channel: its bytes so far (after any PROXY header)
  // go first, then both sides are read.
  private connected(conn: Conn, fd: number): void {
    conn.server = fd;
    this.conns[fd] = conn;
    const opening = conn.session.opening(conn.early);
    conn.early = undefined;
    if (opening && !this.writeTo(conn, fd, opening, true)) return;
    if (conn.closed) return;
    // A connect done at once (loopback may) was never watched.
    if (this.flags[fd] & F_WATCHED) this.interest(fd, this.want(fd));
    else this.watch(fd, this.want(fd));
    const client = conn.client;
    if (!this.pending[fd]) this.flags[client] &= ~F_PAUSED;
    this.interest(client, this.want(client));
    if (this.flags[client] & F_EOF && !this.pending[fd]) this.finishFlow(conn, fd);
  }

  // --- moving bytes ---

  private readFrom(conn: Conn, fd: number): void {
    const sys = this.sys;
    let n = sys.read(fd, this.buffer, READ_SIZE);
    for (let tries = 0; n < 0 && tries < EINTR_RETRIES; tries++) {
      const errno = sys.errno();
      if (errno === EAGAIN) return;
      if (errno !== EINTR) break;
      n = sys.read(fd, this.buffer, READ_SIZE);
    }
    const session = conn.session;
    if (n < 0) {
      if (session.inspecting) return session.inspectionCut();
      return session.abort(resetOf(conn, fd));
    }
    if (n > READ_SIZE) return session.abort(resetOf(conn, fd));
    if (conn.server < 0) return this.beforeConnected(conn, n);
    const dst = fd === conn.client ? conn.server : conn.client;
    if (n === 0) return this.endFlow(conn, fd, dst);
    forwardChunk(this, conn, dst, this.buffer.subarray(0, n));
  }

  // Client bytes before its channel: inspected (--accept-proxy, --sni), or
  // held until connected; past EARLY_BYTES_MAX the client is not read.
  private beforeConnected(conn: Conn, n: number): void {
    const session = conn.session;
    const fd = conn.client;
    if (session.inspecting) {
      if (n === 0) return session.inspectionCut();
      const step = session.inspect(this.buffer.slice(0, n));
      if (!(step instanceof Uint8Array)) return;
      if (step.length > 0) this.hold(conn, step);
      return this.connect(conn);
    }
    if (n === 0) {
      this.flags[fd] |= F_EOF;
      session.ended("client");
      return this.interest(fd, this.want(fd));
    }
    this.hold(conn, this.buffer.slice(0, n));
  }

  private hold(conn: Conn, chunk: Uint8Array): void {
    conn.early = conn.early ? concatBytes(conn.early, chunk) : chunk;
    if (conn.early.length >= EARLY_BYTES_MAX) {
      this.flags[conn.client] |= F_PAUSED;
      this.interest(conn.client, this.want(conn.client));
    }
  }

  /**
   * Writes `chunk` to `dst` as far as it takes it, counts what it took, and
   * keeps the rest (a copy when `chunk` is the thread's read buffer) with
   * its source paused. False when the connection was torn down.
   */
  writeTo(conn: Conn, dst: number, chunk: Uint8Array, owned: boolean): boolean {
    const n = this.writeSome(dst, chunk);
    if (n < 0) {
      conn.session.abort(resetOf(conn, dst));
      return false;
    }
    if (n > 0) count(conn, dst, n);
    if (n < chunk.length) {
      const rest = chunk.subarray(n);
      this.pending[dst] = owned ? rest : rest.slice();
      const src = dst === conn.client ? conn.server : conn.client;
      this.flags[src] |= F_PAUSED;
      this.interest(src, this.want(src));
      this.interest(dst, this.want(dst));
    }
    return true;
  }

  // write(2) with EINTR retried: bytes taken, 0 when full (EAGAIN), -1 when gone.
  private writeSome(fd: number, chunk: Uint8Array): number {
    const sys = this.sys;
    for (let tries = 0; tries < EINTR_RETRIES; tries++) {
      const n = sys.write(fd, chunk, chunk.length);
      if (n >= 0) return n <= chunk.length ? n : -1;
      const errno = sys.errno();
      if (errno === EAGAIN) return 0;
      if (errno !== EINTR) return -1;
    }
    return -1;
  }

  // `dst` can take more: what is pending for it, then its source is read again.
  private flush(conn: Conn, dst: number): void {
    const pending = this.pending[dst];
    if (!pending) return;
    this.pending[dst] = undefined;
    if (!this.writeTo(conn, dst, pending, true) || this.pending[dst]) return;
    const src = dst === conn.client ? conn.server : conn.client;
    this.interest(dst, this.want(dst));
    if (this.flags[src] & F_EOF) return this.finishFlow(conn, dst);
    this.flags[src] &= ~F_PAUSED;
    this.interest(src, this.want(src));
  }

  // `src` sent FIN: passed on once nothing is pending for its destination.
  private endFlow(conn: Conn, src: number, dst: number): void {
    this.flags[src] |= F_EOF;
    conn.session.ended(src === conn.client ? "client" : "server");
    if (!this.pending[dst]) this.finishFlow(conn, dst);
    if (!conn.closed) this.interest(src, this.want(src));
  }

  // The last FIN of a connection is close(2)'s own: every byte of both
  // sockets has been read by then, so it is a FIN and not a reset.
  private finishFlow(conn: Conn, dst: number): void {
    if (this.flags[dst] & F_SHUT) return;
    this.flags[dst] |= F_SHUT;
    const other = dst === conn.client ? conn.server : conn.client;
    if (this.flags[other] & F_SHUT) return this.close(conn);
    this.sys.shutdown(dst, SHUT_WR);
    this.interest(dst, this.want(dst));
  }

  /** Closes both sockets (a reset when unread bytes remain) and finishes the session once. */
  close(conn: Conn): void {
    if (conn.closed) return;
    conn.closed = true;
    this.open--;
    this.release(conn.client);
    if (conn.server >= 0) this.release(conn.server);
    conn.early = undefined;
    conn.session.finish();
    this.resumeAccepting();
  }

  // --- descriptors ---

  // What `fd` waits for: reading unless it ended or is paused; writing while bytes are pending.
  private want(fd: number): number {
    const flags = this.flags[fd];
    return ((flags & (F_EOF | F_PAUSED)) === 0 ? EPOLLIN : 0) | (this.pending[fd] ? EPOLLOUT : 0);
  }

  private watch(fd: number, events: number): void {
    this.ensureCapacity(fd);
    this.flags[fd] |= F_WATCHED;
    this.mask[fd] = events;
    this.control(EPOLL_CTL_ADD, fd, events);
  }

  // A descriptor done both ways (FIN read, FIN sent) leaves the epoll set:
  // its hang-up would otherwise be reported on every round. One that left
  // it (see unwatch) comes back once there is something to wait for.
  private interest(fd: number, events: number): void {
    const flags = this.flags[fd];
    if (!(flags & F_WATCHED)) {
      if (events !== 0 && this.conns[fd]) this.watch(fd, events);
      return;
    }
    if (events === 0 && (flags & (F_EOF | F_SHUT)) === (F_EOF | F_SHUT)) return this.unwatch(fd);
    if (this.mask[fd] === events) return;
    this.mask[fd] = events;
    this.control(EPOLL_CTL_MOD, fd, events);
  }

  private control(op: number, fd: number, events: number): void {
    const view = this.ctlView;
    view.setUint32(0, events, true);
    view.setUint32(this.eventData, fd, true);
    view.setUint32(this.eventData + 4, this.gen[fd], true);
    if (this.sys.epoll_ctl(this.epfd, op, fd, this.ctlEvent) < 0 && op !== EPOLL_CTL_DEL) {
      throw errnoError(this.sys.errno(), "epoll_ctl");
    }
  }

  // Forgets `fd` and closes it; close(2) takes it out of the epoll set.
  private release(fd: number): void {
    this.flags[fd] = 0;
    this.mask[fd] = 0;
    this.gen[fd]++;
    this.conns[fd] = undefined;
    this.pending[fd] = undefined;
    this.sys.close(fd);
  }

  private ensureCapacity(fd: number): void {
    if (fd < 0 || fd < this.flags.length) return;
    let size = this.flags.length;
    while (size <= fd) size *= 2;
    this.flags = grown(this.flags, new Uint8Array(size));
    this.mask = grown(this.mask, new Uint32Array(size));
    this.gen = grown(this.gen, new Uint32Array(size));
  }
}

function grown<T extends Uint8Array | Uint32Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

// A socket that takes no more bytes, or whose read failed, has been reset.
function resetOf(conn: Conn, fd: number): EndReason {
  return fd === conn.client ? "client-reset" : "server-reset";
}

function count(conn: Conn, dst: number, n: number): void {
  if (dst === conn.server) conn.session.countSent(n);
  else conn.session.countRcvd(n);
}

/**
 * The byte-copy step of the native engine: a chunk read from one side (a
 * view of the thread's read buffer) is shown to the session (`-p`) and
 * written to the other; what the destination does not take is copied and
 * kept, and the source is not read until it has been written.
 *
 * @example
 * ```ts
 * forwardChunk(loop, conn, conn.server, buffer.subarray(0, n));
 * ```
 */
function forwardChunk(loop: Loop, conn: Conn, dst: number, chunk: Uint8Array): void {
  loop.writeTo(conn, dst, conn.session.relaying(dst === conn.server ? "->" : "-<", chunk), false);
}
