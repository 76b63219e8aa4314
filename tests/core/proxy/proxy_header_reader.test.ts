/**
 * The `--accept-proxy` reader: however a client's bytes are cut into reads
 * (every split point, one byte at a time, random chunks of a 64 KiB v2
 * header), it gives the same answer as one read of them all: the same
 * header and the same bytes after it, the same error, as soon as the bytes
 * disprove a header; `held` counts what it keeps, and nothing after an answer.
 */
import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Buffer } from "node:buffer";
import { encodeProxyHeader, encodeProxyV2Local, type ProxyEndpoint } from "../../../src/core/mod.ts";
import {
  describeProxied,
  proxiedEndpoints,
  ProxyHeaderReader,
  proxyHeaderTimedOut,
  type ProxyRead,
} from "../../../src/core/proxy/proxy_header_reader.ts";

const ascii = (text: string) => Buffer.from(text, "latin1");
const hex = (spaced: string) => Buffer.from(spaced.replace(/\s+/g, ""), "hex");
const concat = (...parts: Uint8Array[]) => Buffer.concat(parts);
const at = (address: string, port: number): ProxyEndpoint => ({ address, port });
const SIGNATURE = "0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a";

/** A comparable copy of an answer: `rest` may be a view the next read overwrites. */
const settled = (r: ProxyRead) => r.kind === "header" ? { ...r, rest: [...r.rest] } : r;

/**
 * Pushes `bytes` to a fresh reader cut at `ends` (ascending offsets; the
 * end is added), checking `held` after each `incomplete`; the first other
 * answer (settled) and the offset it came at.
 */
function feed(bytes: Uint8Array, ends: number[]): { answer: ReturnType<typeof settled>; offset: number } {
  const reader = new ProxyHeaderReader();
  let from = 0;
  for (const end of [...ends, bytes.length]) {
    // A copy, as a socket read is: no view of the bytes still to come.
    const r = reader.push(Uint8Array.from(bytes.subarray(from, end)));
    from = end;
    if (r.kind !== "incomplete") {
      assert.equal(reader.held, 0, "nothing held once the reader has answered");
      return { answer: settled(r), offset: end };
    }
    assert.equal(reader.held, end, `held after ${end} bytes`);
  }
  return { answer: { kind: "incomplete" }, offset: bytes.length };
}

/** The answer to all of `bytes` in one read. */
const whole = (bytes: Uint8Array) => settled(new ProxyHeaderReader().push(bytes));

/**
 * What a reader fed `bytes` in pieces must answer when it answered at
 * offset `offset`: the answer to all of them in one read, except that a
 * header's rest is only what came after it in the reads the reader saw (the
 * adapter relays later reads itself).
 */
function expectedAt(bytes: Uint8Array, offset: number) {
  const all = whole(bytes);
  return all.kind === "header" ? { ...all, rest: [...bytes.subarray(all.header.length, offset)] } : all;
}

/** Checks that `bytes` fed cut at `ends` answers as one read does (see {@link expectedAt}); the offset it answered at. */
function sameAsOneRead(bytes: Uint8Array, ends: number[], what: string): number {
  const { answer, offset } = feed(bytes, ends);
  assert.deepEqual(answer, expectedAt(bytes, offset), what);
  return offset;
}

