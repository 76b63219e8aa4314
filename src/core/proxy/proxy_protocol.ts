/**
 * The PROXY protocol header (HAProxy's `doc/proxy-protocol.txt`, versions 1
 * and 2): encoding the header balance sends to a channel with
 * `--proxy-protocol`, and parsing, incrementally, the one a client must send
 * with `--accept-proxy`.
 *
 * Encoding is pure: the adapter writes the bytes before (or together with)
 * the client's first bytes. Parsing is incremental and keeps no state: the
 * adapter appends what it read and calls {@link parseProxyHeader} again
 * until the answer is a header or an error. Garbage is refused as soon as
 * the bytes seen disprove both versions, so a hostile client holds nothing
 * for long, and the work per call is bounded (see the function's doc).
 *
 * @module
 */
import { addressBytes } from "../selection/hash.ts";

/** An address and port, as a socket reports them. */
export interface ProxyEndpoint {
  /** Numeric IPv4 or IPv6 text; IPv4-mapped IPv6 is sent as IPv4. */
  address: string;
  port: number;
}

/** The PROXY protocol versions: 1 (a text line) or 2 (binary). */
export type ProxyVersion = 1 | 2;

/**
 * A complete, valid header. `local` means "use the real connection's
 * endpoints": a v2 `LOCAL` (health checks), a v1 `UNKNOWN`, or a v2 family
 * balance does not relay (UNSPEC, UDP, UNIX: the specification asks a
 * receiver to fall back to the real endpoints for those); `src` and `dst`
 * are then absent.
 *
 * @example
 * ```ts
 * const r = parseProxyHeader(bytes);
 * if (r.kind === "header") client = r.src ?? peer; // and skip r.length bytes
 * ```
 */
export interface ProxyHeader {
  kind: "header";
  /** Bytes the header takes (v2 TLVs included); what follows is the client's. */
  length: number;
  version: ProxyVersion;
  local: boolean;
  family: "TCP4" | "TCP6" | "UNKNOWN";
  /** The client, when not local. */
  src?: ProxyEndpoint;
  /** The address the client connected to, when not local. */
  dst?: ProxyEndpoint;
}

/**
 * What {@link parseProxyHeader} makes of the bytes so far: need more, a
 * malformed header (one line for a log), or a header.
 *
 * @example
 * ```ts
 * const r: ProxyParse = parseProxyHeader(new Uint8Array([0x50])); // { kind: "incomplete" }
 * ```
 */
export type ProxyParse = { kind: "incomplete" } | { kind: "error"; reason: string } | ProxyHeader;

/**
 * The longest v1 line, CRLF included (`PROXY UNKNOWN` with two full IPv6
 * addresses and ports). A receiver that has this many bytes without a CRLF
 * has garbage.
 *
 * @example
 * ```ts
 * encodeProxyV1(src, dst).length <= PROXY_V1_MAX_LENGTH; // true for every header balance sends
 * ```
 */
export const PROXY_V1_MAX_LENGTH = 107;

/**
 * The longest v2 header: 16 fixed bytes and a 16-bit length. The most a
 * client can make the adapter buffer before it is refused or timed out.
 *
 * @example
 * ```ts
 * const buffer = new Uint8Array(PROXY_V2_MAX_LENGTH); // holds any header a client can send
 * ```
 */
export const PROXY_V2_MAX_LENGTH = 16 + 0xffff;

const V2_SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const V1_PREFIX = [0x50, 0x52, 0x4f, 0x58, 0x59, 0x20]; // "PROXY "
const CR = 0x0d;
const LF = 0x0a;
const SPACE = 0x20;

// ---------------------------------------------------------------- encoding

