/**
 * `--sni`: where a TLS client is going, read from its ClientHello without
 * terminating TLS, as nginx's `ssl_preread` and HAProxy's `req.ssl_sni` do.
 * The adapter feeds a new client's reads to a {@link ClientHelloReader}
 * until it decides, routes on the name, and sends the chosen backend
 * {@link ClientHelloReader.buffered} first: the handshake stays end to end.
 *
 * @module
 */
import { shown } from "../util/shown.ts";

/**
 * What a {@link ClientHelloReader} makes of the bytes so far: need more, not
 * TLS at all (SSH, plain HTTP, an SSLv2 hello), a ClientHello and the host
 * name it asks for (`undefined` without the server_name extension), or a
 * refusal in one line for the log.
 *
 * @example
 * ```ts
 * const r: HelloRead = new ClientHelloReader().push(chunk);
 * if (r.kind === "hello") backend = routes.route(r.serverName ?? "");
 * ```
 */
export type HelloRead =
  | { kind: "more" }
  | { kind: "not-tls" }
  | { kind: "hello"; serverName: string | undefined }
  | { kind: "error"; reason: string };

/**
 * The most a client may send before the reader decides, record headers
 * included, as nginx's `preread_buffer_size` by default: real hellos take
 * 200-520 bytes, 1.5 KiB with a post-quantum key share.
 */
const BUDGET = 16384;
const MAX_RECORD = 1 << 14;
const RECORD_HEADER = 5;
const HANDSHAKE_HEADER = 4;
const CONTENT_HANDSHAKE = 0x16;
const CLIENT_HELLO = 1;
const SERVER_NAME = 0;
const HOST_NAME = 0;
const DOT = 0x2e;
const MORE: HelloRead = Object.freeze({ kind: "more" });
const NOT_TLS: HelloRead = Object.freeze({ kind: "not-tls" });
const EMPTY = new Uint8Array(0);

/**
 * Collects a new client's reads until they show where it is going. It
 * decides as soon as the bytes do: `not-tls` on the first byte, an error at
 * the byte that disproves a ClientHello (or when 16 KiB hold no whole one),
 * `hello` with the last byte of the ClientHello; however the bytes are cut
 * into reads, the answer is the same.
 *
 * A first read that decides, as one holding a whole hello does, is parsed
 * where it lies and costs no copy (allocating a buffer was most of the
 * cost). After a first read that does not, the bytes are kept in one buffer,
 * sized for the whole hello when that read held its header (a 1.5 KiB hello
 * cut by a 1,460-byte MSS costs one buffer), and doubled when too small, so
 * a hello dribbled a byte at a time costs linear copying. The record layer
 * is walked in place; only a hello that records split is joined into a
 * second buffer. Once the reader has decided, `push`
 * and `ended` throw: the session has moved on, and a second answer would be
 * a bug.
 *
 * @example
 * ```ts
 * const reader = new ClientHelloReader();
 * let r = reader.push(firstRead);
 * while (r.kind === "more") r = (next = await read()) ? reader.push(next) : reader.ended();
 * if (r.kind === "hello") await backend.write(reader.buffered());
 * ```
 */
export class ClientHelloReader {
  private buffer: Uint8Array = EMPTY;
  private length = 0;
  private decided = false;
  /** The next byte of the record layer to look at. */
  private at = 0;
  /** Bytes of the current record's fragment not seen yet: 0 before a record header. */
  private recordLeft = 0;
  /** Where the handshake message lies in `buffer`, as start and end offsets: one pair unless records split it. */
  private pieces: number[] = [];
  private have = 0;
  /** The handshake header's 4 bytes until they give the message's length, then the whole message's. */
  private need = HANDSHAKE_HEADER;

  /**
   * Adds a read; an empty one changes nothing. When the first read decides,
   * {@link buffered} is a view of `chunk`: use it before the caller reads
   * into `chunk` again.
   */
  push(chunk: Uint8Array): HelloRead {
    if (this.decided) throw new Error("ClientHelloReader: push after the reader decided");
    if (chunk.length === 0) return MORE;
    if (this.length > 0) {
      this.append(chunk);
      return this.read();
    }
    // The first read is read where it lies: a whole hello in it, the usual case, costs no copy.
    this.buffer = chunk;
    this.length = chunk.length;
    if (chunk[0] !== CONTENT_HANDSHAKE) return this.decide(NOT_TLS);
    const read = this.read();
    if (read.kind === "more") {
      // The caller reads into `chunk` again: keep what it holds, with room for
      // all the hello's header announces, so that its next reads fit.
      this.buffer = new Uint8Array(
        Math.max(chunk.length, this.have >= HANDSHAKE_HEADER ? RECORD_HEADER + this.need : 0),
      );
      this.buffer.set(chunk);
    }
    return read;
  }

