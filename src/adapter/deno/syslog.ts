/**
 * The local syslog socket under Deno: libc's `socket`/`connect`/`send`
 * through `Deno.dlopen` (needs `--allow-ffi`, part of `--allow-all`).
 *
 * @module
 */
import { openWithLibc } from "../libc_datagram.ts";
import type { DatagramSender } from "../types.ts";

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
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
    const s = Deno.dlopen(name, SYMBOLS).symbols;
    return {
      socket: (domain, type, protocol) => s.socket(domain, type, protocol),
      connect: (fd, address, length) => s.connect(fd, address, length),
      send: (fd, data, length, flags) => Number(s.send(fd, data, BigInt(length), flags)),
      close: (fd) => s.close(fd),
    };
  });
}