/**
 * The v1 line for a client `src` that connected to `dst`:
 * `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n`. IPv4-mapped IPv6 is
 * written as IPv4; when one side is IPv4 and the other true IPv6, both are
 * written as IPv6 (the IPv4 one mapped), since a line has one family. IPv6 is
 * in RFC 5952 form (lowercase, longest zero run as `::`), all hexadecimal:
 * the specification describes IPv6 as hex groups only. An endpoint that is
 * not numeric IP (a UNIX socket) gives `PROXY UNKNOWN\r\n`, which tells the
 * receiver to use the real connection, as the specification prescribes.
 *
 * @example
 * ```ts
 * encodeProxyV1({ address: "::ffff:10.0.0.1", port: 40000 }, { address: "10.0.0.2", port: 80 });
 * // bytes of "PROXY TCP4 10.0.0.1 10.0.0.2 40000 80\r\n"
 * ```
 */
export function encodeProxyV1(src: ProxyEndpoint, dst: ProxyEndpoint): Uint8Array {
  const pair = addressPair(src, dst);
  if (pair === undefined) return encodeProxyV1Unknown();
  const [s, d] = pair;
  const line = new Uint8Array(
    11 + textLength(s) + 1 + textLength(d) + 1 + decimalLength(src.port) + 1 + decimalLength(dst.port) + 2,
  );
  let at = putAscii(line, 0, s.length === 4 ? "PROXY TCP4 " : "PROXY TCP6 ");
  at = putAddress(line, at, s);
  line[at++] = SPACE;
  at = putAddress(line, at, d);
  line[at++] = SPACE;
  at = putDecimal(line, at, src.port);
  line[at++] = SPACE;
  at = putDecimal(line, at, dst.port);
  line[at++] = CR;
  line[at] = LF;
  return line;
}

/**
 * `PROXY UNKNOWN\r\n`: a v1 header that tells the receiver to use the real
 * connection's endpoints; for health checks, whose connections relay no
 * client.
 *
 * @example
 * ```ts
 * conn.write(encodeProxyV1Unknown()); // before a health check's probe
 * ```
 */
export function encodeProxyV1Unknown(): Uint8Array {
  const line = new Uint8Array(15);
  putAscii(line, 0, "PROXY UNKNOWN\r\n");
  return line;
}

/**
 * The v2 header for a client `src` that connected to `dst`: signature,
 * `0x21` (v2, PROXY), `0x11` (TCP/IPv4) or `0x21` (TCP/IPv6) (`0x12` and
 * `0x22`, UDP, for a `datagram`), the address
 * length (12 or 36, big-endian), both addresses, both ports. Families are
 * chosen as for {@link encodeProxyV1}; an endpoint that is not numeric IP
 * gives the `LOCAL` header ({@link encodeProxyV2Local}).
 *
 * @example
 * ```ts
 * encodeProxyV2({ address: "127.0.0.9", port: 40000 }, { address: "127.0.0.1", port: 80 }).length; // 28
 * ```
 */
export function encodeProxyV2(src: ProxyEndpoint, dst: ProxyEndpoint, datagram = false): Uint8Array {
  const pair = addressPair(src, dst);
  if (pair === undefined) return encodeProxyV2Local();
  const [s, d] = pair;
  const addressLength = 2 * s.length + 4;
  const header = new Uint8Array(16 + addressLength);
  header.set(V2_SIGNATURE);
  header[12] = 0x21;
  // The low nibble is the transport: 1 STREAM, 2 DGRAM.
  header[13] = (s.length === 4 ? 0x10 : 0x20) | (datagram ? 2 : 1);
  header[15] = addressLength;
  header.set(s, 16);
  header.set(d, 16 + s.length);
  const ports = 16 + 2 * s.length;
  header[ports] = src.port >> 8;
  header[ports + 1] = src.port & 0xff;
  header[ports + 2] = dst.port >> 8;
  header[ports + 3] = dst.port & 0xff;
  return header;
}

/**
 * The v2 `LOCAL` header (command `0x20`, family `0x00`, length 0): the
 * connection is the proxy's own, as for health checks; every v2 receiver
 * must accept it and use the real endpoints.
 *
 * @example
 * ```ts
 * encodeProxyV2Local().length; // 16
 * ```
 */
