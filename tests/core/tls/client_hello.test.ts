/**
 * The ClientHello reader: real hellos from OpenSSL, curl, Node, Deno
 * (rustls) and Bun (BoringSSL) give their host name however their bytes are
 * cut into reads and records; `buffered()` is always every byte pushed; the
 * 16 KiB budget holds to the byte; non-TLS is told on the first byte; and
 * malformed, mutated or cut hellos are refused with a reason, never thrown
 * on, never routed on a name they do not carry.
 */
import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ClientHelloReader, type HelloRead } from "../../../src/core/tls/client_hello.ts";
import { CURL, DENO, type Fixture, FIXTURES, helloBytes, OPENSSL_FRAGMENTED, OPENSSL_TLS12 } from "./fixtures.ts";

const ascii = (text: string) => new TextEncoder().encode(text);
const concat = (...parts: (Uint8Array | number[])[]) => Uint8Array.from(parts.flatMap((p) => [...p]));
const u16 = (n: number) => [n >> 8, n & 0xff];
const u24 = (n: number) => [n >> 16, (n >> 8) & 0xff, n & 0xff];

/** A TLS record: type, version 3.1 as clients send it, 16-bit length. */
const record = (body: Uint8Array, type = 0x16, version = [3, 1]) =>
  concat([type, ...version, ...u16(body.length)], body);

/** A handshake message: type, 24-bit length. */
const handshake = (body: Uint8Array, type = 1) => concat([type, ...u24(body.length)], body);

/** An extension: type, 16-bit length, data. */
const extension = (type: number, data: Uint8Array | number[]) => concat(u16(type), u16(data.length), data);

/** The server_name extension's data: a list of (name type, name) entries. */
function serverNameData(...entries: [number, Uint8Array | string][]): Uint8Array {
  const list = concat(...entries.map(([type, name]) => {
    const bytes = typeof name === "string" ? ascii(name) : name;
    return concat([type], u16(bytes.length), bytes);
  }));
  return concat(u16(list.length), list);
}

interface HelloFields {
  version?: number[];
  sessionId?: number;
  suites?: number[];
  compressions?: number[];
  /** Extensions, or `undefined` for a hello without the extensions block. */
  extensions?: Uint8Array[];
}

/** A ClientHello handshake message (header included) built field by field. */
function helloMessage(fields: HelloFields = {}): Uint8Array {
  const { version = [3, 3], sessionId = 32, suites = [0x13, 0x01], compressions = [0] } = fields;
  const extensions = fields.extensions ? concat(...fields.extensions) : undefined;
  return handshake(concat(
    version,
    new Uint8Array(32).fill(7),
    [sessionId],
    new Uint8Array(sessionId).fill(9),
    u16(suites.length),
    suites,
    [compressions.length],
    compressions,
    extensions ? concat(u16(extensions.length), extensions) : [],
  ));
}

/** A hello for `name` in one record. */
const helloFor = (name: string | Uint8Array) =>
  record(helloMessage({ extensions: [extension(0, serverNameData([0, name]))] }));

/** The handshake message that `bytes`' records carry, joined. */
function messageOf(bytes: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += 5 + ((bytes[at + 3] << 8) | bytes[at + 4])) {
    parts.push(bytes.subarray(at + 5, at + 5 + ((bytes[at + 3] << 8) | bytes[at + 4])));
  }
  return concat(...parts);
}

/** `message` framed into records of the given sizes, the last taking the rest (at most 2^14 each). */
function framed(message: Uint8Array, sizes: number[] = []): Uint8Array {
  const records: Uint8Array[] = [];
  let at = 0;
  for (const size of sizes) {
    records.push(record(message.subarray(at, at + size)));
    at += size;
  }
  for (; at < message.length; at += 16384) records.push(record(message.subarray(at, at + 16384)));
  return concat(...records);
}

