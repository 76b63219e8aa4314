/**
 * A sender to a local Unix datagram socket (`/dev/log`) through libc, the
 * way `syslog(3)` does it: the runtimes' own socket APIs cannot send
 * datagrams to a Unix socket path (or only asynchronously, and a line
 * queued when the process exits is lost). Each adapter binds these four
 * libc calls with its runtime's FFI; the logic here is shared.
 *
 * @module
 */
import process from "node:process";
import { unixSocketAddress } from "../core/observe/syslog.ts";
import type { DatagramSender } from "./types.ts";

/** The libc calls a {@link DatagramSender} needs, as an FFI binds them. */
export interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  connect(fd: number, address: Uint8Array, length: number): number;
  send(fd: number, data: Uint8Array, length: number, flags: number): number;
  close(fd: number): number;
}

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
/** Linux only: no descriptor leaks into a process started later. */
const SOCK_CLOEXEC = 0x80000;

/**
 * Where libc lives, most likely first: glibc, musl (its loader is its libc),
 * macOS.
 *
 * @example
 * ```ts
 * for (const name of libcNames(process.platform, process.arch)) tryOpen(name);
 * ```
 */
export function libcNames(platform: string, arch: string): string[] {
  if (platform === "darwin") return ["/usr/lib/libSystem.B.dylib"];
  const musl = arch === "arm64" ? "aarch64" : "x86_64";
  return ["libc.so.6", `/lib/ld-musl-${musl}.so.1`, "libc.so"];
}

/**
 * Binds libc with `load` (an adapter's FFI; throws when the library is not
 * there), trying {@link libcNames} in turn, and connects a
 * {@link unixDatagramSender} to `path`. Throws when no libc loads or `path`
 * cannot be connected to.
 *
 * @example
 * ```ts
 * const sender = openWithLibc("/dev/log", (name) => bindLibc(name));
 * ```
 */
export function openWithLibc(path: string, load: (name: string) => Libc): DatagramSender {
  let lastError: unknown;
  for (const name of libcNames(process.platform, process.arch)) {
    let libc: Libc;
    try {
      libc = load(name);
    } catch (err) {
      lastError = err;
      continue;
    }
    return unixDatagramSender(libc, path, process.platform);
  }
  throw lastError;
}

/**
 * Connects a datagram socket to `path` and returns a sender whose every
 * `send` is done when it returns. A send that fails (the syslog daemon
 * restarted and made a new socket) reconnects once and retries. Throws
 * when `path` cannot be connected to (no socket, nobody reading).
 *
 * @example
 * ```ts
 * const sender = unixDatagramSender(libc, "/dev/log", process.platform);
 * sender.send("<30>Jan  5 09:03:07 balance[42]: started");
 * ```
 */
export function unixDatagramSender(libc: Libc, path: string, platform: string): DatagramSender {
  const { bytes, length } = unixSocketAddress(path, platform);
  const open = (): number => {
    const fd = libc.socket(AF_UNIX, SOCK_DGRAM | (platform === "linux" ? SOCK_CLOEXEC : 0), 0);
    if (fd < 0) throw new Error("cannot make a datagram socket");
    if (libc.connect(fd, bytes, length) < 0) {
      libc.close(fd);
      throw new Error(`cannot connect to ${path}`);
    }
    return fd;
  };
  let fd = open();
  const encoder = new TextEncoder();
  return {
    send(line) {
      const data = encoder.encode(line);
      if (libc.send(fd, data, data.length, 0) >= 0) return true;
      try {
        if (fd >= 0) libc.close(fd);
        fd = open();
      } catch {
        fd = -1;
        return false;
      }
      return libc.send(fd, data, data.length, 0) >= 0;
    },
    close() {
      if (fd >= 0) libc.close(fd);
      fd = -1;
    },
  };
}