export function encodeProxyV2Local(): Uint8Array {
  const header = new Uint8Array(16);
  header.set(V2_SIGNATURE);
  header[12] = 0x20;
  return header;
}

/**
 * The header of `version` for `src` → `dst`, or, with no endpoints, the
 * version's "use the real connection" header (v1 `UNKNOWN`, v2 `LOCAL`).
 * With `--accept-proxy` and `--proxy-protocol` together, pass the received
 * header's endpoints (falling back to the real peer and local address when
 * it was local): they go on unchanged, as HAProxy does.
 *
 * @example
 * ```ts
 * const r = parseProxyHeader(received); // a header
 * encodeProxyHeader(2, r.src ?? peer, r.dst ?? local); // to the channel
 * encodeProxyHeader(1); // a health check: "PROXY UNKNOWN\r\n"
 * ```
 */
export function encodeProxyHeader(version: ProxyVersion, src?: ProxyEndpoint, dst?: ProxyEndpoint): Uint8Array {
  if (src === undefined || dst === undefined) return version === 1 ? encodeProxyV1Unknown() : encodeProxyV2Local();
  return version === 1 ? encodeProxyV1(src, dst) : encodeProxyV2(src, dst);
}

// Both addresses as bytes of one family (4 or 16 each), or undefined when
// either is not a numeric address or a port is out of range.
function addressPair(src: ProxyEndpoint, dst: ProxyEndpoint): [Uint8Array, Uint8Array] | undefined {
  if (!isPort(src.port) || !isPort(dst.port)) return undefined;
  const s = addressBytes(src.address);
  const d = addressBytes(dst.address);
  if (s === undefined || d === undefined) return undefined;
  if (s.length === d.length) return [s, d];
  return s.length === 4 ? [mapped(s), d] : [s, mapped(d)];
}

function isPort(port: number): boolean {
  return Number.isInteger(port) && port >= 0 && port <= 0xffff;
}

function mapped(v4: Uint8Array): Uint8Array {
  const v6 = new Uint8Array(16);
  v6[10] = 0xff;
  v6[11] = 0xff;
  v6.set(v4, 12);
  return v6;
}

function putAscii(out: Uint8Array, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) out[at++] = text.charCodeAt(i);
  return at;
}

function decimalLength(n: number): number {
  return n < 10 ? 1 : n < 100 ? 2 : n < 1000 ? 3 : n < 10000 ? 4 : 5;
}

function putDecimal(out: Uint8Array, at: number, n: number): number {
  const end = at + decimalLength(n);
  for (let i = end - 1; i >= at; i--) {
    out[i] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
  }
  return end;
}

function hexLength(n: number): number {
  return n < 0x10 ? 1 : n < 0x100 ? 2 : n < 0x1000 ? 3 : 4;
}

function putHex(out: Uint8Array, at: number, n: number): number {
  const end = at + hexLength(n);
  for (let i = end - 1; i >= at; i--) {
    const digit = n & 0xf;
    out[i] = digit < 10 ? 0x30 + digit : 0x57 + digit; // 0x57 + 10 = "a"
    n >>= 4;
  }
  return end;
}

// RFC 5952: the longest run of two or more zero groups (the first of equal
// runs) becomes "::"; a lone zero group stays "0".
function zeroRun(v6: Uint8Array): [start: number, length: number] {
  let best = -1;
  let bestLength = 1;
  for (let g = 0; g < 8;) {
    if (v6[2 * g] !== 0 || v6[2 * g + 1] !== 0) {
      g++;
      continue;
    }
    let end = g;
    while (end < 8 && v6[2 * end] === 0 && v6[2 * end + 1] === 0) end++;
    if (end - g > bestLength) [best, bestLength] = [g, end - g];
    g = end;
  }
  return best < 0 ? [8, 0] : [best, bestLength];
}