/** Where the extensions block's length is in a hello message; after the compression methods. */
function extensionsAt(message: Uint8Array): number {
  let at = 4 + 2 + 32;
  at += 1 + message[at];
  at += 2 + ((message[at] << 8) | message[at + 1]);
  return at + 1 + message[at];
}

/** `message` with `ext` appended to its extensions, the lengths fixed. */
function withExtension(message: Uint8Array, ext: Uint8Array): Uint8Array {
  const out = concat(message, ext);
  const at = extensionsAt(message);
  out.set(u16(((message[at] << 8) | message[at + 1]) + ext.length), at);
  out.set(u24(out.length - 4), 1);
  return out;
}

/** `message` grown to `size` bytes by a padding extension (type 21) of zeros, as curl pads. */
const paddedTo = (message: Uint8Array, size: number) =>
  withExtension(message, extension(21, new Uint8Array(size - message.length - 4)));

/**
 * Pushes `bytes` cut at `ends` (ascending; the end is added), as copies as
 * a socket's reads are, until the reader decides; `ended()` if it never
 * does. The answer, the offset it came at (`ended` for `ended()`), and
 * `buffered()` checked to be every byte pushed.
 */
function feed(bytes: Uint8Array, ends: number[]): { answer: HelloRead; offset: number | "ended" } {
  const reader = new ClientHelloReader();
  let from = 0;
  for (const end of [...ends, bytes.length]) {
    const r = reader.push(Uint8Array.from(bytes.subarray(from, end)));
    from = end;
    if (r.kind !== "more") {
      assert.deepEqual(reader.buffered(), bytes.subarray(0, end), "buffered() is every byte pushed");
      return { answer: r, offset: end };
    }
  }
  assert.deepEqual(reader.buffered(), bytes, "buffered() is every byte pushed");
  return { answer: reader.ended(), offset: "ended" };
}

const oneRead = (bytes: Uint8Array) => feed(bytes, []).answer;
const everyByte = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
const endsIn = (cuts: number[], n: number) => [...new Set(cuts.map((c) => c % (n + 1)))].sort((a, b) => a - b);
const hello = (serverName: string | undefined): HelloRead => ({ kind: "hello", serverName });
const error = (reason: string): HelloRead => ({ kind: "error", reason });

/**
 * Checks that `bytes` fed one byte a read answers as one read does, at the
 * byte `at`; then that reads cut at each of `cuts` answer the same, with
 * the first read that reaches `at`. The answer.
 */
function sameHoweverCut(bytes: Uint8Array, at: number, cuts: number[][] = []): HelloRead {
  const expected = oneRead(bytes);
  assert.deepEqual(feed(bytes, everyByte(bytes.length)), { answer: expected, offset: at }, "one byte a read");
  for (const c of cuts) {
    const ends = endsIn(c, bytes.length);
    const reached = [...ends, bytes.length].find((e) => e >= at);
    assert.deepEqual(feed(bytes, ends), { answer: expected, offset: reached }, `cut at ${ends}`);
  }
  return expected;
}

test("ClientHelloReader: real hellos in one read, one byte a read and random reads: their name, every byte buffered", () => {
  for (const fixture of FIXTURES) {
    const bytes = helloBytes(fixture);
    assert.deepEqual(oneRead(bytes), hello(fixture.serverName), fixture.name);
    // The answer comes with the hello's last byte: nothing follows it.
    sameHoweverCut(bytes, bytes.length);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 12 }), (cuts) => {
        assert.deepEqual(feed(bytes, endsIn(cuts, bytes.length)), {
          answer: hello(fixture.serverName),
          offset: bytes.length,
        });
      }),
      { numRuns: 200 },
    );
  }
});

