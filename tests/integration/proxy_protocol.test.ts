/**
 * The PROXY protocol (issue 15) on real sockets and processes:
 * `--proxy-protocol v1|v2` sends the client's endpoints byte for byte before
 * any client byte (also to a server that speaks first, and as LOCAL/UNKNOWN
 * in health checks); `--accept-proxy` takes the client from a received
 * header (hashing, traces, the connection log, the header sent on) and
 * refuses every malformed, partial, late or fuzzed one without it ever
 * reaching a channel; real nginx behind balance and real HAProxy in front
 * agree with it. Expected headers are written out here from the
 * specification, not made with the product's encoder.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type * as net from "node:net";
import process from "node:process";
import fc from "fast-check";
import { type Backend, type Behaviour, type Client, connect, freePort, startBackend } from "../support/net.ts";
import { runBalance, type Running, startBalance, withProxy } from "../support/balance.ts";
import { until, within } from "../support/wait.ts";
import { NGINX, startProxyProtocolNginx } from "../support/nginx.ts";
import { HAPROXY, startProxyProtocolHaproxy } from "../support/haproxy.ts";
import { Channel, Group, hashClientAddress } from "../../src/core/mod.ts";
import { hashedChannels } from "../../src/core/selection/schedule/rendezvous.ts";
import { exchange, sleep, status } from "../support/helpers.ts";

// ------------------------------------------------------ headers, by hand

const SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/** The bytes of a numeric IPv4 or IPv6 address (`::` expanded). */
function ipBytes(address: string): number[] {
  if (!address.includes(":")) return address.split(".").map(Number);
  const [head, tail] = address.split("::");
  const groups = (part?: string) => part ? part.split(":").map((g) => parseInt(g, 16)) : [];
  const h = groups(head);
  const t = groups(tail);
  const all = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill(0), ...t];
  return all.flatMap((g) => [g >> 8, g & 0xff]);
}

/** One end of a connection as a header names it. */
interface End {
  address: string;
  port: number;
}

/** The v1 line for `src` → `dst` (both of one family). */
const v1Line = (src: End, dst: End) =>
  Buffer.from(
    `PROXY ${src.address.includes(":") ? "TCP6" : "TCP4"} ${src.address} ${dst.address} ${src.port} ${dst.port}\r\n`,
  );

/** The v2 PROXY block for `src` → `dst`, with `tlvs` after the addresses. */
function v2Block(src: End, dst: End, tlvs: number[] = []): Buffer {
  const s = ipBytes(src.address);
  const d = ipBytes(dst.address);
  const length = 2 * s.length + 4 + tlvs.length;
  const port = (p: number) => [p >> 8, p & 0xff];
  return Buffer.from([
    ...SIGNATURE,
    0x21,
    s.length === 4 ? 0x11 : 0x21,
    length >> 8,
    length & 0xff,
    ...s,
    ...d,
    ...port(src.port),
    ...port(dst.port),
    ...tlvs,
  ]);
}

const header = (version: 1 | 2, src: End, dst: End) => version === 1 ? v1Line(src, dst) : v2Block(src, dst);
const V2_LOCAL = Buffer.from([...SIGNATURE, 0x20, 0x00, 0x00, 0x00]);
const V1_UNKNOWN = Buffer.from("PROXY UNKNOWN\r\n");
// ALPN "h2", a NOOP of 5 bytes, an empty UNIQUE_ID.
const TLVS = [0x01, 0x00, 0x02, 0x68, 0x32, 0x04, 0x00, 0x05, 0, 0, 0, 0, 0, 0x05, 0x00, 0x00];
const CLAIMED: End = { address: "10.9.8.7", port: 4000 };
const CLAIMED_DST: End = { address: "192.0.2.1", port: 443 };

/** Shows bytes for a failure message: text where printable, else hex. */
const shown = (b: Buffer) =>
  /^[\x20-\x7e\r\n]*$/.test(b.toString("latin1")) ? JSON.stringify(b.toString()) : b.toString("hex");

// ------------------------------------------------------------ fixtures

/** One connection a {@link recording} backend accepted: every byte it received, and whether it has closed. */
interface Recorded {
  data: Buffer;
  closed: boolean;
}

/**
 * A backend behaviour that records each connection's bytes (in the order
 * accepted), greets with `greeting` at once when given (a server that
 * speaks first), and answers `answer(bytes so far)` when that gives text.
 */