function textLength(address: Uint8Array): number {
  let n = 0;
  if (address.length === 4) {
    for (const b of address) n += decimalLength(b);
    return n + 3;
  }
  const [zero, run] = zeroRun(address);
  for (let g = 0; g < 8; g++) {
    if (g === zero) {
      n += 2;
      g += run - 1;
    } else {
      n += hexLength((address[2 * g] << 8) | address[2 * g + 1]) + (g + 1 === zero || g === 7 ? 0 : 1);
    }
  }
  return n;
}

function putAddress(out: Uint8Array, at: number, address: Uint8Array): number {
  if (address.length === 4) {
    for (let i = 0; i < 4; i++) {
      if (i) out[at++] = 0x2e;
      at = putDecimal(out, at, address[i]);
    }
    return at;
  }
  const [zero, run] = zeroRun(address);
  for (let g = 0; g < 8; g++) {
    if (g === zero) {
      out[at++] = 0x3a;
      out[at++] = 0x3a;
      g += run - 1;
      continue;
    }
    at = putHex(out, at, (address[2 * g] << 8) | address[2 * g + 1]);
    if (g + 1 !== zero && g !== 7) out[at++] = 0x3a;
  }
  return at;
}

// ----------------------------------------------------------------- parsing

const INCOMPLETE: ProxyParse = Object.freeze({ kind: "incomplete" });

function failure(reason: string): ProxyParse {
  return { kind: "error", reason };
}

/**
 * Parses the PROXY header at the start of `bytes`, everything the client
 * has sent so far. v1 and v2 are told apart by the first byte (`P` or CR);
 * `incomplete` means these bytes may still begin a valid header (append the
 * next read and call again), and anything else is an `error` as soon as the
 * bytes disprove both versions: a wrong first byte at once, a wrong
 * signature byte, version, command, family or length as soon as it arrives,
 * a v1 line with a character it cannot contain, a lone CR or LF, or no CRLF
 * within {@link PROXY_V1_MAX_LENGTH} bytes. Never throws.
 *
 * A call reads at most the first {@link PROXY_V1_MAX_LENGTH} bytes (v1), or
 * the 16-byte v2 header, its addresses and, once all has arrived, the TLV
 * headers (skipped, but they must fill the length exactly: HAProxy too
 * refuses a TLV that overruns it): O(header length) per call, whatever
 * follows. An `incomplete` answer allocates nothing (it is one shared
 * object), so calling again on every read costs no garbage. What follows
 * the header (from `length` on) is the client's first data.
 *
 * @example
 * ```ts
 * let buffered = new Uint8Array(0);
 * for await (const chunk of client.readable) {
 *   buffered = concat(buffered, chunk);
 *   const r = parseProxyHeader(buffered);
 *   if (r.kind === "incomplete") continue;
 *   if (r.kind === "error") return refuse(r.reason);
 *   return relay(r.src ?? peer, buffered.subarray(r.length));
 * }
 * ```
 */
export function parseProxyHeader(bytes: Uint8Array): ProxyParse {
  if (bytes.length === 0) return INCOMPLETE;
  if (bytes[0] === V2_SIGNATURE[0]) return parseV2(bytes);
  if (bytes[0] === V1_PREFIX[0]) return parseV1(bytes);
  return failure('not a PROXY header (neither v1 "PROXY " nor the v2 signature)');
}

