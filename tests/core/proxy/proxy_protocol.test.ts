/**
 * The PROXY protocol codec: byte-exact headers as the specification lays
 * them out, the incremental parser's three answers (incomplete until the
 * bytes disprove both versions, an error for every malformation, never an
 * exception), and encode → parse round trips fed in random splits.
 */
import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  addressBytes,
  encodeProxyHeader,
  encodeProxyV1,
  encodeProxyV1Unknown,
  encodeProxyV2,
  encodeProxyV2Local,
  parseProxyHeader,
  PROXY_V1_MAX_LENGTH,
  PROXY_V2_MAX_LENGTH,
  type ProxyEndpoint,
  type ProxyParse,
} from "../../../src/core/mod.ts";

const ascii = (text: string) => new TextEncoder().encode(text);
const text = (bytes: Uint8Array) => new TextDecoder("latin1").decode(bytes);
const hex = (spaced: string) => new Uint8Array(spaced.split(/\s+/).filter(Boolean).map((h) => parseInt(h, 16)));
const at = (address: string, port: number): ProxyEndpoint => ({ address, port });
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) out.set(p, (i += p.length) - p.length);
  return out;
};
const SIGNATURE = "0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a";

function header(r: ProxyParse) {
  assert.equal(r.kind, "header", JSON.stringify(r));
  return r as Extract<ProxyParse, { kind: "header" }>;
}
function error(r: ProxyParse, pattern: RegExp) {
  assert.equal(r.kind, "error", JSON.stringify(r));
  assert.match((r as { reason: string }).reason, pattern);
}

// ------------------------------------------------------------ v1 encoding

// The v1 line for src:sport → dst:dport.
const v1 = (src: string, sport: number, dst: string, dport: number) =>
  text(encodeProxyV1(at(src, sport), at(dst, dport)));

test("encodeProxyV1: IPv4", () => {
  assert.equal(v1("127.0.0.9", 40000, "127.0.0.1", 80), "PROXY TCP4 127.0.0.9 127.0.0.1 40000 80\r\n");
  assert.equal(v1("255.255.255.255", 65535, "0.0.0.0", 0), "PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n");
});
test("encodeProxyV1: IPv6 in RFC 5952 form (lowercase, longest zero run, first of equal runs, no lone ::)", () => {
  const cases: [string, string, string][] = [
    ["::1", "::1", "::1 ::1"],
    ["2001:0DB8:0000:0000:0000:0000:0000:0001", "::", "2001:db8::1 ::"],
    ["2001:db8:0:1:1:1:1:1", "2001:0:0:1:0:0:0:1", "2001:db8:0:1:1:1:1:1 2001:0:0:1::1"],
    ["2001:db8:0:0:1:0:0:1", "1::", "2001:db8::1:0:0:1 1::"],
    ["fe80::1%eth0", "ABCD:EF01:2345:6789:abcd:ef01:2345:6789", "fe80::1 abcd:ef01:2345:6789:abcd:ef01:2345:6789"],
  ];
  for (const [src, dst, written] of cases) assert.equal(v1(src, 1, dst, 2), `PROXY TCP6 ${written} 1 2\r\n`);
});
test("encodeProxyV1: IPv4-mapped clients are sent as IPv4", () => {
  assert.equal(v1("::ffff:10.0.0.1", 40000, "::ffff:10.0.0.2", 80), "PROXY TCP4 10.0.0.1 10.0.0.2 40000 80\r\n");
  assert.equal(v1("::ffff:10.0.0.1", 40000, "10.0.0.2", 80), "PROXY TCP4 10.0.0.1 10.0.0.2 40000 80\r\n");
});
test("encodeProxyV1: IPv4 beside true IPv6 is mapped into TCP6 (hex, as the specification writes IPv6)", () => {
  assert.equal(v1("10.0.0.1", 40000, "2001:db8::2", 80), "PROXY TCP6 ::ffff:a00:1 2001:db8::2 40000 80\r\n");
  assert.equal(v1("2001:db8::1", 40000, "::ffff:192.168.0.1", 80), "PROXY TCP6 2001:db8::1 ::ffff:c0a8:1 40000 80\r\n");
});
test("encodeProxyV1: UNKNOWN for health checks, and for endpoints that are not numeric IP", () => {
  assert.equal(text(encodeProxyV1Unknown()), "PROXY UNKNOWN\r\n");
  assert.equal(text(encodeProxyHeader(1)), "PROXY UNKNOWN\r\n");
  assert.equal(v1("/run/balance.sock", 0, "10.0.0.1", 80), "PROXY UNKNOWN\r\n");
  assert.equal(v1("10.0.0.1", 65536, "10.0.0.1", 80), "PROXY UNKNOWN\r\n");
  assert.equal(v1("10.0.0.1", 1.5, "10.0.0.1", 80), "PROXY UNKNOWN\r\n");
});
test("encodeProxyV1: the longest line fits the 107 bytes a receiver must accept", () => {
  const full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const line = encodeProxyV1(at(full, 65535), at(full, 65535));
  assert.equal(line.length, 104);
  assert.ok(line.length <= PROXY_V1_MAX_LENGTH);
});

