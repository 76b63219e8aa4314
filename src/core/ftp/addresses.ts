/**
 * The data addresses FTP names on its control connection, read and written
 * as RFC 959 (`PORT`, `227`) and RFC 2428 (`EPRT`, `229`) spell them.
 *
 * @module
 */
import { addressBytes } from "../selection/hash.ts";

/**
 * An address and a port, as a data connection's end.
 *
 * @example
 * ```ts
 * const end: HostPort = { address: "198.18.0.2", port: 50000 };
 * ```
 */
export interface HostPort {
  address: string;
  port: number;
}

// Six decimal numbers: h1,h2,h3,h4,p1,p2. A 227 reply's may stand anywhere
// in its text (RFC 1123 4.1.2.6 tells clients to scan for them).
const SIX_NUMBERS = /(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})/;

/**
 * The six numbers of a `PORT` argument or a `227` reply in `text`: the end
 * they name and where they stand, or undefined when there are none or one is
 * above 255.
 *
 * @example
 * ```ts
 * findSixNumbers("227 Entering Passive Mode (198,18,0,2,195,80).");
 * // { end: { address: "198.18.0.2", port: 50000 }, index: 27, length: 22 }
 * ```
 */
export function findSixNumbers(text: string): { end: HostPort; index: number; length: number } | undefined {
  const m = SIX_NUMBERS.exec(text);
  if (!m) return undefined;
  const n = m.slice(1).map(Number);
  if (n.some((x) => x > 255)) return undefined;
  return { end: { address: n.slice(0, 4).join("."), port: n[4] * 256 + n[5] }, index: m.index, length: m[0].length };
}

/**
 * An IPv4 end as `PORT` and `227` write it; undefined for an IPv6 address,
 * which they cannot carry.
 *
 * @example
 * ```ts
 * formatSixNumbers({ address: "198.18.0.1", port: 50000 }); // "198,18,0,1,195,80"
 * ```
 */
export function formatSixNumbers(end: HostPort): string | undefined {
  const bytes = addressBytes(end.address);
  if (bytes?.length !== 4) return undefined;
  return `${[...bytes].join(",")},${end.port >> 8},${end.port & 255}`;
}

/**
 * An `EPRT` argument, `<d><af><d><address><d><port><d>` with any printable
 * delimiter `d`; undefined when malformed.
 *
 * @example
 * ```ts
 * parseEprt("|2|::1|50000|"); // { address: "::1", port: 50000 }
 * ```
 */
export function parseEprt(arg: string): HostPort | undefined {
  const d = arg[0];
  if (d === undefined || d < "!" || d > "~") return undefined;
  const parts = arg.split(d);
  if (parts.length !== 5 || parts[0] !== "" || parts[4] !== "") return undefined;
  const [, af, address, portText] = parts;
  const bytes = addressBytes(address);
  if (!bytes || (af === "1") !== (bytes.length === 4) || (af !== "1" && af !== "2")) return undefined;
  const port = parsePort(portText);
  return port === undefined ? undefined : { address, port };
}

/**
 * An `EPRT` argument for `end`, with `|` as the delimiter.
 *
 * @example
 * ```ts
 * formatEprt({ address: "198.18.0.1", port: 50000 }); // "|1|198.18.0.1|50000|"
 * ```
 */
export function formatEprt(end: HostPort): string {
  const bytes = addressBytes(end.address);
  const address = bytes?.length === 4 ? [...bytes].join(".") : end.address;
  return `|${bytes?.length === 4 ? 1 : 2}|${address}|${end.port}|`;
}

// RFC 2428's `(<d><d><d><port><d>)`, any delimiter.
const EPSV_PORT = /\(([!-~])\1\1(\d{1,5})\1\)/;

/**
 * The port of a `229` reply's text and where its digits stand; undefined
 * when there is none.
 *
 * @example
 * ```ts
 * findEpsvPort("229 Entering Extended Passive Mode (|||50000|)"); // { port: 50000, index: 39, length: 5 }
 * ```
 */
export function findEpsvPort(text: string): { port: number; index: number; length: number } | undefined {
  const m = EPSV_PORT.exec(text);
  if (!m) return undefined;
  const port = parsePort(m[2]);
  return port === undefined ? undefined : { port, index: m.index + 4, length: m[2].length };
}

function parsePort(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
}

/**
 * Whether two address texts name one host: `::ffff:10.0.0.1` is
 * `10.0.0.1`, and IPv6 is compared by value, not by spelling.
 *
 * @example
 * ```ts
 * sameHost("::ffff:198.18.0.1", "198.18.0.1"); // true
 * ```
 */
export function sameHost(a: string, b: string): boolean {
  if (a === b) return true;
  const x = addressBytes(a);
  const y = addressBytes(b);
  return x !== undefined && y !== undefined && x.length === y.length && x.every((byte, i) => byte === y[i]);
}

/**
 * An address as sockets are best given it: an IPv4-mapped IPv6 address as
 * plain IPv4 (what `227` can carry, and what an IPv4 listener takes).
 *
 * @example
 * ```ts
 * plainAddress("::ffff:127.0.0.1"); // "127.0.0.1"
 * ```
 */
export function plainAddress(address: string): string {
  const bytes = address.includes(":") ? addressBytes(address) : undefined;
  return bytes?.length === 4 ? [...bytes].join(".") : address;
}