test("ClientHelloReader: OpenSSL's hello in three records, and every real hello re-framed in two, or one byte a record", () => {
  const fragmented = helloBytes(OPENSSL_FRAGMENTED);
  assert.deepEqual([fragmented[3], fragmented[4], fragmented[517 + 3], fragmented[517 + 4]], [2, 0, 2, 0]);
  assert.deepEqual(oneRead(fragmented), hello("frag.a.test"));
  for (const fixture of FIXTURES) {
    const message = messageOf(helloBytes(fixture));
    for (const cut of [1, 3, 4, 5, 40, message.length >> 1, message.length - 1]) {
      assert.deepEqual(oneRead(framed(message, [cut])), hello(fixture.serverName), `${fixture.name} cut at ${cut}`);
    }
    fc.assert(
      fc.property(fc.integer({ min: 1, max: message.length - 1 }), fc.array(fc.nat(), { maxLength: 6 }), (cut, c) => {
        const bytes = framed(message, [cut]);
        assert.deepEqual(feed(bytes, endsIn(c, bytes.length)).answer, hello(fixture.serverName));
      }),
      { numRuns: 100 },
    );
    if (message.length < 1000) {
      const bytes = framed(message, everyByte(message.length).map(() => 1));
      assert.deepEqual(
        sameHoweverCut(bytes, bytes.length),
        hello(fixture.serverName),
        `${fixture.name}, 1-byte records`,
      );
    }
  }
});

test("ClientHelloReader: a hello padded to 5-8 KiB parses; 16,384 bytes with its record header is the most", () => {
  const message = messageOf(helloBytes(CURL));
  fc.assert(
    fc.property(fc.integer({ min: 5 * 1024, max: 8 * 1024 }), fc.array(fc.nat(), { maxLength: 8 }), (size, cuts) => {
      const bytes = framed(paddedTo(message, size));
      assert.equal(bytes.length, size + 5);
      assert.deepEqual(feed(bytes, endsIn(cuts, bytes.length)), { answer: hello("b.api.test"), offset: bytes.length });
    }),
    { numRuns: 50 },
  );
  const largest = framed(paddedTo(message, 16384 - 5));
  assert.equal(largest.length, 16384);
  assert.deepEqual(sameHoweverCut(largest, 16384, [[100, 9000]]), hello("b.api.test"));
  // One byte more cannot fit: refused as soon as the handshake header says so.
  const over = framed(paddedTo(message, 16384 - 4));
  assert.deepEqual(sameHoweverCut(over, 9, [[3], [8000]]), error("ClientHello larger than 16 KiB"));
});

test("ClientHelloReader: a 17 KiB hello is refused at its handshake header; many small records at the 16,384th byte", () => {
  const message = paddedTo(messageOf(helloBytes(CURL)), 17 * 1024);
  const bytes = framed(message);
  assert.equal(bytes.length, 17 * 1024 + 10, "two records");
  assert.deepEqual(sameHoweverCut(bytes, 9, [[4096, 16384]]), error("ClientHello larger than 16 KiB"));
  // 12 KiB of hello in records of 10 bytes, 15 with their headers: past the budget before its end.
  const small = paddedTo(messageOf(helloBytes(CURL)), 12 * 1024);
  const records = framed(small, Array.from({ length: 1228 }, () => 10));
  assert.ok(records.length > 16384);
  assert.deepEqual(sameHoweverCut(records, 16384, [[16383], [20000]]), error("ClientHello larger than 16 KiB"));
  // A whole read past the budget: the same refusal, and buffered() still holds every byte.
  const reader = new ClientHelloReader();
  assert.deepEqual(reader.push(records), error("ClientHello larger than 16 KiB"));
  assert.deepEqual(reader.buffered(), records);
});

test("ClientHelloReader: a first read that decides is used where it lies; one that does not is kept as it was", () => {
  const bytes = helloBytes(CURL);
  const whole = new ClientHelloReader();
  whole.push(bytes);
  assert.equal(whole.buffered().buffer, bytes.buffer, "no copy of a whole hello");
  const read = Uint8Array.from(bytes.subarray(0, 100));
  const cut = new ClientHelloReader();
  assert.deepEqual(cut.push(read), { kind: "more" });
  read.fill(0); // the caller reads into it again
  assert.deepEqual(cut.push(bytes.subarray(100)), hello("b.api.test"));
  assert.deepEqual(cut.buffered(), bytes);
});

