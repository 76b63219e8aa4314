/**
 * The local syslog socket under Bun (source and compiled binary): libc's
 * `socket`/`connect`/`send` through `bun:ffi`.
 *
 * @module
 */
/// <reference types="bun-types" />
import { dlopen, FFIType } from "bun:ffi";
import { openWithLibc } from "../libc_datagram.ts";
import type { DatagramSender } from "../types.ts";

const SYMBOLS = {
  socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  connect: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  send: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
  close: { args: [FFIType.i32], returns: FFIType.i32 },
} as const;

/**
 * Opens a sender to the Unix datagram socket at `path` (`/dev/log`); throws
 * when there is none or libc cannot be loaded.
 *
 * @example
 * ```ts
 * openSyslogSocket("/dev/log").send("<30>Jan  5 09:03:07 balance[42]: started");
 * ```
 */
export function openSyslogSocket(path: string): DatagramSender {
  return openWithLibc(path, (name) => {
    const s = dlopen(name, SYMBOLS).symbols;
    return {
      socket: (domain, type, protocol) => s.socket(domain, type, protocol),
      connect: (fd, address, length) => s.connect(fd, address, length),
      send: (fd, data, length, flags) => Number(s.send(fd, data, length, flags)),
      close: (fd) => s.close(fd),
    };
  });
}