function recording(
  { greeting, answer }: { greeting?: string; answer?: (data: Buffer) => string | undefined } = {},
): { conns: Recorded[]; behaviour: Behaviour } {
  const conns: Recorded[] = [];
  const behaviour: Behaviour = (s: net.Socket) => {
    const conn: Recorded = { data: Buffer.alloc(0), closed: false };
    conns.push(conn);
    if (greeting) s.write(greeting);
    s.on("data", (d: Buffer) => {
      conn.data = Buffer.concat([conn.data, d]);
      const reply = answer?.(conn.data);
      if (reply) s.write(reply);
    });
    s.on("end", () => s.end());
    s.on("close", () => (conn.closed = true));
  };
  return { conns, behaviour };
}

/** Waits until connection `i` of `conns` has at least `n` bytes; its bytes. */
async function recorded(conns: Recorded[], i: number, n: number, what = `connection ${i}`): Promise<Buffer> {
  const conn = await until(() => conns[i], (c) => c !== undefined && c.data.length >= n, `${n} bytes at ${what}`);
  return conn.data;
}

/** Asserts `got` is `head` then `rest`, byte for byte. */
function assertBytes(got: Buffer, head: Buffer, rest: Buffer, what: string) {
  assert.equal(shown(got.subarray(0, head.length)), shown(head), `${what}: the header`);
  assert.ok(got.subarray(head.length).equals(rest), `${what}: then the client's ${rest.length} bytes unchanged`);
}

/** Resolves once balance has closed `c` (FIN or reset), with the ms since `since`; rejects after `ms`. */
function closedByBalance(c: Client, since: number, ms: number): Promise<number> {
  const from = c.socket.localPort;
  const gone = new Promise<number>((resolve) => {
    const done = () => resolve(performance.now() - since);
    if (c.socket.readableEnded || c.socket.destroyed) return done();
    c.socket.once("end", done);
    c.socket.once("close", done);
  });
  return within(gone, ms, () => `balance to close the client of port ${from}`);
}

/** `balance_clients_proxy_refused_total` from a scrape of `--metrics` on `metricsPort`. */
function refusedTotal(metricsPort: number): Promise<number> {
  return metric(metricsPort, "balance_clients_proxy_refused_total");
}