test("ClientHelloReader: what follows the hello in the same read (0-RTT data, a ChangeCipherSpec) is buffered, not read", () => {
  const bytes = helloBytes(OPENSSL_TLS12);
  const after = concat(record(new Uint8Array([1]), 0x14, [3, 3]), record(new Uint8Array(40).fill(0xee), 0x17, [3, 3]));
  const reader = new ClientHelloReader();
  assert.deepEqual(reader.push(concat(bytes.subarray(0, 100))), { kind: "more" });
  assert.deepEqual(reader.push(concat(bytes.subarray(100), after)), hello("a.test"));
  assert.deepEqual(reader.buffered(), concat(bytes, after));
});

test("ClientHelloReader: SSH, HTTP and SSLv2 are not TLS, on their first byte", () => {
  const sslv2 = concat([0x80, 0x2e, 0x01, 0x00, 0x02], new Uint8Array(43));
  for (
    const bytes of [ascii("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"), ascii("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"), sslv2]
  ) {
    assert.deepEqual(sameHoweverCut(bytes, 1, [[5], [20]]), { kind: "not-tls" });
    const reader = new ClientHelloReader();
    reader.push(bytes);
    assert.deepEqual(reader.buffered(), bytes);
  }
});

test("ClientHelloReader: an empty read changes nothing; a client gone before deciding is refused", () => {
  const reader = new ClientHelloReader();
  assert.deepEqual(reader.push(new Uint8Array(0)), { kind: "more" });
  assert.equal(reader.buffered().length, 0);
  assert.deepEqual(reader.ended(), error("closed before sending a byte"));
  const cut = new ClientHelloReader();
  cut.push(helloBytes(CURL).subarray(0, 300));
  assert.deepEqual(cut.push(new Uint8Array(0)), { kind: "more" });
  assert.deepEqual(cut.ended(), error("closed before the whole ClientHello"));
  assert.deepEqual(cut.buffered(), helloBytes(CURL).subarray(0, 300));
});

test("ClientHelloReader: once decided, push and ended throw", () => {
  for (const first of [helloBytes(CURL), ascii("GET /"), record(new Uint8Array(4), 0x17)]) {
    const reader = new ClientHelloReader();
    assert.notEqual(reader.push(first).kind, "more");
    assert.throws(() => reader.push(new Uint8Array([1])), /push after the reader decided/);
    assert.throws(() => reader.ended(), /ended after the reader decided/);
  }
  const ended = new ClientHelloReader();
  ended.ended();
  assert.throws(() => ended.push(new Uint8Array([0x16])), /push after the reader decided/);
});