// ------------------------------------------------------------ v2 encoding

test("encodeProxyV2: IPv4, byte-exact", () => {
  assert.deepEqual(
    encodeProxyV2(at("127.0.0.9", 40000), at("127.0.0.1", 80)),
    hex(`${SIGNATURE} 21 11 00 0c  7f 00 00 09  7f 00 00 01  9c 40  00 50`),
  );
});
test("encodeProxyV2: IPv6, byte-exact", () => {
  assert.deepEqual(
    encodeProxyV2(at("2001:db8::5", 1), at("::1", 443)),
    hex(`${SIGNATURE} 21 21 00 24
      20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 05
      00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01
      00 01  01 bb`),
  );
});
test("encodeProxyV2: IPv4-mapped is IPv4; IPv4 beside true IPv6 is mapped", () => {
  assert.deepEqual(
    encodeProxyV2(at("::ffff:10.0.0.1", 258), at("::ffff:10.0.0.2", 80)),
    hex(`${SIGNATURE} 21 11 00 0c  0a 00 00 01  0a 00 00 02  01 02  00 50`),
  );
  assert.deepEqual(
    encodeProxyV2(at("10.0.0.1", 258), at("::1", 80)),
    hex(`${SIGNATURE} 21 21 00 24
      00 00 00 00 00 00 00 00 00 00 ff ff 0a 00 00 01
      00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01
      01 02  00 50`),
  );
});
test("encodeProxyV2Local: command LOCAL, family UNSPEC, length 0", () => {
  const local = hex(`${SIGNATURE} 20 00 00 00`);
  assert.deepEqual(encodeProxyV2Local(), local);
  assert.deepEqual(encodeProxyHeader(2), local);
  assert.deepEqual(encodeProxyV2(at("not an address", 1), at("10.0.0.1", 80)), local);
});
test("encodeProxyHeader: picks the version; passes a parsed header's endpoints on unchanged", () => {
  const received = header(parseProxyHeader(ascii("PROXY TCP4 10.9.8.7 192.0.2.1 5555 443\r\n")));
  const peer = at("127.0.0.2", 1000);
  const local = at("127.0.0.1", 80);
  assert.equal(
    text(encodeProxyHeader(1, received.src ?? peer, received.dst ?? local)),
    "PROXY TCP4 10.9.8.7 192.0.2.1 5555 443\r\n",
  );
  assert.deepEqual(
    encodeProxyHeader(2, received.src ?? peer, received.dst ?? local),
    hex(`${SIGNATURE} 21 11 00 0c  0a 09 08 07  c0 00 02 01  15 b3  01 bb`),
  );
  // A LOCAL header means "the real peer": that is what goes on.
  const health = header(parseProxyHeader(encodeProxyV2Local()));
  assert.equal(
    text(encodeProxyHeader(1, health.src ?? peer, health.dst ?? local)),
    "PROXY TCP4 127.0.0.2 127.0.0.1 1000 80\r\n",
  );
});

