/**
 * The Linux system calls the native engine makes, as one interface that
 * each runtime binds with its own FFI (`bun:ffi`, `Deno.dlopen`), and the
 * pure helpers around them: socket addresses, epoll events, errno in words.
 * Nothing here touches a runtime; the bindings are in `bind_bun.ts` and
 * `bind_deno.ts`.
 *
 * @module
 */
import { addressBytes } from "../../core/selection/hash.ts";
import { formatAddressBytes } from "../../core/proxy/proxy_protocol.ts";

/**
 * libc's calls as the engine makes them: every pointer a typed array (its
 * offset honoured), every length a number, every result a number; `errno`
 * reads the calling thread's errno (`__errno_location`, glibc and musl).
 *
 * @example
 * ```ts
 * const fd = sys.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
 * if (fd < 0) throw errnoError(sys.errno());
 * ```
 */
export interface Sys {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, address: Uint8Array, length: number): number;
  listen(fd: number, backlog: number): number;
  /** `length`: one socklen_t, in and out. */
  accept4(fd: number, address: Uint8Array, length: Uint32Array, flags: number): number;
  connect(fd: number, address: Uint8Array, length: number): number;
  getsockname(fd: number, address: Uint8Array, length: Uint32Array): number;
  getsockopt(fd: number, level: number, name: number, value: Int32Array, length: Uint32Array): number;
  setsockopt(fd: number, level: number, name: number, value: Int32Array, length: number): number;
  read(fd: number, buffer: Uint8Array, length: number): number;
  write(fd: number, buffer: Uint8Array, length: number): number;
  shutdown(fd: number, how: number): number;
  close(fd: number): number;
  epoll_create1(flags: number): number;
  epoll_ctl(epfd: number, op: number, fd: number, event: Uint8Array): number;
  epoll_wait(epfd: number, events: Uint8Array, max: number, timeoutMs: number): number;
  eventfd(initial: number, flags: number): number;
  /** splice(2) between a socket and a pipe, neither with an offset (both pointers NULL). */
  splice(fdIn: number, fdOut: number, length: number, flags: number): number;
  /** `fds`: the two ends, read then write. */
  pipe2(fds: Int32Array, flags: number): number;
  /** fcntl(2) with an int argument (F_SETPIPE_SZ). */
  fcntl(fd: number, command: number, value: number): number;
  /**
   * epoll_wait on another thread, where the runtime's FFI can (Deno's
   * `nonblocking`): the runtime's own event loop runs meanwhile. Its errno
   * is that other thread's, so a failure is only retried.
   */
  epollWaitAsync?(epfd: number, events: Uint8Array, max: number, timeoutMs: number): Promise<number>;
  /** The calling thread's errno, right after the call that failed. */
  errno(): number;
}

/** A C type, in the words of Deno's FFI (`bind_bun.ts` translates them to Bun's). */
export type CType = "i32" | "u32" | "usize" | "isize" | "buffer" | "pointer";

/**
 * Every libc function the engine calls, with its C signature (parameters,
 * then result): the one list both bindings load.
 *
 * @example
 * ```ts
 * LIBC_CALLS.read; // [["i32", "buffer", "usize"], "isize"]
 * ```
 */