// v2 over IPv4 with TLVs (ALPN "h2", a NOOP of 5 bytes, an empty UNIQUE_ID) and the client's bytes.
const WITH_TLVS = hex(
  `${SIGNATURE} 21 11 00 1c 0a 09 08 07 7f 00 00 01 0f a0 00 50  01 00 02 68 32  04 00 05 00 00 00 00 00  05 00 00`,
);
const DATA = ascii("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
const VALID: [string, Uint8Array][] = [
  ["v1 TCP4", ascii("PROXY TCP4 10.9.8.7 127.0.0.1 4000 80\r\n")],
  ["v1 TCP6", ascii("PROXY TCP6 2001:db8::7 ::1 4000 443\r\n")],
  ["v1 UNKNOWN", ascii("PROXY UNKNOWN\r\n")],
  ["v2 TCP4", encodeProxyHeader(2, at("10.9.8.7", 4000), at("127.0.0.1", 80))],
  ["v2 TCP6", encodeProxyHeader(2, at("2001:db8::7", 4000), at("::1", 443))],
  ["v2 LOCAL", encodeProxyV2Local()],
  ["v2 with TLVs", WITH_TLVS],
];

test("ProxyHeaderReader: one read: the header, and the client's bytes after it as rest", () => {
  const r = new ProxyHeaderReader().push(concat(VALID[0][1], DATA));
  assert.equal(r.kind, "header");
  if (r.kind !== "header") return;
  assert.deepEqual([r.header.version, r.header.src, r.header.dst], [1, at("10.9.8.7", 4000), at("127.0.0.1", 80)]);
  assert.deepEqual([...r.rest], [...DATA]);
  const tlv = new ProxyHeaderReader().push(concat(WITH_TLVS, DATA));
  assert.ok(tlv.kind === "header");
  assert.deepEqual([tlv.header.length, tlv.header.src, tlv.header.dst], [
    44,
    at("10.9.8.7", 4000),
    at("127.0.0.1", 80),
  ]);
  assert.deepEqual([...tlv.rest], [...DATA], "the TLVs are skipped, not passed on");
});

test("ProxyHeaderReader: cut at every split point (and every pair of them), the same header and rest", () => {
  for (const [name, header] of VALID) {
    for (const bytes of [header, concat(header, DATA)]) {
      const expected = whole(bytes);
      assert.equal(expected.kind, "header", name);
      for (let i = 0; i <= bytes.length; i++) {
        const answeredAt = sameAsOneRead(bytes, [i], `${name} cut at ${i}`);
        // The answer comes with the read that completes the header, not later.
        assert.equal(answeredAt, i >= header.length ? i : bytes.length, `${name} cut at ${i}: answered at`);
        for (let j = i; j <= bytes.length; j++) sameAsOneRead(bytes, [i, j], `${name} cut at ${i} and ${j}`);
      }
    }
  }
});

test("ProxyHeaderReader: dribbled one byte a read: incomplete, held counting up, until the last byte", () => {
  for (const [name, header] of VALID) {
    const reader = new ProxyHeaderReader();
    assert.equal(reader.held, 0);
    for (let i = 0; i < header.length - 1; i++) {
      assert.deepEqual(reader.push(header.subarray(i, i + 1)), { kind: "incomplete" }, `${name} byte ${i}`);
      assert.equal(reader.held, i + 1);
    }
    const r = reader.push(header.subarray(header.length - 1));
    assert.equal(r.kind, "header", name);
    assert.deepEqual(settled(r), whole(header));
    assert.equal(r.kind === "header" && r.rest.length, 0, "nothing after the header");
    assert.equal(reader.held, 0);
  }
});

test("ProxyHeaderReader: an empty read holds nothing: held 0 means the client has sent no byte", () => {
  const reader = new ProxyHeaderReader();
  assert.deepEqual(reader.push(new Uint8Array(0)), { kind: "incomplete" });
  assert.equal(reader.held, 0);
  reader.push(ascii("PRO"));
  assert.deepEqual(reader.push(new Uint8Array(0)), { kind: "incomplete" });
  assert.equal(reader.held, 3);
});

test("ProxyHeaderReader: malformed headers are refused at the byte that disproves them, with the codec's reason", () => {
  const cases: [string, Uint8Array, number, RegExp][] = [
    ["HTTP instead of a header", ascii("GET / HTTP/1.1\r\n"), 1, /not a PROXY header/],
    ["TLS instead of a header", hex("16 03 01 02 00"), 1, /not a PROXY header/],
    ["v1 misspelt", ascii("PROXX TCP4 "), 5, /does not start with "PROXY "/],
    // "U" may still begin "UNKNOWN": the "D" disproves it.
    ["v1 unknown protocol", ascii("PROXY UDP4 "), 8, /unknown protocol/],
    ["v1 letter in a TCP4 address", ascii("PROXY TCP4 1.2.3.x"), 18, /byte 0x78/],
    ["v1 LF without CR", ascii("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), 31, /LF without CR/],
    ["v1 over-long", ascii(`PROXY UNKNOWN ${"x".repeat(200)}`), 106, /no CRLF within 107 bytes/],
    ["v1 bad port", ascii("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"), 36, /port/],
    ["v2 wrong signature", hex("0d 0a 0d 0a 00 0d 0a 51 55 49 54 0b"), 12, /wrong signature/],
    ["v2 version 1", hex(`${SIGNATURE} 11`), 13, /version 1, not 2/],
    ["v2 unknown command", hex(`${SIGNATURE} 23`), 13, /unknown command 3/],
    ["v2 unknown family", hex(`${SIGNATURE} 21 51`), 14, /unknown family/],
    ["v2 length too short", hex(`${SIGNATURE} 21 11 00 04`), 16, /length 4 is too short/],
    [
      "v2 TLV overrunning the length",
      hex(`${SIGNATURE} 21 11 00 0f 0a 00 00 01 0a 00 00 02 00 01 00 02 01 00 09`),
      31,
      /TLV overruns/,
    ],
  ];
  for (const [name, bytes, disprovedAt, reason] of cases) {
    const expected = whole(bytes);
    assert.equal(expected.kind, "error", name);
    assert.match((expected as { reason: string }).reason, reason, name);
    // One byte a read: refused with the very byte that disproves it, and the same reason.
    const dribbled = feed(bytes, Array.from({ length: bytes.length }, (_, i) => i + 1));
    assert.deepEqual(dribbled, { answer: expected, offset: disprovedAt }, name);
    for (let i = 0; i <= bytes.length; i++) assert.deepEqual(feed(bytes, [i]).answer, expected, `${name} cut at ${i}`);
  }
});

test("ProxyHeaderReader: a v2 header of 65,551 bytes (TLVs) in random reads: held grows to all but the last", () => {
  // The largest header a client can send: length 0xffff, 12 address bytes and a NOOP TLV of 65,520.
  const big = new Uint8Array(16 + 0xffff);
  big.set(hex(`${SIGNATURE} 21 11 ff ff 0a 09 08 07 7f 00 00 01 0f a0 00 50 04 ff f0`));
  const bytes = concat(big, DATA);
  const expected = whole(bytes);
  assert.ok(expected.kind === "header");
  assert.equal(expected.header.length, 65551);
  assert.deepEqual(expected.header.src, at("10.9.8.7", 4000));
  assert.deepEqual(expected.rest, [...DATA]);
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: bytes.length }), { maxLength: 40 }), (cuts) => {
      const ends = [...new Set(cuts)].sort((a, b) => a - b);
      const answeredAt = sameAsOneRead(bytes, ends, `cut at ${ends}`);
      assert.equal(answeredAt, ends.find((e) => e >= big.length) ?? bytes.length);
    }),
    { numRuns: 100 },
  );
  // One byte a read all the way: still one answer, at the last byte, in linear time.
  const reader = new ProxyHeaderReader();
  const started = performance.now();
  for (let i = 0; i < big.length - 1; i++) {
    if (reader.push(big.subarray(i, i + 1)).kind !== "incomplete") assert.fail(`answered early at byte ${i}`);
  }
  assert.equal(reader.held, big.length - 1);
  assert.equal(reader.push(big.subarray(big.length - 1)).kind, "header");
  const ms = performance.now() - started;
  assert.ok(ms < 2000, `65,551 one-byte reads took ${ms.toFixed(0)} ms`);
});