/** The value of the unlabelled metric `name`. */
async function metric(metricsPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)$`, "m").exec(text);
  assert.ok(m, `${name} in:\n${text}`);
  return Number(m[1]);
}

/** The `PROXY header refused from` warnings balance has logged. */
const refusals = (lb: Running) => lb.stderr().split("\n").filter((l) => l.includes("PROXY header refused from"));

/** The warnings, once there is at least one (logging may lag the close a little). */
async function warnedRefusals(lb: Running): Promise<string[]> {
  await lb.waitForTrace("PROXY header refused from");
  return refusals(lb);
}

/** Resident memory of `pid` in bytes. */
const rss = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;

/** How many threads accept: `BALANCE_WORKERS` when the suite runs them (throttling is per thread). */
const THREADS = Number(process.env.BALANCE_WORKERS ?? 1);

/** Waits until every channel has no connection; the rows. */
const settled = (port: number) => until(() => status(port), (rows) => rows.every((r) => r.c === 0), "c back to 0");

// ----------------------------------------------------- --proxy-protocol

for (const version of [1, 2] as const) {
  const v = `v${version}`;

  test(`proxy protocol: --proxy-protocol ${v}: the header for 127.0.0.9, byte for byte, then the client's bytes; not counted in sent`, async () => {
    const { conns, behaviour } = recording();
    await withProxy("rec", behaviour, ["--proxy-protocol", v], async ({ port }) => {
      const c = await connect(port, "127.0.0.1", "127.0.0.9");
      // Bytes that look like headers themselves, and 100 kB of noise: passed on as they are.
      const payload = Buffer.concat([V1_UNKNOWN, V2_LOCAL, randomBytes(100_000)]);
      c.socket.write(payload.subarray(0, 7));
      await sleep(50);
      c.socket.write(payload.subarray(7));
      const expected = header(version, { address: "127.0.0.9", port: c.socket.localPort! }, {
        address: "127.0.0.1",
        port,
      });
      const got = await recorded(conns, 0, expected.length + payload.length);
      assertBytes(got, expected, payload, v);
      c.socket.end();
      await c.ended();
      const rows = await until(
        () => status(port),
        (r) => r[0].c === 0 && r[0].sent === payload.length,
        `sent = the client's ${payload.length} bytes`,
      );
      assert.deepEqual(
        [rows[0].sent, rows[0].rcvd, rows[0].totalc, rows[0].proxyProtocol, rows[0].acceptProxy],
        [payload.length, 0, 1, v, false],
        "the header is not counted in sent",
      );
      assert.equal(conns[0].data.length, expected.length + payload.length, "nothing more reached the backend");
    });
  });

  test(`proxy protocol: --proxy-protocol ${v} with -6: a client from ::1 gets TCP6, an IPv4 client (mapped) TCP4`, async () => {
    const { conns, behaviour } = recording();
    await withProxy("rec", behaviour, ["-6", "--proxy-protocol", v], async ({ port }) => {
      const clients: [string, string, string][] = [["::1", "::1", "::1"], ["127.0.0.1", "127.0.0.9", "127.0.0.1"]];
      for (const [i, [host, from, to]] of clients.entries()) {
        const c = await connect(port, host, from);
        c.socket.write("hello");
        const expected = header(version, { address: from, port: c.socket.localPort! }, { address: to, port });
        if (version === 2) assert.equal(expected[13], from === "::1" ? 0x21 : 0x11);
        if (version === 2) assert.equal(expected.length, from === "::1" ? 16 + 36 : 16 + 12);
        assertBytes(await recorded(conns, i, expected.length + 5), expected, Buffer.from("hello"), `from ${from}`);
        c.socket.end();
        await c.ended();
      }
    });
  });

  test(`proxy protocol: --proxy-protocol ${v}: a server that speaks first gets the header before the client sends a byte`, async () => {
    const { conns, behaviour } = recording({ greeting: "220 smtp.example ESMTP\r\n" });
    await withProxy("smtp", behaviour, ["--proxy-protocol", v], async ({ port }) => {
      const c = await connect(port, "127.0.0.1", "127.0.0.9");
      const expected = header(version, { address: "127.0.0.9", port: c.socket.localPort! }, {
        address: "127.0.0.1",
        port,
      });
      // The client waits for the greeting; the header must not wait for the client.
      await c.waitFor((d) => d.toString() === "220 smtp.example ESMTP\r\n");
      assertBytes(await recorded(conns, 0, expected.length), expected, Buffer.alloc(0), "before any client byte");
      c.socket.write("EHLO client.example\r\n");
      assertBytes(
        await recorded(conns, 0, expected.length + 21),
        expected,
        Buffer.from("EHLO client.example\r\n"),
        "then the client's",
      );
      c.socket.end();
      await c.ended();
    });
  });

  test(
    `proxy protocol: --proxy-protocol ${v} --check: a check sends ${
      version === 1 ? "PROXY UNKNOWN" : "a v2 LOCAL header"
    } first, alone or before --check-send`,
    async () => {
      const local = version === 1 ? V1_UNKNOWN : V2_LOCAL;
      const check = ["--check", "--check-interval", "0.2", "--rise", "1", "--fall", "1"];
      // A connect-only check: the header alone, and the connection closed.
      const alone = recording();
      await withProxy("rec", alone.behaviour, ["--proxy-protocol", v, ...check], async () => {
        await until(() => alone.conns[0], (c) => c?.closed === true, "the first check to end");
        assertBytes(alone.conns[0].data, local, Buffer.alloc(0), "a connect-only check");
      });
      // With --check-send/--check-expect: answered only when the header comes first, exactly.
      const probe = Buffer.concat([local, Buffer.from("PING\r\n")]);
      const sending = recording({ answer: (data) => data.equals(probe) ? "PONG\n" : undefined });
      await withProxy(
        "rec",
        sending.behaviour,
        ["--proxy-protocol", v, ...check, "--check-send", "PING\\r\\n", "--check-expect", "PONG"],
        async ({ port }) => {
          const rows = await until(
            () => status(port),
            (r) => !!r[0].lastCheck && r[0].health === "up",
            "a check passed",
          );
          assert.doesNotMatch(rows[0].lastCheck!, /fail/);
          assertBytes(await recorded(sending.conns, 0, probe.length), local, Buffer.from("PING\r\n"), "a check");
        },
      );
    },
  );
}

test("proxy protocol: --proxy-protocol other than v1 or v2 exits 64 with one line naming the option", async () => {
  for (const value of ["v3", "1", "V2", ""]) {
    const { code, stderr } = await runBalance(["--proxy-protocol", value, "8080", "127.0.0.1:1"]);
    assert.equal(code, 64, `--proxy-protocol '${value}': ${stderr}`);
    const errors = stderr.split("\n").filter((l) => l.startsWith("balance:"));
    assert.deepEqual(errors, [
      `balance: invalid PROXY protocol version (--proxy-protocol) '${value}': must be v1 or v2`,
    ]);
  }
});

// -------------------------------------------------------- --accept-proxy