// --------------------------------------------------------------- parsing

test("parseProxyHeader: v1 TCP4 and TCP6; what follows is the client's", () => {
  const bytes = ascii("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n");
  const h = header(parseProxyHeader(bytes));
  assert.deepEqual(h, {
    kind: "header",
    length: 47,
    version: 1,
    local: false,
    family: "TCP4",
    src: at("192.168.0.1", 56324),
    dst: at("192.168.0.11", 443),
  });
  assert.equal(text(bytes.subarray(h.length)), "GET / HTTP/1.1\r\n");
  const six = header(parseProxyHeader(ascii("PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::ffff:1.2.3.4 0 65535\r\n")));
  assert.deepEqual([six.family, six.src, six.dst], ["TCP6", at("2001:db8::1", 0), at("::ffff:1.2.3.4", 65535)]);
});
test("parseProxyHeader: v1 UNKNOWN is local, with or without the optional fields", () => {
  for (
    const line of ["PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff:: ffff:: 1 2\r\n", "PROXY UNKNOWN whatever\x00\xff\r\n"]
  ) {
    assert.deepEqual(parseProxyHeader(ascii(line + "data")), {
      kind: "header",
      length: ascii(line).length,
      version: 1,
      local: true,
      family: "UNKNOWN",
    });
  }
});
test("parseProxyHeader: v2 PROXY over IPv4 and IPv6, LOCAL", () => {
  const four = header(parseProxyHeader(hex(`${SIGNATURE} 21 11 00 0c 0a 09 08 07 c0 00 02 01 15 b3 01 bb 47 45 54`)));
  assert.deepEqual(four, {
    kind: "header",
    length: 28,
    version: 2,
    local: false,
    family: "TCP4",
    src: at("10.9.8.7", 5555),
    dst: at("192.0.2.1", 443),
  });
  const six = header(parseProxyHeader(encodeProxyV2(at("2001:db8::5", 40000), at("::ffff:7f00:1", 80))));
  // The IPv4 destination beside an IPv6 client went out mapped; it comes back so.
  assert.deepEqual([six.family, six.src, six.dst], ["TCP6", at("2001:db8::5", 40000), at("::ffff:127.0.0.1", 80)]);
  assert.deepEqual(parseProxyHeader(encodeProxyV2Local()), {
    kind: "header",
    length: 16,
    version: 2,
    local: true,
    family: "UNKNOWN",
  });
});
test("parseProxyHeader: v2 TLVs are skipped, the whole length consumed", () => {
  // ALPN "h2", a NOOP of 5, a UNIQUE_ID of 0: 5 + 8 + 3 bytes after the addresses.
  const tlvs = "01 00 02 68 32  04 00 05 00 00 00 00 00  05 00 00";
  const bytes = hex(`${SIGNATURE} 21 11 00 1c 0a 00 00 01 0a 00 00 02 00 01 00 02 ${tlvs} ff ee`);
  const h = header(parseProxyHeader(bytes));
  assert.equal(h.length, 16 + 12 + 16);
  assert.deepEqual([h.src, h.dst], [at("10.0.0.1", 1), at("10.0.0.2", 2)]);
  assert.deepEqual(bytes.subarray(h.length), hex("ff ee"));
  // LOCAL with an address block and TLVs: all skipped.
  assert.equal(header(parseProxyHeader(hex(`${SIGNATURE} 20 11 00 10 ${"00 ".repeat(16)}`))).length, 32);
});
test("parseProxyHeader: v2 families balance does not relay fall back to the real endpoints (local)", () => {
  for (const [family, length] of [["00", 0], ["00", 12], ["12", 12], ["22", 36], ["31", 216], ["32", 216]] as const) {
    const bytes = concat(
      hex(`${SIGNATURE} 21 ${family} 00 ${length.toString(16).padStart(2, "0")}`),
      new Uint8Array(length),
    );
    assert.deepEqual(parseProxyHeader(bytes), {
      kind: "header",
      length: 16 + length,
      version: 2,
      local: true,
      family: "UNKNOWN",
    }, `family 0x${family}`);
  }
});