// Valid headers of any endpoints (v2 with random TLVs), and the bytes near them.
const octet = fc.integer({ min: 0, max: 255 });
const ipv4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join("."));
const ipv6 = fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 })
  .map((g) => g.map((w) => w.toString(16)).join(":"));
const endpoint = fc.record({ address: fc.oneof(ipv4, ipv6), port: fc.integer({ min: 0, max: 0xffff }) });
const tlv = fc.tuple(octet, fc.uint8Array({ maxLength: 40 })).map(([type, value]) =>
  concat(new Uint8Array([type, value.length >> 8, value.length & 0xff]), value)
);
const withTlvs = fc.tuple(endpoint, endpoint, fc.array(tlv, { maxLength: 5 })).map(([src, dst, tlvs]) => {
  const plain = encodeProxyHeader(2, src, dst);
  const out = concat(plain, ...tlvs);
  const length = out.length - 16;
  out[14] = length >> 8;
  out[15] = length & 0xff;
  return out;
});
const validHeader = fc.oneof(
  fc.tuple(fc.constantFrom(1 as const, 2 as const), endpoint, endpoint).map(([v, s, d]) => encodeProxyHeader(v, s, d)),
  withTlvs,
);
const mutated = (bytes: fc.Arbitrary<Uint8Array>) =>
  fc.tuple(bytes, fc.array(fc.tuple(fc.nat(), octet), { maxLength: 3 }), fc.nat()).map(([b, edits, cut]) => {
    const out = Uint8Array.from(b.subarray(0, b.length - (cut % 4)));
    for (const [i, v] of edits) if (out.length) out[i % out.length] = v;
    return out;
  });