test("accept proxy: v1 and v2 (TLVs skipped) headers: the client's bytes after them, in the same packet or later, reach the channel; traced", async () => {
  const { conns, behaviour } = recording();
  await withProxy("rec", behaviour, ["--accept-proxy"], async ({ port, lb }) => {
    const sends: [string, Buffer[]][] = [
      ["v1 and data in one packet", [Buffer.concat([v1Line(CLAIMED, CLAIMED_DST), Buffer.from("hello")])]],
      ["v2 with TLVs and data in one packet", [
        Buffer.concat([v2Block(CLAIMED, CLAIMED_DST, TLVS), Buffer.from("hello")]),
      ]],
      ["v2, then data later", [v2Block(CLAIMED, CLAIMED_DST), Buffer.from("hello")]],
    ];
    for (const [i, [what, writes]] of sends.entries()) {
      const c = await connect(port);
      const from = c.socket.localPort;
      for (const w of writes) {
        c.socket.write(w);
        await sleep(100);
      }
      assert.equal((await recorded(conns, i, 5, what)).toString(), "hello", what);
      c.socket.end();
      await c.ended();
      assert.equal(conns[i].data.toString(), "hello", `${what}: the header is not passed on`);
      const version = what.slice(0, 2);
      await lb.waitForTrace(
        `127.0.0.1:${from}: PROXY ${version} header: client 10.9.8.7:4000 to 192.0.2.1:443`,
      );
    }
    const rows = await settled(port);
    assert.deepEqual([rows[0].totalc, rows[0].sent, rows[0].proxyProtocol, rows[0].acceptProxy], [3, 15, "none", true]);
  });
});

for (const out of [1, 2] as const) {
  test(`accept proxy: with --proxy-protocol v${out}, the received header's endpoints go on unchanged; LOCAL and UNKNOWN give the real peer`, async () => {
    const { conns, behaviour } = recording();
    await withProxy("rec", behaviour, ["--accept-proxy", "--proxy-protocol", `v${out}`], async ({ port }) => {
      const six = { src: { address: "2001:db8::7", port: 4000 }, dst: { address: "2001:db8::1", port: 443 } };
      const cases: [string, Buffer, End | undefined, End | undefined][] = [
        ["v1 TCP4", v1Line(CLAIMED, CLAIMED_DST), CLAIMED, CLAIMED_DST],
        ["v2 TCP4 with TLVs", v2Block(CLAIMED, CLAIMED_DST, TLVS), CLAIMED, CLAIMED_DST],
        ["v1 TCP6", v1Line(six.src, six.dst), six.src, six.dst],
        ["v2 TCP6", v2Block(six.src, six.dst), six.src, six.dst],
        ["v2 LOCAL", V2_LOCAL, undefined, undefined],
        ["v1 UNKNOWN", V1_UNKNOWN, undefined, undefined],
      ];
      for (const [i, [what, received, src, dst]] of cases.entries()) {
        const c = await connect(port, "127.0.0.1", "127.0.0.21");
        c.socket.write(Buffer.concat([received, Buffer.from("data")]));
        const expected = header(
          out,
          src ?? { address: "127.0.0.21", port: c.socket.localPort! },
          dst ?? { address: "127.0.0.1", port },
        );
        assertBytes(await recorded(conns, i, expected.length + 4, what), expected, Buffer.from("data"), what);
        c.socket.end();
        await c.ended();
      }
    });
  });
}

test("accept proxy: a % group hashes on the header's client: clients from 127.0.0.21 and .22 claiming one address share a channel", async () => {
  const backends = await Promise.all(["c0", "c1", "c2", "c3"].map((name) => startBackend(name)));
  const port = await freePort();
  const lb = await startBalance(
    ["--accept-proxy", String(port), ...backends.map((b) => `${b.host}:${b.port}`), "%"],
    port,
  );
  try {
    // The rendezvous model of src/core/selection/schedule/rendezvous.ts over the four channels.
    const group = new Group("Hash", backends.map((b) => new Channel(b.host, b.port)));
    const modelled = (address: string) =>
      backends[group.channels.indexOf(hashedChannels(group, hashClientAddress(address), false).next().value!)].name;
    const claims = ["10.9.8.7", ...Array.from({ length: 24 }, (_, i) => `198.51.100.${i + 1}`)];
    const landed = new Map<string, string>();
    for (const claim of claims) {
      const proxied = (from: string, version: 1 | 2) =>
        exchange(port, "ping", {
          first: header(version, { address: claim, port: 4000 }, { address: "127.0.0.1", port }),
          localAddress: from,
        });
      const names = [await proxied("127.0.0.21", 1), await proxied("127.0.0.22", 2), await proxied("127.0.0.22", 1)];
      assert.deepEqual(names, Array(3).fill(modelled(claim)), `every client claiming ${claim} on its channel`);
      landed.set(claim, names[0]);
    }
    assert.ok(new Set(landed.values()).size >= 3, `other claims land elsewhere: ${JSON.stringify([...landed])}`);
    const rows = await settled(port);
    assert.equal(rows.reduce((n, r) => n + r.totalc, 0), 3 * claims.length);
    for (const b of backends) {
      assert.equal(
        b.peers.length,
        [...landed.values()].filter((n) => n === b.name).length * 3,
        `${b.name}'s connections`,
      );
    }
  } finally {
    await lb.stop();
    await Promise.all(backends.map((b) => b.close()));
  }
});