test("parseProxyHeader: every malformation is an error (never an exception)", () => {
  const cases: [string | Uint8Array, RegExp][] = [
    ["GET / HTTP/1.1\r\n", /not a PROXY header/],
    ["\x16\x03\x01", /not a PROXY header/],
    ["PROXX TCP4", /does not start with "PROXY "/],
    ["PROXY  TCP4", /unknown protocol/],
    ["PROXY TCP5 ", /unknown protocol/],
    ["PROXY tcp4 ", /unknown protocol/],
    ["PROXY UNKNOWNX\r\n", /unknown protocol/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", /LF without CR/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rx", /CR without LF/],
    ["PROXY UNKNOWN\rX", /CR without LF/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", /5 fields/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", /3 fields/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n", /fields/],
    ["PROXY TCP4 ::1 5.6.7.8 1 2\r\n", /byte 0x3a cannot appear in a TCP4 line/],
    ["PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", /byte 0x09/],
    ["PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", /not canonical IPv4/],
    ["PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", /not canonical IPv4/],
    ["PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", /not canonical IPv4/],
    ["PROXY TCP6 1.2.3.4 ::1 1 2\r\n", /not canonical IPv6/],
    ["PROXY TCP6 1::2::3 ::1 1 2\r\n", /not canonical IPv6/],
    ["PROXY TCP6 ::1 12345::1 1 2\r\n", /not canonical IPv6/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", /port/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", /port/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 123456\r\n", /port/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 .\r\n", /port/],
    [`PROXY UNKNOWN ${"x".repeat(100)}`, /no CRLF within 107 bytes/],
    [`PROXY TCP6 ${"1".repeat(95)}\r\n`, /no CRLF within 107 bytes/],
    [hex("0d 0a 0d 0a 00 0d 0a 51 55 49 54 0b"), /wrong signature/],
    [hex("0d 0a 0d 0b"), /wrong signature/],
    [hex(`${SIGNATURE} 11`), /version 1, not 2/],
    [hex(`${SIGNATURE} 31`), /version 3, not 2/],
    [hex(`${SIGNATURE} 22`), /unknown command 2/],
    [hex(`${SIGNATURE} 2f`), /unknown command 15/],
    [hex(`${SIGNATURE} 21 13`), /unknown family\/protocol 0x13/],
    [hex(`${SIGNATURE} 21 41`), /unknown family\/protocol 0x41/],
    [hex(`${SIGNATURE} 21 01`), /unknown family\/protocol 0x01/],
    [hex(`${SIGNATURE} 21 11 00 0b`), /length 11 is too short/],
    [hex(`${SIGNATURE} 21 21 00 0c`), /length 12 is too short/],
    [hex(`${SIGNATURE} 21 31 00 24`), /length 36 is too short/],
    [hex(`${SIGNATURE} 21 11 00 0e 0a 00 00 01 0a 00 00 02 00 01 00 02 01 00`), /TLV overruns/],
    [hex(`${SIGNATURE} 21 11 00 10 0a 00 00 01 0a 00 00 02 00 01 00 02 01 00 02 68`), /TLV overruns/],
  ];
  for (const [input, reason] of cases) {
    const bytes = typeof input === "string" ? ascii(input) : input;
    error(parseProxyHeader(bytes), reason);
  }
});
test("parseProxyHeader: a v1 line of exactly 107 bytes is accepted, 108 refused", () => {
  const pad = (n: number) => `PROXY UNKNOWN ${"x".repeat(n)}\r\n`;
  assert.equal(ascii(pad(91)).length, 107);
  assert.equal(header(parseProxyHeader(ascii(pad(91)))).length, 107);
  error(parseProxyHeader(ascii(pad(92))), /no CRLF within 107 bytes/);
  // 106 bytes without a CR are disproof enough: the CR could only be the 107th byte.
  error(parseProxyHeader(ascii(pad(92).slice(0, 106))), /no CRLF/);
  assert.equal(parseProxyHeader(ascii(pad(92).slice(0, 105))).kind, "incomplete");
});
test("parseProxyHeader: garbage is refused at its first byte, not after 107", () => {
  for (const first of [0x00, 0x0a, 0x16, 0x47, 0x70, 0xff]) {
    error(parseProxyHeader(new Uint8Array([first])), /not a PROXY header/);
  }
  error(parseProxyHeader(ascii("PR0")), /does not start/);
  error(parseProxyHeader(ascii("PROXY X")), /unknown protocol/);
  error(parseProxyHeader(ascii("PROXY TCP4 1.2.3.4 x")), /byte 0x78/);
  error(parseProxyHeader(hex("0d 0a 0d 0a 01")), /wrong signature/);
});
test("parseProxyHeader: every proper prefix of a valid header is incomplete", () => {
  const headers = [
    ascii("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"),
    ascii("PROXY TCP6 2001:db8::1 ::1 1 2\r\n"),
    ascii("PROXY UNKNOWN\r\n"),
    encodeProxyV2(at("2001:db8::5", 40000), at("::1", 80)),
    encodeProxyV2Local(),
    hex(`${SIGNATURE} 21 11 00 11 0a 00 00 01 0a 00 00 02 00 01 00 02 01 00 02 68 32`),
  ];
  for (const h of headers) {
    for (let n = 0; n < h.length; n++) {
      assert.deepEqual(parseProxyHeader(h.subarray(0, n)), { kind: "incomplete" }, `${text(h)} cut at ${n}`);
    }
    assert.equal(header(parseProxyHeader(h)).length, h.length);
  }
});
test("parseProxyHeader: a v2 header with a 65,535-byte length waits for all of it, then consumes all", () => {
  const bytes = new Uint8Array(16 + 0xffff);
  bytes.set(hex(`${SIGNATURE} 21 11 ff ff 0a 00 00 01 0a 00 00 02 00 01 00 02`));
  // 65,523 bytes of TLVs: one NOOP whose value is 65,520 bytes.
  bytes.set(hex("04 ff f0"), 28);
  assert.equal(parseProxyHeader(bytes.subarray(0, 16)).kind, "incomplete");
  assert.equal(parseProxyHeader(bytes.subarray(0, bytes.length - 1)).kind, "incomplete");
  assert.equal(header(parseProxyHeader(bytes)).length, 65551);
});

// ------------------------------------------------------------ properties

const octet = fc.integer({ min: 0, max: 255 });
const ipv4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join("."));
const group = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff }));
const ipv6 = fc.array(group, { minLength: 8, maxLength: 8 }).map((g) => g.map((w) => w.toString(16)).join(":"));
const address = fc.oneof(ipv4, ipv6, ipv4.map((a) => `::ffff:${a}`));
const endpoint = fc.record({ address, port: fc.integer({ min: 0, max: 0xffff }) });
const sameHost = (a: string, b: string) =>
  assert.deepEqual([...addressBytes(a)!], [...addressBytes(b)!], `${a} vs ${b}`);