export const LIBC_CALLS = {
  socket: [["i32", "i32", "i32"], "i32"],
  bind: [["i32", "buffer", "u32"], "i32"],
  listen: [["i32", "i32"], "i32"],
  accept4: [["i32", "buffer", "buffer", "i32"], "i32"],
  connect: [["i32", "buffer", "u32"], "i32"],
  getsockname: [["i32", "buffer", "buffer"], "i32"],
  getsockopt: [["i32", "i32", "i32", "buffer", "buffer"], "i32"],
  setsockopt: [["i32", "i32", "i32", "buffer", "u32"], "i32"],
  read: [["i32", "buffer", "usize"], "isize"],
  write: [["i32", "buffer", "usize"], "isize"],
  splice: [["i32", "pointer", "i32", "pointer", "usize", "u32"], "isize"],
  shutdown: [["i32", "i32"], "i32"],
  close: [["i32"], "i32"],
  pipe2: [["buffer", "i32"], "i32"],
  fcntl: [["i32", "i32", "i32"], "i32"],
  epoll_create1: [["i32"], "i32"],
  epoll_ctl: [["i32", "i32", "i32", "buffer"], "i32"],
  epoll_wait: [["i32", "buffer", "i32", "i32"], "i32"],
  eventfd: [["u32", "i32"], "i32"],
  __errno_location: [[], "pointer"],
} as const satisfies Record<string, readonly [readonly CType[], CType]>;

/** The calls a binding hands on as they are: every argument and the result a number or a typed array. */
const PLAIN_CALLS = [
  "socket",
  "bind",
  "listen",
  "accept4",
  "connect",
  "getsockname",
  "getsockopt",
  "setsockopt",
  "shutdown",
  "close",
  "pipe2",
  "fcntl",
  "epoll_create1",
  "epoll_ctl",
  "epoll_wait",
  "eventfd",
] as const satisfies readonly (keyof typeof LIBC_CALLS & keyof Sys)[];

/** What differs per runtime: the calls that pass a 64-bit length or NULL pointers, errno, and a wait elsewhere. */
export type SysRest = Pick<Sys, "read" | "write" | "splice" | "errno" | "epollWaitAsync">;

/**
 * The {@link Sys} over a binding's loaded functions: the plain calls as
 * they are, and `rest`, what the runtime's FFI makes of the others.
 *
 * @example
 * ```ts
 * const sys = sysOf(library.symbols, { read, write, splice, errno: () => errnoView[0] });
 * ```
 */
export function sysOf(loaded: Pick<Sys, (typeof PLAIN_CALLS)[number]>, rest: SysRest): Sys {
  const sys: Partial<Sys> = { ...rest };
  for (const name of PLAIN_CALLS) Object.assign(sys, { [name]: loaded[name] });
  return sys as Sys;
}

// Linux's numbers: the same on x86-64 and arm64 (asm-generic).
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_NONBLOCK = 0x800;
export const SOCK_CLOEXEC = 0x80000;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_ERROR = 4;
export const SO_KEEPALIVE = 9;
export const SO_REUSEPORT = 15;
export const IPPROTO_TCP = 6;
export const TCP_NODELAY = 1;
export const SHUT_WR = 1;
export const EPOLL_CLOEXEC = 0x80000;
export const EPOLL_CTL_ADD = 1;
export const EPOLL_CTL_DEL = 2;
export const EPOLL_CTL_MOD = 3;
export const EPOLLIN = 0x1;
export const EPOLLPRI = 0x2;
export const EPOLLOUT = 0x4;
export const EPOLLERR = 0x8;
export const EPOLLHUP = 0x10;
export const EPOLLRDHUP = 0x2000;
export const EPOLLET = 0x80000000;
export const O_NONBLOCK = 0x800;
export const O_CLOEXEC = 0x80000;
export const F_SETPIPE_SZ = 1031;
export const SPLICE_F_MOVE = 1;
export const SPLICE_F_NONBLOCK = 2;
export const EFD_NONBLOCK = 0x800;
export const EFD_CLOEXEC = 0x80000;
export const EINTR = 4;
export const EAGAIN = 11;
export const EINPROGRESS = 115;
export const ECONNABORTED = 103;

/** errno values by the names `errorText` knows them by, and a few more worth a name in a log. */
const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  9: "EBADF",
  12: "ENOMEM",
  13: "EACCES",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  32: "EPIPE",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  101: "ENETUNREACH",
  103: "ECONNABORTED",
  104: "ECONNRESET",
  105: "ENOBUFS",
  110: "ETIMEDOUT",
  111: "ECONNREFUSED",
  113: "EHOSTUNREACH",
};