// --------------------------------------------------------------- abuse

/** Balance with `--accept-proxy --metrics` and `options` in front of a greeting, echoing backend. */
async function withGuarded(
  options: string[],
  fn: (f: { port: number; metricsPort: number; lb: Running; backend: Backend }) => Promise<void>,
) {
  const metricsPort = await freePort();
  await withProxy(
    "a",
    undefined,
    ["--accept-proxy", "--metrics", String(metricsPort), ...options],
    ({ port, lb, backend }) => fn({ port, metricsPort, lb, backend }),
  );
}

/** A good client through a guarded balancer: header, then `ping`, echoed after the greeting `a`. */
const goodClient = (port: number) =>
  exchange(port, "ping", { first: v1Line(CLAIMED, { address: "127.0.0.1", port }) }).then((name) =>
    assert.equal(name, "a")
  );

const octet = fc.integer({ min: 0, max: 255 });
const endpoint = fc.record({
  address: fc.oneof(
    fc.tuple(octet, octet, octet, octet).map((o) => o.join(".")),
    fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }).map((g) =>
      g.map((w) => w.toString(16)).join(":")
    ),
  ),
  port: fc.integer({ min: 0, max: 0xffff }),
});
/** A valid header of either version, for any endpoints of one family. */
const validHeader = fc.tuple(fc.constantFrom(1 as const, 2 as const), endpoint, endpoint)
  .filter(([, s, d]) => s.address.includes(":") === d.address.includes(":"))
  .map(([version, src, dst]) => header(version, src, dst));
const digitsAndDots = fc.array(fc.constantFrom(..."0123456789. "), { minLength: 100, maxLength: 250 }).map((a) =>
  a.join("")
);

/**
 * Hostile first bytes, each refused for sure: `end` says the client then
 * half-closes (a partial header refused at the FIN), else balance must
 * refuse the bytes themselves, at once.
 */
const hostile: fc.Arbitrary<{ kind: string; bytes: Buffer; end: boolean }> = fc.oneof(
  validHeader.chain((h) =>
    fc.integer({ min: 1, max: h.length - 1 }).map((n) => ({ kind: "truncated", bytes: h.subarray(0, n), end: true }))
  ),
  digitsAndDots.map((s) => ({ kind: "over-long v1", bytes: Buffer.from(`PROXY TCP4 ${s}`), end: false })),
  fc.uint8Array({ minLength: 100, maxLength: 250 }).map((junk) => ({
    kind: "over-long v1 UNKNOWN",
    bytes: Buffer.from([...Buffer.from("PROXY UNKNOWN "), ...junk.map((b) => b === 0x0d || b === 0x0a ? 0x20 : b)]),
    end: false,
  })),
  fc.tuple(fc.integer({ min: 1, max: 11 }), octet).filter(([i, b]) => SIGNATURE[i] !== b).map(([i, b]) => {
    const bytes = Buffer.from([...SIGNATURE, 0x21, 0x11, 0x00, 0x0c]);
    bytes[i] = b;
    return { kind: "wrong signature", bytes, end: false };
  }),
  fc.tuple(fc.constantFrom([0x11, 12], [0x21, 36]), fc.nat()).map(([[family, minimum], n]) => {
    const length = n % minimum;
    return {
      kind: "wrong length",
      bytes: Buffer.from([...SIGNATURE, 0x21, family, length >> 8, length & 0xff, ...Array(length).fill(0)]),
      end: false,
    };
  }),
  fc.tuple(fc.integer({ min: 15, max: 0xffff }), octet, fc.nat()).map(([length, type, over]) => {
    // Addresses, then one TLV whose own length runs past the header's: HAProxy refuses that too.
    const room = length - 12 - 3;
    const tlvLength = room + 1 + (over % (0xffff - room));
    const bytes = Buffer.alloc(16 + length);
    Buffer.from([...SIGNATURE, 0x21, 0x11, length >> 8, length & 0xff, 10, 9, 8, 7, 127, 0, 0, 1, 0x0f, 0xa0, 0, 80])
      .copy(bytes);
    bytes.set([type, tlvLength >> 8, tlvLength & 0xff], 28);
    return { kind: "v2 with a huge TLV length", bytes, end: false };
  }),
  fc.constantFrom([0x11, 0x11], [0x31, 0x11], [0x22, 0x11], [0x2f, 0x21], [0x21, 0x13], [0x21, 0x41], [0x21, 0x03]).map(
    (
      [command, family],
    ) => ({
      kind: "bad v2 version, command or family",
      bytes: Buffer.from([...SIGNATURE, command, family, 0x00, 0x0c, ...Array(12).fill(1)]),
      end: false,
    }),
  ),
  fc.uint8Array({ minLength: 1, maxLength: 200 }).filter((b) => b[0] !== 0x0d && b[0] !== 0x50).map((b) => ({
    kind: "not a header",
    bytes: Buffer.from(b),
    end: false,
  })),
);

