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
 * Sockets are watched edge-triggered, for everything, once: one epoll_ctl
 * per socket in its life. The loop remembers what an edge said (bytes to
 * read, the peer's FIN) until a read has taken it all, so pausing and
 * resuming a source costs no system call; and a short read after the FIN
 * is known to be the last, so the read that would return 0 is not made.
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
  EPOLL_CTL_MOD,
  EPOLLERR,
  EPOLLET,
  EPOLLHUP,
  EPOLLIN,
  epollLayout,
  EPOLLOUT,
  EPOLLPRI,
  EPOLLRDHUP,
  errnoError,
  F_SETPIPE_SZ,
  IPPROTO_TCP,
  nativePlatform,
  O_CLOEXEC,
  O_NONBLOCK,
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
  SPLICE_F_MOVE,
  SPLICE_F_NONBLOCK,
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
  return {
    serve: (balancer, options) => Promise.resolve(new Loop(sys, arch, balancer, options).server),
    wake: (fd) => void sys.write(fd, WAKE_VALUE, 8),
  };
}

/** What a write to an eventfd adds to it (a 64-bit 1) to wake the loop waiting on it. */
const WAKE_VALUE = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]);

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
/**
 * The most one splice(2) moves, and the size asked for the thread's pipe
 * (a pipe that cannot grow moves its 64 KiB).
 */
const SPLICE_SIZE = 256 * 1024;
/** Never blocking (the sockets are not, the pipe is not), and moving pages where the kernel can. */
const SPLICE_FLAGS = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
/** splice(2)'s errors that say it cannot be used here at all (EPERM, EINVAL, ENOSYS), not that the socket failed. */
const SPLICE_REFUSED = [1, 22, 38];
/** What {@link Loop.take} returns when there is nothing to take now (EAGAIN). */
const NOTHING_NOW = -2;
/** The chunk {@link Session.relaying} is shown for bytes it does not see (spliced). */
const UNSEEN = new Uint8Array(0);
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

/** What a connection's socket is watched for, from its accept or connect to its close. */
const WATCHED = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP | EPOLLET;

// Per-descriptor flags.
/** The descriptor's peer sent FIN and it was read: nothing more to read. */
const F_EOF = 1;
/** We sent FIN on it (shutdown SHUT_WR). */
const F_SHUT = 2;
/** Not read: its destination has bytes pending, or its early bytes are at the limit. */
const F_PAUSED = 4;
/** An edge said there is something to read (bytes, FIN, error) and no read has found it all yet. */
const F_READY = 8;
/** The peer's FIN has arrived (EPOLLRDHUP): a read that takes less than it asked for took the last bytes. */
const F_RDHUP = 16;
/** In the list of descriptors read again next round ({@link Loop.again}). */
const F_QUEUED = 32;
/** Spliced, not read: one of its reads filled the buffer, and no one looks at its bytes. */
const F_SPLICE = 64;
/**
 * Read until EAGAIN: a short read is not all there is. Urgent data (TCP's
 * out-of-band byte) stops a read short at its mark and a splice at it for
 * good; an error (a reset after data) is reported by the read after the data.
 */