/**
 * An Error for errno `errno` that says it the way the runtimes' errors do
 * for the core (`code`: `ECONNREFUSED`, which `errorText` turns into words).
 *
 * @example
 * ```ts
 * errorText(errnoError(111)); // "connection refused"
 * ```
 */
export function errnoError(errno: number, what = "system call"): Error & { code: string; errno: number } {
  const code = ERRNO_NAMES[errno] ?? `errno ${errno}`;
  return Object.assign(new Error(`${what} failed: ${code}`), { code, errno });
}

/** The largest socket address the engine reads (sockaddr_in6 is 28 bytes). */
export const SOCKADDR_SIZE = 28;

/**
 * Writes `address:port` into `out` as a sockaddr_in or sockaddr_in6 and
 * returns its length, or 0 when `address` is no IP address. An IPv4-mapped
 * IPv6 address is written as IPv4, as the runtimes connect to it.
 *
 * @example
 * ```ts
 * const length = encodeSockaddr("127.0.0.1", 8080, new Uint8Array(SOCKADDR_SIZE)); // 16
 * ```
 */
export function encodeSockaddr(address: string, port: number, out: Uint8Array): number {
  const bytes = addressBytes(address);
  if (!bytes || out.length < SOCKADDR_SIZE || !(port >= 0 && port <= 65535)) return 0;
  out.fill(0, 0, SOCKADDR_SIZE);
  const v6 = bytes.length === 16;
  // sa_family is in host order (little-endian on both architectures); the port in network order.
  out[0] = v6 ? AF_INET6 : AF_INET;
  out[2] = port >> 8;
  out[3] = port & 0xff;
  out.set(bytes, v6 ? 8 : 4);
  return v6 ? 28 : 16;
}

/**
 * The family of a socket address as {@link encodeSockaddr} wrote it.
 *
 * @example
 * ```ts
 * sockaddrFamily(buffer); // AF_INET
 * ```
 */
export function sockaddrFamily(address: Uint8Array): number {
  return address[0] | (address[1] << 8);
}

/**
 * The address and port of a sockaddr the kernel filled in (accept4,
 * getsockname), in the runtimes' words: dotted IPv4, RFC 5952 IPv6,
 * `::ffff:a.b.c.d` for an IPv4 client of an IPv6 socket.
 *
 * @example
 * ```ts
 * decodeSockaddr(buffer); // { address: "127.0.0.1", port: 40312 }
 * ```
 */
export function decodeSockaddr(address: Uint8Array): { address: string; port: number } {
  const port = (address[2] << 8) | address[3];
  if (sockaddrFamily(address) === AF_INET6) return { address: formatAddressBytes(address.subarray(8, 24)), port };
  return { address: `${address[4]}.${address[5]}.${address[6]}.${address[7]}`, port };
}

/**
 * How `struct epoll_event` is laid out: packed on x86-64 (12 bytes, data at
 * 4), naturally aligned elsewhere (16 bytes, data at 8). The engine keeps a
 * descriptor and its generation in the two halves of the 64-bit data.
 *
 * @example
 * ```ts
 * const { size, data } = epollLayout("x64"); // { size: 12, data: 4 }
 * ```
 */
export function epollLayout(arch: string): { size: number; data: number } {
  return arch === "x64" ? { size: 12, data: 4 } : { size: 16, data: 8 };
}

/**
 * Whether the native engine can run on this platform at all: Linux on
 * x86-64 or arm64 (glibc or musl); else the reason it cannot.
 *
 * @example
 * ```ts
 * nativePlatform("darwin", "arm64"); // "needs Linux on x86-64 or arm64, not darwin arm64"
 * ```
 */
export function nativePlatform(platform: string, arch: string): true | string {
  if (platform === "linux" && (arch === "x64" || arch === "arm64")) return true;
  return `needs Linux on x86-64 or arm64, not ${platform} ${arch}`;
}