test("abuse: fuzzed hostile headers are each refused at once; none reaches a channel; counted, warned (throttled)", {
  timeoutMs: 90_000,
}, () =>
  withGuarded(["-t", "5"], async ({ port, metricsPort, lb, backend }) => {
    let runs = 0;
    const kinds = new Set<string>();
    const started = performance.now();
    await fc.assert(
      fc.asyncProperty(hostile, async ({ kind, bytes, end }) => {
        runs++;
        kinds.add(kind);
        const c = await connect(port);
        const since = performance.now();
        c.socket.write(bytes);
        if (end) c.socket.end();
        // Refused on the bytes or the FIN, long before -t 5 could close it.
        const ms = await closedByBalance(c, since, 4000);
        assert.ok(ms < 4000, `${kind} closed after ${ms.toFixed(0)} ms`);
        assert.equal(c.received().length, 0, `${kind}: nothing came back`);
        c.socket.destroy();
      }),
      { numRuns: 200 },
    );
    const elapsed = performance.now() - started;
    assert.ok(kinds.size >= 6, `the kinds tried: ${[...kinds]}`);
    assert.equal(backend.peers.length, 0, "no connection reached the channel");
    const rows = await status(port);
    assert.deepEqual([rows[0].c, rows[0].totalc, rows[0].sent], [0, 0, 0]);
    assert.equal(await until(() => refusedTotal(metricsPort), (n) => n === runs, `${runs} refused`), runs);
    const warned = await warnedRefusals(lb);
    assert.ok(warned.length >= 1, "the refusal is warned");
    assert.match(
      warned[0],
      /PROXY header refused from 127\.0\.0\.1:\d+: (PROXY v[12]: .+|not a PROXY header.*|client closed after \d+ bytes)$/,
    );
    const allowed = THREADS * (1 + Math.ceil(elapsed / 10_000));
    assert.ok(warned.length <= allowed, `throttled: ${warned.length} lines for ${runs} refusals in ${elapsed} ms`);
    await goodClient(port);
  }));

test("abuse: a header dribbled one byte a second is closed by -t 2, with the reason; the channel never sees it", () =>
  withGuarded(["-t", "2"], async ({ port, metricsPort, lb, backend }) => {
    const dribble = async (bytes: Buffer) => {
      const c = await connect(port);
      const since = performance.now();
      let sent = 0;
      const closing = closedByBalance(c, since, 6000);
      let open = true;
      closing.finally(() => (open = false)).catch(() => {});
      while (open && sent < bytes.length) {
        c.socket.write(bytes.subarray(sent, ++sent));
        await Promise.race([closing.catch(() => {}), new Promise((r) => setTimeout(r, 1000))]);
      }
      const ms = await closing;
      c.socket.destroy();
      return { ms, sent };
    };
    const [v1, v2] = await Promise.all([
      dribble(v1Line(CLAIMED, CLAIMED_DST)),
      dribble(v2Block(CLAIMED, CLAIMED_DST)),
    ]);
    for (const { ms, sent } of [v1, v2]) {
      assert.ok(ms >= 1800 && ms < 4500, `closed after ${ms.toFixed(0)} ms (-t 2)`);
      assert.ok(sent >= 2 && sent <= 4, `${sent} bytes dribbled before the close`);
    }
    assert.match((await warnedRefusals(lb))[0], /PROXY header refused from 127\.0\.0\.1:\d+: none within 2s$/);
    assert.equal(await refusedTotal(metricsPort), 2);
    assert.equal(backend.peers.length, 0);
    assert.deepEqual((await status(port)).map((r) => [r.c, r.totalc]), [[0, 0]]);
  }));