const splits = fc.array(fc.nat(), { maxLength: 10 });
const endsIn = (cuts: number[], n: number) => [...new Set(cuts.map((c) => c % (n + 1)))].sort((a, b) => a - b);

test("property: a valid header (v2 with TLVs too) in random reads: the same header and rest as one read", () => {
  fc.assert(
    fc.property(validHeader, fc.uint8Array({ maxLength: 60 }), splits, (header, data, cuts) => {
      const bytes = concat(header, data);
      const expected = whole(bytes);
      assert.ok(expected.kind === "header", JSON.stringify(expected));
      assert.equal(expected.header.length, header.length);
      assert.deepEqual(expected.rest, [...data]);
      sameAsOneRead(bytes, endsIn(cuts, bytes.length), "random reads");
    }),
    { numRuns: 1000 },
  );
});

test("property: mutated, cut and random bytes in random reads: the same answer as one read, never an exception", () => {
  fc.assert(
    fc.property(mutated(fc.oneof(validHeader, fc.uint8Array({ maxLength: 120 }))), splits, (bytes, cuts) => {
      sameAsOneRead(bytes, endsIn(cuts, bytes.length), "random reads");
    }),
    { numRuns: 3000 },
  );
});

test("proxiedEndpoints: a header's endpoints; LOCAL and UNKNOWN give the real connection's", () => {
  const peer = at("127.0.0.21", 50000);
  const local = at("127.0.0.1", 8080);
  const read = (bytes: Uint8Array) => {
    const r = new ProxyHeaderReader().push(bytes);
    assert.ok(r.kind === "header", JSON.stringify(r));
    return r.header;
  };
  const proxied = read(ascii("PROXY TCP4 10.9.8.7 192.0.2.1 5555 443\r\n"));
  assert.deepEqual(proxiedEndpoints(proxied, () => ({ src: peer, dst: local })), {
    src: at("10.9.8.7", 5555),
    dst: at("192.0.2.1", 443),
  });
  assert.equal(
    describeProxied(peer, proxied, proxiedEndpoints(proxied, () => ({ src: peer, dst: local }))),
    "127.0.0.21:50000: PROXY v1 header: client 10.9.8.7:5555 to 192.0.2.1:443",
  );
  const six = read(encodeProxyHeader(2, at("2001:db8::7", 4000), at("::1", 443)));
  assert.equal(
    describeProxied(peer, six, proxiedEndpoints(six, () => ({ src: peer, dst: local }))),
    "127.0.0.21:50000: PROXY v2 header: client [2001:db8::7]:4000 to [::1]:443",
  );
  for (const bytes of [encodeProxyV2Local(), ascii("PROXY UNKNOWN\r\n")]) {
    const h = read(bytes);
    assert.deepEqual(proxiedEndpoints(h, () => ({ src: peer, dst: local })), { src: peer, dst: local });
    assert.match(
      describeProxied(peer, h, proxiedEndpoints(h, () => ({ src: peer, dst: local }))),
      /header without a client: using the connection/,
    );
  }
});

test("ProxyHeaderReader: ended() refuses a client that left after part of a header; one that sent nothing is a probe", () => {
  const reader = new ProxyHeaderReader();
  assert.deepEqual(reader.ended(), { kind: "probe" });
  assert.equal(reader.push(ascii("PROXY TCP4 ")).kind, "incomplete");
  assert.deepEqual(reader.ended(), { kind: "error", reason: "client closed after 11 bytes" });
  assert.deepEqual(proxyHeaderTimedOut(2500), { kind: "error", reason: "none within 2.5s" });
});