test("ClientHelloReader: the host name is lowercased without one trailing dot; no server_name, no name", () => {
  assert.deepEqual(oneRead(helloFor("WWW.Example.COM.")), hello("www.example.com"));
  assert.deepEqual(oneRead(helloFor("a_b-1.x")), hello("a_b-1.x"));
  assert.deepEqual(oneRead(helloFor("localhost")), hello("localhost"));
  const long = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`;
  assert.equal(long.length, 253);
  assert.deepEqual(oneRead(helloFor(long)), hello(long));
  assert.deepEqual(oneRead(helloFor(`${long}.`)), hello(long));
  assert.deepEqual(oneRead(record(helloMessage())), hello(undefined), "no extensions at all");
  const good = helloMessage({ extensions: [extension(0, serverNameData([0, "a.test"]))] });
  assert.deepEqual(oneRead(record(handshake(good.subarray(4, 4 + 73)))), hello(undefined), "cut before its extensions");
  assert.deepEqual(oneRead(record(helloMessage({ extensions: [] }))), hello(undefined), "an empty extensions block");
  assert.deepEqual(oneRead(record(helloMessage({ extensions: [extension(23, [])] }))), hello(undefined));
  // Another name type first: skipped; the first host_name is taken.
  const mixed = serverNameData([1, "ignored"], [0, "first.test"], [0, "second.test"]);
  assert.deepEqual(oneRead(record(helloMessage({ extensions: [extension(0, mixed)] }))), hello("first.test"));
  const otherOnly = serverNameData([1, "x"]);
  assert.deepEqual(oneRead(record(helloMessage({ extensions: [extension(0, otherOnly)] }))), hello(undefined));
  // SSL 3.0-era hellos (no extensions, version 3.0) still parse.
  assert.deepEqual(oneRead(record(helloMessage({ version: [3, 0], sessionId: 0 }), 0x16, [3, 0])), hello(undefined));
});

test("ClientHelloReader: malformed hellos and records are refused at the byte that disproves them, with a reason", () => {
  const sni = (data: Uint8Array | number[]) => record(helloMessage({ extensions: [extension(0, data)] }));
  const good = helloMessage({ extensions: [extension(0, serverNameData([0, "a.test"]))] });
  const withLengthAt = (at: number, length: number[]) => {
    const out = record(good);
    out.set(length, 5 + at);
    return out;
  };
  const ext = extensionsAt(good);
  // The body of `good` cut after `n` bytes: 34 of version and random, the session id's 33, 4 of suites, 2 of compression.
  const bodyCut = (n: number) => record(handshake(good.subarray(4, 4 + n)));
  const cases: [string, Uint8Array, number | "last", string][] = [
    ["a ServerHello", record(handshake(new Uint8Array(40), 2)), 6, "not a ClientHello (handshake type 2)"],
    ["record version 2", record(good, 0x16, [2, 0]), 5, "record version 0x0200 is not TLS"],
    ["an empty record", record(new Uint8Array(0)), 5, "record length 0 (must be 1-16384)"],
    [
      "a record over 2^14",
      concat([0x16, 3, 1, ...u16(16385)], new Uint8Array(100)),
      5,
      "record length 16385 (must be 1-16384)",
    ],
    [
      "application data inside the hello",
      concat(record(good.subarray(0, 50)), record(good.subarray(50), 0x17)),
      60,
      "record of type 23 before the end of the ClientHello",
    ],
    ["a record longer than the hello", record(concat(good, [0])), 9, "record goes on after the ClientHello"],
    [
      "a second record longer than the hello",
      concat(record(good.subarray(0, 50)), record(concat(good.subarray(50), [0]))),
      60,
      "record goes on after the ClientHello",
    ],
    ["a cut session id", bodyCut(50), "last", "malformed ClientHello: session id length past its end"],
    ["no cipher suites", bodyCut(67), "last", "malformed ClientHello: ends before the cipher suites"],
    ["cut cipher suites", bodyCut(70), "last", "malformed ClientHello: cipher suites length past its end"],
    ["no compression methods", bodyCut(71), "last", "malformed ClientHello: ends before the compression methods"],
    ["cut compression methods", bodyCut(72), "last", "malformed ClientHello: compression methods length past its end"],
    ["a lone byte of extensions length", bodyCut(74), "last", "malformed ClientHello: extensions length past its end"],
    [
      "a handshake shorter than its fields",
      record(handshake(new Uint8Array(20))),
      29,
      "malformed ClientHello: shorter than its fixed fields",
    ],
    ["version 2", record(helloMessage({ version: [2, 0] })), "last", ""],
    ["a session id of 33", record(helloMessage({ sessionId: 33 })), "last", ""],
    ["odd cipher suites", record(helloMessage({ suites: [0x13, 0x01, 0x13] })), "last", ""],
    ["no cipher suite", record(helloMessage({ suites: [] })), "last", ""],
    ["no compression method", record(helloMessage({ compressions: [] })), "last", ""],
    ["extensions length past its end", withLengthAt(ext, u16(100)), "last", ""],
    ["extensions length short of the end", withLengthAt(ext, u16(3)), "last", ""],
    ["extension length past its end", withLengthAt(ext + 4, u16(100)), "last", ""],
    ["a lone byte of extension", record(helloMessage({ extensions: [new Uint8Array([0])] })), "last", ""],
    ["server_name list past its end", sni([0, 9, 0, 0, 1, 0x61]), "last", ""],
    ["bytes after the server_name list", sni([0, 4, 0, 0, 1, 0x61, 0]), "last", ""],
    ["an empty server_name list", sni([0, 0]), "last", ""],
    ["a server_name extension with no list", sni([]), "last", ""],
    ["a host name past its list", sni([0, 4, 0, 0, 2, 0x61]), "last", ""],
    ["a lone name type", sni([0, 1, 0]), "last", ""],
    [
      "two server_name extensions",
      record(
        helloMessage({
          extensions: [extension(0, serverNameData([0, "a.test"])), extension(0, serverNameData([0, "b.test"]))],
        }),
      ),
      "last",
      "",
    ],
    ["an empty name", helloFor(""), "last", "empty server name"],
    ["a lone dot", helloFor("."), "last", "server name '.' is not a host name"],
    ["a space", helloFor("a b.test"), "last", "server name 'a b.test' is not a host name"],
    ["an empty label", helloFor("a..test"), "last", "server name 'a..test' is not a host name"],
    ["a leading dot", helloFor(".a.test"), "last", "server name '.a.test' is not a host name"],
    ["two trailing dots", helloFor("a.test.."), "last", "server name 'a.test..' is not a host name"],
    ["UTF-8", helloFor(ascii("café.test")), "last", "server name 'caf\\u00c3\\u00a9.test' is not a host name"],
    ["a NUL", helloFor(ascii("a.test\0.evil")), "last", "server name 'a.test\\u0000.evil' is not a host name"],
    [
      "254 bytes",
      helloFor(`${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(62)}`),
      "last",
      "server name of 254 bytes (at most 253)",
    ],
  ];
  const reasons: Record<string, string> = {
    "version 2": "malformed ClientHello: version 0x0200",
    "a session id of 33": "malformed ClientHello: session id of 33 bytes",
    "odd cipher suites": "malformed ClientHello: cipher suites length 3",
    "no cipher suite": "malformed ClientHello: cipher suites length 0",
    "no compression method": "malformed ClientHello: no compression method",
    "extensions length past its end": "malformed ClientHello: extensions length past its end",
    "extensions length short of the end": "malformed ClientHello: 12 bytes after the extensions",
    "extension length past its end": "malformed ClientHello: extension length past its end",
    "a lone byte of extension": "malformed ClientHello: extension length past its end",
    "server_name list past its end": "malformed ClientHello: server_name list length past its end",
    "bytes after the server_name list": "malformed ClientHello: bytes after the server_name list",
    "an empty server_name list": "malformed ClientHello: empty server_name list",
    "a server_name extension with no list": "malformed ClientHello: server_name list length past its end",
    "a host name past its list": "malformed ClientHello: server name length past its end",
    "a lone name type": "malformed ClientHello: server name length past its end",
    "two server_name extensions": "malformed ClientHello: two server_name extensions",
  };
  for (const [name, bytes, at, reason] of cases) {
    // A malformed body is found when the hello is whole: with its last byte.
    const offset = at === "last" ? bytes.length : at;
    assert.deepEqual(sameHoweverCut(bytes, offset, [[3], [offset - 1]]), error(reason || reasons[name]), name);
  }
});

/** Where a hello's length fields are, in `bytes` (one record): [offset, size] pairs. */
function lengthFields(bytes: Uint8Array): [number, number][] {
  const fields: [number, number][] = [[3, 2], [6, 3]];
  let at = 5 + 4 + 34;
  fields.push([at, 1]);
  at += 1 + bytes[at];
  fields.push([at, 2]);
  at += 2 + ((bytes[at] << 8) | bytes[at + 1]);
  fields.push([at, 1]);
  at += 1 + bytes[at];
  fields.push([at, 2]);
  for (at += 2; at < bytes.length;) {
    const length = (bytes[at + 2] << 8) | bytes[at + 3];
    fields.push([at + 2, 2]);
    if (bytes[at] === 0 && bytes[at + 1] === 0) fields.push([at + 4, 2], [at + 7, 2]);
    at += 4 + length;
  }
  return fields;
}

/** A real hello in one record (OpenSSL's three joined). */
const realHello = fc.constantFrom(...FIXTURES).map((f: Fixture) => framed(messageOf(helloBytes(f))));
const cuts = fc.array(fc.nat(), { maxLength: 8 });

/** The answer to `bytes` one byte a read, and that random cuts give it too. */
function answerHoweverCut(bytes: Uint8Array, c: number[]): HelloRead {
  const { answer } = feed(bytes, everyByte(bytes.length));
  assert.deepEqual(feed(bytes, endsIn(c, bytes.length)).answer, answer);
  return answer;
}

/** Reads a byte string front to back, throwing past its end. */
class Cursor {
  private at = 0;
  constructor(private readonly bytes: Uint8Array) {}
  take(n: number): Uint8Array {
    if (this.at + n > this.bytes.length) throw new RangeError("past the end");
    return this.bytes.subarray(this.at, this.at += n);
  }
  int(n: number): number {
    return this.take(n).reduce((value, byte) => value * 256 + byte, 0);
  }
  vector(lengthBytes: number): Cursor {
    return new Cursor(this.take(this.int(lengthBytes)));
  }
  rest(): Uint8Array {
    return this.take(this.bytes.length - this.at);
  }
  get done(): boolean {
    return this.at === this.bytes.length;
  }
}

const HOST_NAME = /^(?:[a-z0-9_-]+\.)*[a-z0-9_-]+\.?$/i;

/**
 * The plain reading of a client's first bytes, whole, to hold the reader to:
 * the records in the first 16 KiB joined until the handshake message is
 * whole, then the ClientHello field by field, each vector inside its parent
 * to the byte. Only the kind and the name count: reasons are the reader's.
 */
function plainReading(bytes: Uint8Array): HelloRead {
  if (bytes.length > 0 && bytes[0] !== 0x16) return { kind: "not-tls" };
  const refused = error("");
  try {
    const stream = new Cursor(bytes.subarray(0, 16384));
    let message = new Uint8Array(0);
    let need = Infinity;
    while (message.length < need) {
      const [type, major] = stream.take(3);
      const fragment = stream.vector(2).rest();
      if (type !== 0x16 || major !== 3 || fragment.length === 0) return refused;
      message = concat(message, fragment);
      if (message.length >= 4) need = 4 + new Cursor(message.subarray(1, 4)).int(3);
    }
    if (message.length !== need || message[0] !== 1) return refused;
    const body = new Cursor(message.subarray(4));
    if (body.take(2)[0] !== 3) return refused;
    body.take(32);
    const suites = (body.vector(1).rest().length <= 32) && body.vector(2).rest().length;
    if (!suites || suites % 2 || body.vector(1).done) return refused;
    if (body.done) return hello(undefined);
    const extensions = body.vector(2);
    if (!body.done) return refused;
    let name: string | undefined;
    let seen = false;
    while (!extensions.done) {
      const type = extensions.int(2);
      const data = extensions.vector(2);
      if (type !== 0) continue;
      if (seen) return refused;
      seen = true;
      const list = data.vector(2);
      if (!data.done || list.done) return refused;
      while (!list.done) {
        const nameType = list.int(1);
        const text = String.fromCharCode(...list.vector(2).rest());
        if (nameType === 0 && name === undefined) name = text;
      }
    }
    if (name === undefined) return hello(undefined);
    const bare = name.replace(/\.$/, "");
    return HOST_NAME.test(name) && bare.length <= 253 ? hello(bare.toLowerCase()) : refused;
  } catch (e) {
    if (e instanceof RangeError) return refused;
    throw e;
  }
}

const kindAndName = (r: HelloRead) => r.kind === "hello" ? r : { kind: r.kind };

// A changed length does not always spoil a hello: grown by 2, the 2-byte
// extension before a 4-byte one's inner length can take that extension's
// header, and what is left tiles exactly. OpenSSL's psk_key_exchange_modes
// then swallows the key_share's type, and Deno's session_ticket, just
// before its server_name, swallows the server_name's type: the hello then
// has no server_name at all. So the reader is held to the plain reading.
test("property: a real hello with one length field changed: as the plain reading of its bytes", () => {
  const change = fc.tuple(fc.nat(), fc.oneof(fc.integer({ min: -4, max: 4 }), fc.nat(0xffffff)));
  fc.assert(
    fc.property(realHello, change, cuts, (bytes, [pick, delta], c) => {
      const fields = lengthFields(bytes);
      const [at, size] = fields[pick % fields.length];
      let value = 0;
      for (let i = 0; i < size; i++) value = (value << 8) | bytes[at + i];
      const mutated = Uint8Array.from(bytes);
      for (let i = size - 1, v = Math.abs(delta) <= 4 ? value + delta : delta; i >= 0; i--, v = Math.floor(v / 256)) {
        mutated[at + i] = v & 0xff;
      }
      assert.deepEqual(kindAndName(answerHoweverCut(mutated, c)), kindAndName(plainReading(mutated)));
    }),
    { numRuns: 2000 },
  );
});

test("ClientHelloReader: Deno's hello with its session_ticket length 0 made 2 has no server_name: no name, as a server reads it", () => {
  const bytes = helloBytes(DENO);
  const at = bytes.findIndex((_, i) => [0, 35, 0, 0, 0, 0, 0, 16].every((b, j) => bytes[i + j] === b));
  const changed = Uint8Array.from(bytes);
  changed[at + 3] = 2;
  // The session ticket is now the server_name's type (0, 0); ALPN (16) holds the list as its data.
  assert.deepEqual(oneRead(changed), hello(undefined));
  assert.deepEqual(plainReading(changed), hello(undefined));
});

test("property: a real hello cut short is more until ended(), then refused", () => {
  fc.assert(
    fc.property(realHello, fc.nat(), cuts, (bytes, n, c) => {
      const short = bytes.subarray(0, n % bytes.length);
      assert.deepEqual(
        answerHoweverCut(short, c),
        error(short.length ? "closed before the whole ClientHello" : "closed before sending a byte"),
      );
    }),
    { numRuns: 500 },
  );
});

test("property: random bytes, and real hellos with bytes changed, in random reads: as the plain reading, never a throw", () => {
  const edited = fc.tuple(
    realHello,
    fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 4 }),
    fc.nat(),
  )
    .map(([bytes, edits, cut]) => {
      const out = Uint8Array.from(bytes.subarray(0, bytes.length - (cut % 3)));
      for (const [i, v] of edits) out[i % out.length] = v;
      return out;
    });
  const recordLike = fc.uint8Array({ maxLength: 300 }).map((rest) => concat([0x16, 3, 1], rest));
  fc.assert(
    fc.property(fc.oneof(edited, recordLike, fc.uint8Array({ maxLength: 100 })), cuts, (bytes, c) => {
      assert.deepEqual(kindAndName(answerHoweverCut(bytes, c)), kindAndName(plainReading(bytes)));
    }),
    { numRuns: 3000 },
  );
});

test("ClientHelloReader: 16 KiB dribbled one byte a read takes linear time", () => {
  const bytes = framed(paddedTo(messageOf(helloBytes(CURL)), 16000));
  const started = performance.now();
  for (let round = 0; round < 5; round++) {
    const reader = new ClientHelloReader();
    for (let i = 0; i < bytes.length - 1; i++) reader.push(bytes.subarray(i, i + 1));
    assert.deepEqual(reader.push(bytes.subarray(bytes.length - 1)), hello("b.api.test"));
  }
  const ms = performance.now() - started;
  assert.ok(ms < 2000, `5 x 16,005 one-byte reads took ${ms.toFixed(0)} ms`);
});