function parseV2(bytes: Uint8Array): ProxyParse {
  const n = bytes.length;
  for (let i = 0; i < V2_SIGNATURE.length && i < n; i++) {
    if (bytes[i] !== V2_SIGNATURE[i]) return failure("PROXY v2: wrong signature");
  }
  if (n < 13) return INCOMPLETE;
  if (bytes[12] >> 4 !== 2) return failure(`PROXY v2: version ${bytes[12] >> 4}, not 2`);
  const command = bytes[12] & 0xf;
  if (command > 1) return failure(`PROXY v2: unknown command ${command}`);
  const local = command === 0;
  if (n < 14) return INCOMPLETE;
  // The specification asks a receiver to ignore the family of a LOCAL
  // header, and to fall back to the real endpoints for the valid families
  // it does not relay (UNSPEC, UDP, UNIX); only TCP over IPv4 or IPv6 names
  // a client here.
  const familyByte = bytes[13];
  const minimum = local ? 0 : V2_ADDRESS_LENGTH.get(familyByte);
  if (minimum === undefined) return failure(`PROXY v2: unknown family/protocol 0x${hex2(familyByte)}`);
  if (n < 16) return INCOMPLETE;
  const addressLength = (bytes[14] << 8) | bytes[15];
  if (addressLength < minimum) {
    return failure(`PROXY v2: length ${addressLength} is too short for family/protocol 0x${hex2(familyByte)}`);
  }
  const length = 16 + addressLength;
  if (n < length) return INCOMPLETE;
  if (local || (familyByte !== 0x11 && familyByte !== 0x21)) {
    return { kind: "header", length, version: 2, local: true, family: "UNKNOWN" };
  }
  const size = familyByte === 0x11 ? 4 : 16;
  const ports = 16 + 2 * size;
  if (!tlvsTile(bytes, ports + 4, length)) return failure("PROXY v2: a TLV overruns the header's length");
  return {
    kind: "header",
    length,
    version: 2,
    local: false,
    family: size === 4 ? "TCP4" : "TCP6",
    src: { address: formatAddressBytes(bytes.subarray(16, 16 + size)), port: (bytes[ports] << 8) | bytes[ports + 1] },
    dst: {
      address: formatAddressBytes(bytes.subarray(16 + size, ports)),
      port: (bytes[ports + 2] << 8) | bytes[ports + 3],
    },
  };
}

// The shortest address block of each family/protocol byte the
// specification defines: UNSPEC, TCP and UDP over IPv4 and IPv6, UNIX
// stream and datagram.
const V2_ADDRESS_LENGTH = new Map([
  [0x00, 0],
  [0x11, 12],
  [0x12, 12],
  [0x21, 36],
  [0x22, 36],
  [0x31, 216],
  [0x32, 216],
]);

function hex2(b: number): string {
  return b.toString(16).padStart(2, "0");
}

// Whether TLVs (type, 16-bit length, value) from `at` end exactly at `end`.
function tlvsTile(bytes: Uint8Array, at: number, end: number): boolean {
  while (at < end) {
    if (at + 3 > end) return false;
    at += 3 + ((bytes[at + 1] << 8) | bytes[at + 2]);
  }
  return at === end;
}

const scratch = new Uint8Array(39);
const latin1 = new TextDecoder("latin1");

/**
 * An address (4 or 16 bytes) as balance shows a client: the encoders'
 * RFC 5952 form, except that IPv4-mapped IPv6 keeps its dotted tail, as
 * sockets report such clients.
 *
 * @example
 * ```ts
 * formatAddressBytes(new Uint8Array([127, 0, 0, 1])); // "127.0.0.1"
 * ```
 */
export function formatAddressBytes(address: Uint8Array): string {
  if (
    address.length === 16 && address.subarray(0, 10).every((b) => b === 0) && address[10] === 0xff &&
    address[11] === 0xff
  ) {
    return "::ffff:" + formatAddressBytes(address.subarray(12));
  }
  return latin1.decode(scratch.subarray(0, putAddress(scratch, 0, address)));
}

const V1_FAMILIES = ["TCP4 ", "TCP6 ", "UNKNOWN"] as const;