  /**
   * The client closed (or half-closed) before the reader decided. A client
   * that sent nothing gets a reason of its own: `buffered().length` is 0, and
   * a session may count it as a bare connect (a front balancer's check).
   */
  ended(): HelloRead {
    if (this.decided) throw new Error("ClientHelloReader: ended after the reader decided");
    return this.fail(this.length === 0 ? "closed before sending a byte" : "closed before the whole ClientHello");
  }

  /**
   * Every byte pushed so far, in order, the ClientHello and whatever came
   * after it in the same reads: what the backend must get first. A view of
   * the reader's buffer (or of the first read, see {@link push}), which stays
   * put once the reader has decided.
   */
  buffered(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }

  /** Walks the record layer over what arrived, up to the budget. */
  private read(): HelloRead {
    const b = this.buffer;
    const end = Math.min(this.length, BUDGET);
    while (this.at < end) {
      if (this.recordLeft === 0) {
        if (end - this.at < RECORD_HEADER) break;
        const type = b[this.at];
        const size = (b[this.at + 3] << 8) | b[this.at + 4];
        if (type !== CONTENT_HANDSHAKE) return this.fail(`record of type ${type} before the end of the ClientHello`);
        if (b[this.at + 1] !== 3) {
          return this.fail(`record version ${hex16(b[this.at + 1], b[this.at + 2])} is not TLS`);
        }
        if (size === 0 || size > MAX_RECORD) return this.fail(`record length ${size} (must be 1-${MAX_RECORD})`);
        this.at += RECORD_HEADER;
        this.recordLeft = size;
        if (this.have >= HANDSHAKE_HEADER && this.have + size > this.need) return this.fail(OVERRUN);
        continue;
      }
      const n = Math.min(this.recordLeft, end - this.at);
      const had = this.have;
      this.addPiece(this.at, this.at + n);
      this.at += n;
      this.recordLeft -= n;
      this.have += n;
      // Refused at the first byte that disproves a hello: a server's bytes, say.
      if (had === 0 && b[this.pieces[0]] !== CLIENT_HELLO) {
        return this.fail(`not a ClientHello (handshake type ${b[this.pieces[0]]})`);
      }
      if (had < HANDSHAKE_HEADER && this.have >= HANDSHAKE_HEADER) {
        const length = (this.handshakeByte(1) << 16) | (this.handshakeByte(2) << 8) | this.handshakeByte(3);
        if (HANDSHAKE_HEADER + length > BUDGET - RECORD_HEADER) return this.fail(TOO_LARGE);
        this.need = HANDSHAKE_HEADER + length;
        if (this.have + this.recordLeft > this.need) return this.fail(OVERRUN);
      }
      if (this.have === this.need) return this.decide(parseClientHello(this.message()));
    }
    return this.length >= BUDGET ? this.fail(TOO_LARGE) : MORE;
  }

  private decide(read: HelloRead): HelloRead {
    this.decided = true;
    return read;
  }

  private fail(reason: string): HelloRead {
    return this.decide({ kind: "error", reason });
  }

  private addPiece(start: number, end: number): void {
    const last = this.pieces.length - 1;
    if (last > 0 && this.pieces[last] === start) this.pieces[last] = end;
    else this.pieces.push(start, end);
  }

  /** Byte `i` of the handshake message, wherever records put it; only for its header, hence the walk. */
  private handshakeByte(i: number): number {
    let p = 0;
    while (i >= this.pieces[p + 1] - this.pieces[p]) {
      i -= this.pieces[p + 1] - this.pieces[p];
      p += 2;
    }
    return this.buffer[this.pieces[p] + i];
  }

  /** The whole handshake message: a view when one record holds it, else joined. */
  private message(): Uint8Array {
    if (this.pieces.length === 2) return this.buffer.subarray(this.pieces[0], this.pieces[1]);
    const joined = new Uint8Array(this.need);
    let at = 0;
    for (let p = 0; p < this.pieces.length; p += 2) {
      joined.set(this.buffer.subarray(this.pieces[p], this.pieces[p + 1]), at);
      at += this.pieces[p + 1] - this.pieces[p];
    }
    return joined;
  }

  private append(chunk: Uint8Array): void {
    const needed = this.length + chunk.length;
    if (needed > this.buffer.length) {
      const grown = new Uint8Array(Math.max(needed, Math.min(2 * this.buffer.length, BUDGET)));
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
    }
    this.buffer.set(chunk, this.length);
    this.length = needed;
  }
}

const TOO_LARGE = "ClientHello larger than 16 KiB";
const OVERRUN = "record goes on after the ClientHello";

/**
 * The host name a whole ClientHello (handshake header included) asks for.
 * Every length must end exactly where its enclosing one does: a hello a
 * backend would parse differently must not be routed on.
 */