const F_DRAIN = 128;

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
  /** Bumped at every close: an event for a descriptor number since reused is stale. */
  private gen = new Uint32Array(1024);
  private readonly conns: (Conn | undefined)[] = [];
  private readonly attempts: (Attempt | undefined)[] = [];
  /** Bytes to write to a descriptor, copied out of the read buffer; absent, none. */
  private readonly pending: (Uint8Array | undefined)[] = [];
  /**
   * Descriptors to read next round, each with its generation: a read that
   * filled the buffer (edge-triggered, nothing tells again that more is
   * there) or a source resumed. One read each per round, so a bulk transfer
   * takes its turn with the rest.
   */
  private again: number[] = [];
  private spare: number[] = [];
  /**
   * The thread's pipe for splice(2), read end then write end: made at the
   * first bulk transfer, and always empty between two moves.
   */
  private readonly pipe = new Int32Array([-1, -1]);
  /** What one splice moves: 0 until the pipe is made, -1 when it cannot be. */
  private spliceSize = 0;
  /** A wait on another thread of up to ELSEWHERE_WAIT_MS is under way: a read queued now must wake it. */
  private waitingLong = false;
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
    // Level-triggered: the listener is left with clients queued (ACCEPT_BURST), and its interest changes with the budget.
    this.control(EPOLL_CTL_ADD, this.listenFd, EPOLLIN);
    this.control(EPOLL_CTL_ADD, this.wakeFd, EPOLLIN);
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
    const failed = sys.bind(fd, this.address, length) < 0 ? "bind" : sys.listen(fd, 4096) < 0 ? "listen" : undefined;
    if (failed) {
      const err = errnoError(sys.errno(), failed);
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
  // meanwhile, so the wait can be long; a stop wakes it (the eventfd), and
  // so does a read queued meanwhile (see resume): a session's continuations
  // run as microtasks, after this wait has begun.
  private async runElsewhere(
    wait: (epfd: number, events: Uint8Array, max: number, timeoutMs: number) => Promise<number>,
  ): Promise<void> {
    while (this.listening || this.open > 0) {
      this.waitingLong = this.again.length === 0;
      const n = await wait(this.epfd, this.events, MAX_EVENTS, this.waitingLong ? ELSEWHERE_WAIT_MS : 0);
      this.waitingLong = false;
      try {
        if (n > 0) this.dispatchAll(n);
        this.readAgain();
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
    const wait = this.idleRound && this.again.length === 0 ? this.maxWaitMs : 0;
    const n = sys.epoll_wait(this.epfd, this.events, MAX_EVENTS, wait);
    if (n < 0) {
      const errno = sys.errno();
      if (errno !== EINTR) throw errnoError(errno, "epoll_wait");
      return;
    }
    this.idleRound = n === 0 && this.again.length === 0;
    this.dispatchAll(n);
    this.readAgain();
  }

  // The reads left for this round: each descriptor's once (one queued
  // meanwhile waits for the next round).
  private readAgain(): void {
    const list = this.again;
    if (list.length === 0) return;
    this.again = this.spare;
    for (let i = 0; i < list.length; i += 2) {
      const fd = list[i];
      if (list[i + 1] !== this.gen[fd]) continue;
      this.flags[fd] &= ~F_QUEUED;
      const conn = this.conns[fd];
      if (!conn || conn.closed || !this.readable(fd)) continue;
      try {
        this.pull(conn, fd);
      } catch (err) {
        this.listener.unexpected(err);
      }
    }
    list.length = 0;
    this.spare = list;
  }

  /** Queues `fd` for a read next round, if it has something to read and may. */
  private resume(fd: number): void {
    if (!this.readable(fd) || this.flags[fd] & F_QUEUED) return;
    this.flags[fd] |= F_QUEUED;
    this.again.push(fd, this.gen[fd]);
    this.cutLongWait();
  }

  // An edge said so, no read has found it empty since, it has not ended and it is not paused.
  private readable(fd: number): boolean {
    return (this.flags[fd] & (F_READY | F_EOF | F_PAUSED)) === F_READY;
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
    // Once closed, the listener's number may be a channel's socket.
    if (fd === this.listenFd && this.listening) return this.acceptBurst();
    if (fd === this.wakeFd) return void this.sys.read(fd, this.buffer, 8);
    const attempt = this.attempts[fd];
    if (attempt) return this.settle(attempt, ev);
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI)) this.flags[fd] |= edgeFlags(ev);
    // A channel connected but not yet taken by its session (a few promise
    // hops away, which under Deno may come after this wait): what this edge
    // said is kept in its flags, and read once it is (connected).
    const conn = this.conns[fd];
    if (!conn) return;
    if (ev & EPOLLOUT && this.pending[fd]) this.flush(conn, fd);
    if (conn.closed) return;
    if (this.readable(fd)) this.pull(conn, fd);
    // An error on a socket not being read (paused, or its FIN read): nothing will read it, so it ends here.
    else if (ev & EPOLLERR) conn.session.abort(resetOf(conn, fd));
  }

  private stopListening(): void {
    if (!this.listening) return;
    this.listening = false;
    this.release(this.listenFd);
    // A wait on another thread ends now, and the loop with it if nothing is open.
    if (this.sys.epollWaitAsync) this.wake();
    this.stopped();
  }

  // A wait on another thread of up to ELSEWHERE_WAIT_MS ends now: the loop has something to do.
  private cutLongWait(): void {
    if (!this.waitingLong) return;
    this.waitingLong = false;
    this.wake();
  }

  private wake(): void {
    this.sys.write(this.wakeFd, WAKE_VALUE, 8);
  }

  // Nothing left to serve: the loop ends, and with it its hold on the
  // runtime. The eventfd stays open: another thread may still write to its
  // number, which must not become some other descriptor's meanwhile.
  private shutDown(): void {
    this.running = false;
    this.sys.close(this.epfd);
    for (const fd of this.pipe) if (fd >= 0) this.sys.close(fd);
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
    this.watch(fd);
    if (!conn.session.inspecting) this.connect(conn);
  }

  private pauseAccepting(): void {
    if (this.acceptPaused || !this.listening) return;
    this.acceptPaused = true;
    this.control(EPOLL_CTL_MOD, this.listenFd, 0);
  }

  private resumeAccepting(): void {
    if (!this.acceptPaused || !this.listening) return;
    this.acceptPaused = false;
    this.control(EPOLL_CTL_MOD, this.listenFd, EPOLLIN);
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
    if (sys.connect(fd, this.dialAddress, length) === 0) {
      this.flags[fd] = 0;
      this.watch(fd);
      return Promise.resolve(fd);
    }
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
      this.watch(fd);
      this.listener.watchConnect(attempt);
    });
  };

  private readonly hangUp = (fd: number): void => {
    this.release(fd);
  };

  // The connect in flight on `attempt.fd` is done: writable without an
  // error is connected (no system call to ask); else SO_ERROR says why not.
  private settle(attempt: Attempt, ev: number): void {
    if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    const fd = attempt.fd;
    this.attempts[fd] = undefined;
    this.open--;
    this.listener.connectSettled(attempt);
    if (ev & (EPOLLERR | EPOLLHUP)) {
      this.intLength[0] = 4;
      const ok = this.sys.getsockopt(fd, SOL_SOCKET, SO_ERROR, this.intValue, this.intLength);
      const errno = ok < 0 ? this.sys.errno() : this.intValue[0];
      if (errno !== 0) {
        this.release(fd);
        return attempt.reject(errnoError(errno, "connect"));
      }
    }
    // The channel may have written already: read once the session has taken it (connected).
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLPRI)) this.flags[fd] |= edgeFlags(ev);
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
    // The client went in the promise hop after its session took the channel (Deno may run a wait's events there).
    if (conn.closed) return this.release(fd);
    conn.server = fd;
    this.conns[fd] = conn;
    const opening = conn.session.opening(conn.early);
    conn.early = undefined;
    if (opening && !this.writeTo(conn, fd, opening, true)) return;
    if (conn.closed) return;
    const client = conn.client;
    if (!this.pending[fd]) this.flags[client] &= ~F_PAUSED;
    if (this.flags[client] & F_EOF && !this.pending[fd]) this.finishFlow(conn, fd);
    if (conn.closed) return;
    this.resume(client);
    this.resume(fd);
  }

  // --- moving bytes ---

  private pull(conn: Conn, fd: number): void {
    if ((this.flags[fd] & (F_SPLICE | F_DRAIN)) === F_SPLICE && this.spliceSize > 0) this.spliceFrom(conn, fd);
    else this.readFrom(conn, fd);
  }

  /**
   * One read of `fd` into the thread's buffer, or one splice of it into the
   * thread's pipe, retried while a signal interrupts it: the bytes taken, 0
   * at its end, -1 when it failed, or {@link NOTHING_NOW} (EAGAIN: what an
   * edge said has all been taken).
   */
  private take(fd: number, spliced: boolean): number {
    const sys = this.sys;
    for (let tries = 0; tries <= EINTR_RETRIES; tries++) {
      const n = spliced
        ? sys.splice(fd, this.pipe[1], this.spliceSize, SPLICE_FLAGS)
        : sys.read(fd, this.buffer, READ_SIZE);
      if (n >= 0) return n;
      const errno = sys.errno();
      if (errno === EAGAIN) {
        this.flags[fd] &= ~(F_READY | F_DRAIN);
        return NOTHING_NOW;
      }
      if (errno !== EINTR) return -1;
    }
    return -1;
  }

  private readFrom(conn: Conn, fd: number): void {
    const n = this.take(fd, false);
    if (n === NOTHING_NOW) return;
    const session = conn.session;
    if (n < 0) {
      if (session.inspecting) return session.inspectionCut();
      return session.abort(resetOf(conn, fd));
    }
    if (n > READ_SIZE) return session.abort(resetOf(conn, fd));
    // A full buffer may not be all; a short read is (unless F_DRAIN), and after the FIN it was the last.
    const flags = this.flags[fd];
    const more = n === READ_SIZE || (n > 0 && (flags & F_DRAIN) !== 0);
    const last = !more && n > 0 && (flags & F_RDHUP) !== 0;
    if (conn.server < 0) {
      // Before the channel the FIN is taken by a read of its own (a read of 0), as the inspection wants it.
      if (more || last) this.resume(fd);
      else this.flags[fd] &= ~F_READY;
      return this.beforeConnected(conn, n);
    }
    if (more) {
      this.resume(fd);
      if (n === READ_SIZE && !(flags & F_DRAIN) && !conn.session.watchesBytes && this.canSplice()) {
        this.flags[fd] |= F_SPLICE;
      }
    } else this.flags[fd] &= ~F_READY;
    const dst = fd === conn.client ? conn.server : conn.client;
    if (n > 0) forwardChunk(this, conn, dst, this.buffer.subarray(0, n));
    if ((n === 0 || last) && !conn.closed) this.endFlow(conn, fd, dst);
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
      return session.ended("client");
    }
    this.hold(conn, this.buffer.slice(0, n));
  }

  private hold(conn: Conn, chunk: Uint8Array): void {
    conn.early = conn.early ? concatBytes(conn.early, chunk) : chunk;
    if (conn.early.length >= EARLY_BYTES_MAX) this.flags[conn.client] |= F_PAUSED;
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

  // The thread's pipe, made at the first bulk transfer: whether there is one.
  private canSplice(): boolean {
    if (this.spliceSize !== 0) return this.spliceSize > 0;
    const sys = this.sys;
    if (sys.pipe2(this.pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
      this.spliceSize = -1;
      return false;
    }
    this.spliceSize = Math.min(Math.max(sys.fcntl(this.pipe[1], F_SETPIPE_SZ, SPLICE_SIZE), 64 * 1024), SPLICE_SIZE);
    return true;
  }

  // Bulk: the bytes of `fd` go to the other side through the thread's pipe,
  // never into JavaScript. A splice stops short when the pipe is full, not
  // only when the socket is empty, so only EAGAIN says there is no more.
  private spliceFrom(conn: Conn, fd: number): void {
    const n = this.take(fd, true);
    if (n === NOTHING_NOW) return;
    if (n < 0 && SPLICE_REFUSED.includes(this.sys.errno())) {
      // Not for this socket or not allowed here (a seccomp filter): this thread reads and writes from now on.
      this.options.warn(`splice(2) refused (${errnoError(this.sys.errno(), "splice").message}): copying instead`);
      this.spliceSize = -1;
      this.flags[fd] &= ~F_SPLICE;
      return this.readFrom(conn, fd);
    }
    if (n < 0 || n > this.spliceSize) {
      this.drainPipe();
      return conn.session.abort(resetOf(conn, fd));
    }
    const dst = fd === conn.client ? conn.server : conn.client;
    if (n === 0) return this.endFlow(conn, fd, dst);
    this.resume(fd);
    forwardSpliced(this, conn, dst, n);
  }

  /**
   * The `n` bytes in the pipe, to `dst` as far as it takes them, counted;
   * the rest is read out of the pipe and kept, its source paused, as a
   * read's would be.
   */
  spliceTo(conn: Conn, dst: number, n: number): void {
    const sys = this.sys;
    let m = sys.splice(this.pipe[0], dst, n, SPLICE_FLAGS);
    for (let tries = 0; m < 0 && sys.errno() === EINTR && tries < EINTR_RETRIES; tries++) {
      m = sys.splice(this.pipe[0], dst, n, SPLICE_FLAGS);
    }
    if (m < 0 && sys.errno() === EAGAIN) m = 0;
    if (m < 0 || m > n) {
      this.drainPipe();
      return conn.session.abort(resetOf(conn, dst));
    }
    if (m === n) return count(conn, dst, m);
    const rest = new Uint8Array(n - m);
    for (let got = 0, tries = 0; got < rest.length;) {
      const k = sys.read(this.pipe[0], rest.subarray(got), rest.length - got);
      if (k > 0) got += k;
      else if (k === 0 || sys.errno() !== EINTR || ++tries > EINTR_RETRIES) {
        this.drainPipe();
        return conn.session.abort(resetOf(conn, dst));
      }
    }
    // Counted once the pipe is empty again: nothing in between may leave bytes in it.
    if (m > 0) count(conn, dst, m);
    this.pending[dst] = rest;
    this.flags[dst === conn.client ? conn.server : conn.client] |= F_PAUSED;
  }

  // Whatever a failed move left in the pipe: the next move starts from an empty one.
  private drainPipe(): void {
    while (this.sys.read(this.pipe[0], this.buffer, READ_SIZE) > 0);
  }

  // `dst` can take more: what is pending for it, then its source is read again.
  private flush(conn: Conn, dst: number): void {
    const pending = this.pending[dst];
    if (!pending) return;
    this.pending[dst] = undefined;
    if (!this.writeTo(conn, dst, pending, true) || this.pending[dst]) return;
    const src = dst === conn.client ? conn.server : conn.client;
    if (this.flags[src] & F_EOF) return this.finishFlow(conn, dst);
    this.flags[src] &= ~F_PAUSED;
    this.resume(src);
  }

  // `src` sent FIN: passed on once nothing is pending for its destination.
  private endFlow(conn: Conn, src: number, dst: number): void {
    this.flags[src] |= F_EOF;
    conn.session.ended(src === conn.client ? "client" : "server");
    if (!this.pending[dst]) this.finishFlow(conn, dst);
  }

  // The last FIN of a connection is close(2)'s own: every byte of both
  // sockets has been read by then, so it is a FIN and not a reset.
  private finishFlow(conn: Conn, dst: number): void {
    if (this.flags[dst] & F_SHUT) return;
    this.flags[dst] |= F_SHUT;
    const other = dst === conn.client ? conn.server : conn.client;
    if (this.flags[other] & F_SHUT) return this.close(conn);
    this.sys.shutdown(dst, SHUT_WR);
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
    // The last connection after a stop: a wait on another thread would hold the loop's end up to a second.
    if (!this.listening && this.open === 0) this.cutLongWait();
  }

  // --- descriptors ---

  private watch(fd: number): void {
    this.ensureCapacity(fd);
    this.control(EPOLL_CTL_ADD, fd, WATCHED);
  }

  private control(op: number, fd: number, events: number): void {
    const view = this.ctlView;
    view.setUint32(0, events, true);
    view.setUint32(this.eventData, fd, true);
    view.setUint32(this.eventData + 4, this.gen[fd], true);
    if (this.sys.epoll_ctl(this.epfd, op, fd, this.ctlEvent) < 0) throw errnoError(this.sys.errno(), "epoll_ctl");
  }

  // Forgets `fd` and closes it; close(2) takes it out of the epoll set.
  private release(fd: number): void {
    this.flags[fd] = 0;
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
    this.gen = grown(this.gen, new Uint32Array(size));
  }
}

/**
 * What an edge says of a socket to read: something is there; the peer's
 * FIN has come (a short read is then the last); or read until EAGAIN
 * (urgent data, an error: a short read is then not the last).
 */
function edgeFlags(ev: number): number {
  if (ev & (EPOLLERR | EPOLLPRI)) return F_READY | F_DRAIN;
  return ev & (EPOLLRDHUP | EPOLLHUP) ? F_READY | F_RDHUP : F_READY;
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

/**
 * The byte-copy step of the native engine in bulk, where no one looks at
 * the bytes: `n` bytes spliced from one side into the thread's pipe go on
 * to the other without passing through JavaScript.
 *
 * @example
 * ```ts
 * forwardSpliced(loop, conn, conn.client, n);
 * ```
 */
function forwardSpliced(loop: Loop, conn: Conn, dst: number, n: number): void {
  conn.session.relaying(dst === conn.server ? "->" : "-<", UNSEEN);
  loop.spliceTo(conn, dst, n);
}
