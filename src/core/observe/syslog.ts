/**
 * The local syslog wire format (RFC 3164, as `syslog(3)` writes it to
 * `/dev/log`): `<PRI>Mmm dd hh:mm:ss balance[pid]: message`, facility daemon.
 *
 * @module
 */

/** The levels balance logs at, mildest first. */
export type Level = "trace" | "debug" | "info" | "warning" | "error" | "fatal";

/** `LOG_DAEMON`: system daemons. */
const FACILITY_DAEMON = 3;

const SEVERITY: Record<Level, number> = { trace: 7, debug: 7, info: 6, warning: 4, error: 3, fatal: 2 };

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/**
 * One syslog line for the local socket: priority (facility daemon), local
 * time, tag `balance[pid]`. Line breaks become spaces: one record, one line.
 *
 * @example
 * ```ts
 * syslogLine("warning", "connect failed", 4242, new Date(2024, 0, 5, 9, 3, 7));
 * // "<28>Jan  5 09:03:07 balance[4242]: connect failed"
 * ```
 */
export function syslogLine(level: Level, message: string, pid: number, at: Date): string {
  const pri = FACILITY_DAEMON * 8 + SEVERITY[level];
  const two = (n: number) => String(n).padStart(2, "0");
  const stamp = `${MONTHS[at.getMonth()]} ${String(at.getDate()).padStart(2)} ${two(at.getHours())}:${
    two(at.getMinutes())
  }:${two(at.getSeconds())}`;
  return `<${pri}>${stamp} balance[${pid}]: ${message.replace(/[\r\n]+/g, " ")}`;
}

/**
 * A `struct sockaddr_un` for `path`: BSDs (macOS) start with a length byte
 * and a one-byte family, Linux with a two-byte family. Returns the bytes
 * and the length to pass to `connect`. Throws when the path does not fit.
 *
 * @example
 * ```ts
 * const { bytes, length } = unixSocketAddress("/dev/log", "linux");
 * ```
 */
export function unixSocketAddress(path: string, platform: string): { bytes: Uint8Array; length: number } {
  const name = new TextEncoder().encode(path);
  const bsd = platform === "darwin" || platform.endsWith("bsd");
  const room = bsd ? 104 : 108;
  if (name.length >= room) throw new Error(`socket path too long: ${path}`);
  const bytes = new Uint8Array(2 + room);
  if (bsd) {
    bytes[1] = 1; // AF_UNIX
  } else {
    new DataView(bytes.buffer).setUint16(0, 1, true); // AF_UNIX, little-endian on every Linux we build for
  }
  bytes.set(name, 2);
  const length = 2 + name.length + 1;
  if (bsd) bytes[0] = length;
  return { bytes, length };
}