function parseV1(bytes: Uint8Array): ProxyParse {
  const n = bytes.length;
  for (let i = 0; i < V1_PREFIX.length && i < n; i++) {
    if (bytes[i] !== V1_PREFIX[i]) return failure('PROXY v1: the line does not start with "PROXY "');
  }
  const family = V1_FAMILIES.find((token) => startsWith(bytes, V1_PREFIX.length, token));
  if (family === undefined) return failure("PROXY v1: unknown protocol (not TCP4, TCP6 or UNKNOWN)");
  const start = V1_PREFIX.length + family.length;
  if (n <= start) return INCOMPLETE;
  const tcp = family !== "UNKNOWN";
  const v6 = family === "TCP6 ";
  // UNKNOWN may carry anything up to the CRLF, which the receiver ignores.
  if (!tcp && bytes[start] !== SPACE && bytes[start] !== CR) return failure("PROXY v1: unknown protocol");
  let cr = -1;
  for (let i = start; i < n && i <= PROXY_V1_MAX_LENGTH - 2; i++) {
    const c = bytes[i];
    if (c === CR) {
      cr = i;
      break;
    }
    if (c === LF) return failure("PROXY v1: LF without CR");
    if (tcp && !isAddressChar(c, v6)) {
      return failure(`PROXY v1: byte 0x${hex2(c)} cannot appear in a ${family.trim()} line`);
    }
  }
  if (cr < 0) {
    return n >= PROXY_V1_MAX_LENGTH - 1 ? failure(`PROXY v1: no CRLF within ${PROXY_V1_MAX_LENGTH} bytes`) : INCOMPLETE;
  }
  if (cr + 1 === n) return INCOMPLETE;
  if (bytes[cr + 1] !== LF) return failure("PROXY v1: CR without LF");
  const length = cr + 2;
  if (!tcp) return { kind: "header", length, version: 1, local: true, family: "UNKNOWN" };
  const fields = latin1.decode(bytes.subarray(start, cr)).split(" ");
  if (fields.length !== 4) return failure(`PROXY v1: ${fields.length} fields after ${family.trim()}, not 4`);
  const src = v1Address(fields[0], v6);
  const dst = v1Address(fields[1], v6);
  if (src === undefined || dst === undefined) {
    return failure(`PROXY v1: an address is not canonical ${v6 ? "IPv6" : "IPv4"}`);
  }
  const sport = v1Port(fields[2]);
  const dport = v1Port(fields[3]);
  if (sport === undefined || dport === undefined) return failure("PROXY v1: a port is not a decimal 0..65535");
  return {
    kind: "header",
    length,
    version: 1,
    local: false,
    family: v6 ? "TCP6" : "TCP4",
    src: { address: src, port: sport },
    dst: { address: dst, port: dport },
  };
}

// Whether the bytes from `at` agree with `token` as far as they go.
function startsWith(bytes: Uint8Array, at: number, token: string): boolean {
  for (let i = 0; i < token.length && at + i < bytes.length; i++) {
    if (bytes[at + i] !== token.charCodeAt(i)) return false;
  }
  return true;
}

// Digits, dots and spaces; IPv6 adds colons and hex letters.
function isAddressChar(c: number, v6: boolean): boolean {
  if ((c >= 0x30 && c <= 0x39) || c === 0x2e || c === SPACE) return true;
  return v6 && (c === 0x3a || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46));
}

// The address in balance's form, or undefined when the text is not the
// family's: IPv4 without leading zeros (they could be read as octal), IPv6
// with at least one colon (a dotted tail is allowed, as inet_pton does).
function v1Address(text: string, v6: boolean): string | undefined {
  if (v6 !== text.includes(":")) return undefined;
  if (!v6 && /(^|\.)0\d/.test(text)) return undefined;
  const address = addressBytes(text);
  if (address === undefined) return undefined;
  return formatAddressBytes(v6 && address.length === 4 ? mapped(address) : address);
}

function v1Port(text: string): number | undefined {
  if (!/^(0|[1-9]\d{0,4})$/.test(text)) return undefined;
  const port = Number(text);
  return port <= 0xffff ? port : undefined;
}

/**
 * What `--proxy-protocol` and `--accept-proxy` set for a whole balancer,
 * as `show --json` reports them.
 *
 * @example
 * ```ts
 * const settings: ProxySettings = { send: 2, accept: false };
 * ```
 */
export interface ProxySettings {
  /** `--proxy-protocol`: the header version sent to channels; absent, none is sent. */
  send?: ProxyVersion;
  /** `--accept-proxy`: every client must begin with a header. */
  accept: boolean;
}