function parseClientHello(m: Uint8Array): HelloRead {
  const end = m.length;
  // legacy_version, random, and the session id's length.
  let at = HANDSHAKE_HEADER + 2 + 32 + 1;
  if (at > end) return malformed("shorter than its fixed fields");
  if (m[HANDSHAKE_HEADER] !== 3) return malformed(`version ${hex16(m[HANDSHAKE_HEADER], m[HANDSHAKE_HEADER + 1])}`);
  const sessionId = m[at - 1];
  if (sessionId > 32) return malformed(`session id of ${sessionId} bytes`);
  at += sessionId;
  if (at > end) return malformed("session id length past its end");
  if (at + 2 > end) return malformed("ends before the cipher suites");
  const suites = u16(m, at);
  at += 2 + suites;
  if (at > end) return malformed("cipher suites length past its end");
  if (suites < 2 || suites % 2 !== 0) return malformed(`cipher suites length ${suites}`);
  if (at + 1 > end) return malformed("ends before the compression methods");
  const compressions = m[at];
  at += 1 + compressions;
  if (at > end) return malformed("compression methods length past its end");
  if (compressions === 0) return malformed("no compression method");
  if (at === end) return { kind: "hello", serverName: undefined };
  if (at + 2 > end) return malformed("extensions length past its end");
  const extensionsEnd = at + 2 + u16(m, at);
  if (extensionsEnd > end) return malformed("extensions length past its end");
  if (extensionsEnd < end) return malformed(`${end - extensionsEnd} bytes after the extensions`);
  at += 2;
  let name: HelloRead | undefined;
  while (at < extensionsEnd) {
    if (at + 4 > extensionsEnd) return malformed("extension length past its end");
    const next = at + 4 + u16(m, at + 2);
    if (next > extensionsEnd) return malformed("extension length past its end");
    if (u16(m, at) === SERVER_NAME) {
      if (name) return malformed("two server_name extensions");
      name = serverName(m, at + 4, next);
      if (name.kind === "error") return name;
    }
    at = next;
  }
  return name ?? { kind: "hello", serverName: undefined };
}

/** The server_name extension's data (RFC 6066 §3): the first host_name of its list. */
function serverName(m: Uint8Array, at: number, end: number): HelloRead {
  if (at + 2 > end) return malformed("server_name list length past its end");
  const listEnd = at + 2 + u16(m, at);
  if (listEnd > end) return malformed("server_name list length past its end");
  if (listEnd < end) return malformed("bytes after the server_name list");
  if (listEnd === at + 2) return malformed("empty server_name list");
  let name: HelloRead | undefined;
  for (at += 2; at < end;) {
    // Every name type is a 16-bit length and bytes, as every implementation reads it.
    if (at + 3 > end) return malformed("server name length past its end");
    const next = at + 3 + u16(m, at + 1);
    if (next > end) return malformed("server name length past its end");
    if (m[at] === HOST_NAME && name === undefined) {
      name = hostName(m, at + 3, next);
      if (name.kind === "error") return name;
    }
    at = next;
  }
  return name ?? { kind: "hello", serverName: undefined };
}

/**
 * A host name as routes compare it: lowercase, without one trailing dot.
 * Only letters, digits, `-`, `_` and `.` between non-empty labels, at most
 * 253 bytes: anything else (an empty name, a space, UTF-8 instead of an A-label)
 * is refused rather than guessed at.
 */
function hostName(m: Uint8Array, start: number, end: number): HelloRead {
  const last = end > start && m[end - 1] === DOT ? end - 1 : end;
  if (end === start) return { kind: "error", reason: "empty server name" };
  if (last - start > 253) return { kind: "error", reason: `server name of ${last - start} bytes (at most 253)` };
  // Built a character at a time, lowercased on the way: cheaper than a spread or apply of the bytes.
  let name = "";
  let label = start;
  for (let i = start; i < last; i++) {
    let c = m[i];
    if (c === DOT) {
      if (i === label) return badName(m, start, end);
      label = i + 1;
    } else if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    else if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f)) {
      return badName(m, start, end);
    }
    name += String.fromCharCode(c);
  }
  return label === last ? badName(m, start, end) : { kind: "hello", serverName: name };
}

function badName(m: Uint8Array, start: number, end: number): HelloRead {
  // One byte more than shown() keeps, so that it still marks a long name as cut.
  const text = String.fromCharCode(...m.subarray(start, Math.min(end, start + 81)));
  return { kind: "error", reason: `server name '${shown(text)}' is not a host name` };
}

function malformed(what: string): HelloRead {
  return { kind: "error", reason: `malformed ClientHello: ${what}` };
}

function u16(m: Uint8Array, at: number): number {
  return (m[at] << 8) | m[at + 1];
}

function hex16(high: number, low: number): string {
  return `0x${((high << 8) | low).toString(16).padStart(4, "0")}`;
}