// Feeds `bytes` in the given chunk sizes the way an adapter does, and
// returns the first answer that is not `incomplete` and how many bytes it
// had seen.
function feed(bytes: Uint8Array, cuts: number[]): [ProxyParse, number] {
  const ends = [...new Set(cuts.map((c) => c % (bytes.length + 1)).concat(bytes.length))].sort((a, b) => a - b);
  for (const end of ends) {
    const r = parseProxyHeader(bytes.subarray(0, end));
    if (r.kind !== "incomplete") return [r, end];
  }
  return [{ kind: "incomplete" }, bytes.length];
}

test("property: encode then parse, in random splits, gives the endpoints back (v1 and v2)", () => {
  fc.assert(
    fc.property(
      fc.constantFrom(1 as const, 2 as const),
      endpoint,
      endpoint,
      fc.uint8Array({ maxLength: 40 }),
      fc.array(fc.nat(), { maxLength: 8 }),
      (version, src, dst, data, cuts) => {
        const h = encodeProxyHeader(version, src, dst);
        const [r, seen] = feed(concat(h, data), cuts);
        const parsed = header(r);
        assert.equal(parsed.version, version);
        assert.equal(parsed.length, h.length);
        assert.ok(seen >= h.length, "decided only once the whole header was there");
        sameHost(parsed.src!.address, src.address);
        sameHost(parsed.dst!.address, dst.address);
        assert.deepEqual([parsed.src!.port, parsed.dst!.port], [src.port, dst.port]);
        // Re-encoding what was parsed gives the very same header: it goes on unchanged.
        assert.deepEqual(encodeProxyHeader(version, parsed.src, parsed.dst), h);
      },
    ),
    { numRuns: 2000 },
  );
});