test(
  "abuse: 1,000 clients that never send a header are closed by -t 2; memory bounded; good clients served throughout",
  {
    timeoutMs: 120_000,
  },
  () =>
    withGuarded(["-t", "2"], async ({ port, metricsPort, lb, backend }) => {
      for (let i = 0; i < 20; i++) await goodClient(port);
      const before = rss(lb.child.pid!);
      let good = 20;
      let serving = true;
      const served = (async () => {
        while (serving) {
          await goodClient(port);
          good++;
          await sleep(20);
        }
      })();
      served.catch(() => {}); // awaited below, where a failure fails the test
      const started = performance.now();
      const silent: Promise<number>[] = [];
      let peak = before;
      let latest = 0;
      let earliest = 0;
      try {
        for (let batch = 0; batch < 10; batch++) {
          // Taken before connecting: balance cannot have accepted them earlier, so
          // a close is never measured as sooner than it came.
          const since = performance.now();
          const clients = await Promise.all(Array.from({ length: 100 }, () => connect(port)));
          for (const c of clients) {
            silent.push(closedByBalance(c, since, 10_000).finally(() => c.socket.destroy()));
          }
          peak = Math.max(peak, rss(lb.child.pid!));
        }
        const closedAfter = await Promise.all(silent);
        latest = Math.max(...closedAfter);
        earliest = Math.min(...closedAfter);
        assert.ok(earliest >= 1900, `none closed before the timeout: the first after ${earliest.toFixed(0)} ms`);
        assert.ok(latest < 8000, `every one closed within -t 2 and slack: the last after ${latest.toFixed(0)} ms`);
        await sleep(500);
      } finally {
        serving = false;
        await served;
      }
      const after = rss(lb.child.pid!);
      const elapsed = performance.now() - started;
      const mib = (n: number) => (n / 1048576).toFixed(1);
      console.log(
        `1,000 silent clients: closed after ${earliest.toFixed(0)}–${latest.toFixed(0)} ms; RSS ${
          mib(before)
        } MiB before, ${mib(peak)} at the peak, ${mib(after)} after; ${good} good clients served`,
      );
      assert.ok(peak - before < 64 * 1048576, `RSS grew ${mib(peak - before)} MiB with 1,000 silent clients`);
      assert.ok(after - before < 64 * 1048576, `RSS ${mib(after - before)} MiB above the start once they are gone`);
      assert.ok(good >= 40, `good clients served throughout: ${good}`);
      assert.equal(await refusedTotal(metricsPort), 1000);
      const rows = await settled(port);
      assert.deepEqual(
        [rows[0].totalc, backend.peers.length],
        [good, good],
        "only the good clients reached the channel",
      );
      const warned = await warnedRefusals(lb);
      assert.match(warned[0], /none within 2s$/);
      assert.ok(
        warned.length <= THREADS * (1 + Math.ceil(elapsed / 10_000)),
        `throttled: ${warned.length} lines for 1,000 refusals`,
      );
    }),
);

test("abuse: a client that connects and leaves without a byte (a front balancer's check) is not refused, counted, warned or logged", () =>
  withGuarded(["-t", "2", "--log-connections"], async ({ port, metricsPort, lb, backend }) => {
    const quiet: number[] = [];
    for (let i = 0; i < 5; i++) {
      const c = await connect(port);
      quiet.push(c.socket.localPort!);
      c.socket.end();
      await closedByBalance(c, performance.now(), 3000);
      c.socket.destroy();
    }
    // A good client after them: by its line, balance is done with theirs.
    await goodClient(port);
    await lb.waitForTrace(/connection 10\.9\.8\.7:4000 -> /);
    assert.equal(await refusedTotal(metricsPort), 0);
    assert.equal(await metric(metricsPort, "balance_clients_total"), 1, "only the good client is counted");
    assert.deepEqual(refusals(lb), []);
    for (const p of quiet) assert.doesNotMatch(lb.stderr(), new RegExp(`connection 127\\.0\\.0\\.1:${p} -> `));
    assert.equal(backend.peers.length, 1, "only the good client reached the channel");
  }));

// ------------------------------------------------------ connection log