// Inputs near valid headers: valid ones cut, mutated, extended, and noise.
const nearHeader = fc.oneof(
  fc.uint8Array({ maxLength: 200 }),
  fc.tuple(fc.constantFrom(1 as const, 2 as const), endpoint, endpoint, fc.uint8Array({ maxLength: 20 })).map((
    [v, s, d, tail],
  ) => concat(encodeProxyHeader(v, s, d), tail)),
).chain((bytes) =>
  fc.tuple(fc.constant(bytes), fc.array(fc.tuple(fc.nat(), octet), { maxLength: 4 })).map(([b, edits]) => {
    const out = b.slice();
    for (const [i, v] of edits) if (out.length) out[i % out.length] = v;
    return out;
  })
);

test("property: never throws; an answer, once given, holds whatever bytes follow", () => {
  fc.assert(
    fc.property(nearHeader, fc.uint8Array({ maxLength: 120 }), (bytes, more) => {
      const first = parseProxyHeader(bytes);
      const later = parseProxyHeader(concat(bytes, more));
      if (first.kind === "incomplete") {
        // Undecided only while a v1 line may still end, or a v2 header is not all there.
        assert.ok(bytes[0] === 0x50 ? bytes.length < PROXY_V1_MAX_LENGTH : bytes.length < PROXY_V2_MAX_LENGTH);
        return;
      }
      assert.deepEqual(later, first, "an error stays an error, a header stays the same header");
      if (first.kind === "header") assert.ok(first.length <= bytes.length);
    }),
    { numRuns: 5000 },
  );
});

test("performance: a v2 header with 64 KiB of TLVs (21,841 of them) parses in under 2 ms per call", () => {
  const bytes = new Uint8Array(16 + 0xffff);
  bytes.set(hex(`${SIGNATURE} 21 11 ff ff 0a 00 00 01 0a 00 00 02 00 01 00 02`));
  // The worst case for the TLV walk: 65,523 bytes of empty 3-byte NOOPs, 21,841 of them.
  for (let i = 28; i < bytes.length; i += 3) bytes[i] = 0x04;
  const r = header(parseProxyHeader(bytes));
  assert.equal(r.length, bytes.length);
  const started = performance.now();
  for (let i = 0; i < 100; i++) parseProxyHeader(bytes);
  const perCall = (performance.now() - started) / 100;
  assert.ok(perCall < 2, `${perCall.toFixed(3)} ms per parse`);
});