test("accept proxy: --log-connections: a refused client ends proxy-refused with no channel; an accepted one shows the header's client", () =>
  withGuarded(["--log-connections"], async ({ port, lb, backend }) => {
    const c = await connect(port, "127.0.0.1", "127.0.0.9");
    const from = c.socket.localPort!;
    c.socket.write("GET / HTTP/1.1\r\n\r\n");
    await closedByBalance(c, performance.now(), 3000);
    c.socket.destroy();
    await lb.waitForTrace(new RegExp(`connection 127\\.0\\.0\\.9:${from} -> .*\\n`));
    const line = lb.stderr().split("\n").find((l) => l.includes(`connection 127.0.0.9:${from} -> `))!;
    assert.match(line, /-> none: [\d.]+ s, 0 bytes sent, 0 rcvd, proxy-refused$/);
    await goodClient(port);
    await lb.waitForTrace(/connection 10\.9\.8\.7:4000 -> .*\n/);
    const good = lb.stderr().split("\n").find((l) => l.includes("connection 10.9.8.7:4000 -> "))!;
    assert.match(
      good,
      new RegExp(
        `-> group 0 channel 0 \\(127\\.0\\.0\\.1:${backend.port}\\): connect [\\d.]+ ms, [\\d.]+ s, 4 bytes sent, 6 rcvd, client-closed$`,
      ),
    );
  }));

// ------------------------------------------------------- real software

const noNginx = !NGINX && "nginx (Debian package nginx-light) is not installed";
const noHaproxy = !HAPROXY && "haproxy (Debian package haproxy) is not installed";

/** An HTTP/1.0 GET from `localAddress` to `port`; the response body. */
async function httpGet(port: number, localAddress: string): Promise<{ body: string; clientPort: number }> {
  const c = await connect(port, "127.0.0.1", localAddress);
  const clientPort = c.socket.localPort!;
  c.socket.write("GET / HTTP/1.0\r\nHost: test\r\n\r\n");
  const response = (await c.ended()).toString();
  c.socket.end();
  assert.match(response, /^HTTP\/1\.1 200 OK\r\n/, response);
  return { body: response.slice(response.indexOf("\r\n\r\n") + 4), clientPort };
}

for (const version of [1, 2] as const) {
  test(
    `real software: nginx (listen … proxy_protocol) behind balance --proxy-protocol v${version} sees the client's real address`,
    {
      skip: noNginx,
    },
    async () => {
      const nginx = await startProxyProtocolNginx();
      try {
        const port = await freePort();
        const lb = await startBalance(
          ["--proxy-protocol", `v${version}`, String(port), `127.0.0.1:${nginx.port}`],
          port,
        );
        try {
          for (let i = 0; i < 3; i++) {
            const { body, clientPort } = await httpGet(port, "127.0.0.9");
            assert.equal(body, `127.0.0.9 ${clientPort} 127.0.0.1 ${port}\n`);
          }
        } finally {
          await lb.stop();
        }
      } finally {
        await nginx.stop();
      }
    },
  );
}

for (const send of ["send-proxy-v2", "send-proxy"] as const) {
  test(
    `real software: client → HAProxy (${send}) → balance --accept-proxy --proxy-protocol v1 → nginx: the client's address through both hops`,
    {
      skip: noNginx || noHaproxy,
    },
    async () => {
      const nginx = await startProxyProtocolNginx();
      const port = await freePort();
      let lb: Running | undefined;
      try {
        lb = await startBalance(
          ["--accept-proxy", "--proxy-protocol", "v1", String(port), `127.0.0.1:${nginx.port}`],
          port,
        );
        const haproxy = await startProxyProtocolHaproxy(port, send);
        try {
          for (let i = 0; i < 3; i++) {
            const { body, clientPort } = await httpGet(haproxy.port, "127.0.0.9");
            // What the client connected to is HAProxy: balance passes HAProxy's header on unchanged.
            assert.equal(body, `127.0.0.9 ${clientPort} 127.0.0.1 ${haproxy.port}\n`);
            await lb.waitForTrace(`header: client 127.0.0.9:${clientPort} to 127.0.0.1:${haproxy.port}`);
          }
        } finally {
          await haproxy.stop();
        }
        assert.deepEqual(refusals(lb), [], `HAProxy's headers were all accepted`);
        const rows = await settled(port);
        assert.equal(rows[0].totalc, 3);
      } finally {
        await lb?.stop();
        await nginx.stop();
      }
    },
  );
}

test("accept proxy: a stop ends a client still sending its header as shutdown, not as a refusal", () =>
  withGuarded(["--log-connections"], async ({ port, lb, backend }) => {
    const c = await connect(port, "127.0.0.1", "127.0.0.9");
    const from = c.socket.localPort!;
    c.socket.write("PROXY TCP4 10.9.");
    await sleep(200);
    assert.equal(await lb.stop(), 0);
    c.socket.destroy();
    const line = lb.stderr().split("\n").find((l) => l.includes(`connection 127.0.0.9:${from} -> `));
    assert.match(line ?? lb.stderr(), /-> none: [\d.]+ s, 0 bytes sent, 0 rcvd, shutdown$/);
    assert.doesNotMatch(lb.stderr(), /PROXY header refused/);
    assert.equal(backend.peers.length, 0);
  }));
