/**
 * UDP through balance (issue 25) on real sockets: `--udp` and `--udp-only`,
 * sessions per client address and port, selection as for TCP, the PROXY v2
 * datagram header, ICMP refusals, the caps, the log and the metrics; then
 * real DNS (dnsmasq, dig, dnsperf) and syslog (logger, socat) software, and
 * load: 10,000 sessions at once, hostile datagrams.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import process from "node:process";
import { freePort } from "../support/net.ts";
import { runBalance, type Running, startBalance } from "../support/balance.ts";
import { control, status, type StatusRow } from "../support/helpers.ts";
import { logged } from "../support/health.ts";
import { until } from "../support/wait.ts";
import { startUdpBackend, type UdpBackend, udpExchange, type UdpReply, udpText } from "../support/udp.ts";

/** Deno's datagram sockets report no ICMP error (see src/adapter/deno/datagram.ts). */
const underDeno = !process.env.BALANCE_BIN && process.env.BALANCE_RUNTIME !== "bun";

/** What a UDP test is given: balance's port, the balancer, its backends (in order). */
interface Udp {
  port: number;
  lb: Running;
  backends: UdpBackend[];
}

/**
 * UDP backends (`name` or `[name, reply]`), then balance with `options`
 * before a free port and `channels(backends)` (default: every backend, in
 * group 0) after it; stops both whatever happened.
 */
async function withUdp(
  names: (string | [string, UdpReply])[],
  options: string[],
  fn: (udp: Udp) => Promise<void>,
  channels: (backends: UdpBackend[]) => string[] = (bs) => bs.map((b) => `${b.host}:${b.port}`),
): Promise<void> {
  const backends: UdpBackend[] = [];
  try {
    for (const n of names) {
      const [name, reply] = typeof n === "string" ? [n, "name" as const] : n;
      backends.push(await startUdpBackend(name, reply));
    }
    const port = await freePort();
    // Open sessions hold a stop for the grace period, as connections do: a second will do here.
    const lb = await startBalance(["--grace", "1", ...options, String(port), ...channels(backends)], port);
    try {
      await fn({ port, lb, backends });
    } finally {
      assert.equal(await lb.stop(), 0, "balance exits 0");
    }
  } finally {
    for (const b of backends) await b.close();
  }
}

test("udp: --udp relays each datagram both ways unchanged, a session per client port, in round robin; TCP still listens", async () => {
  await withUdp(["a", "b"], ["--udp"], async ({ port, backends: [a, b] }) => {
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await udpText(port, `q${i}`));
    assert.deepEqual(answers, ["a:q0", "b:q1", "a:q2", "b:q3"]);
    assert.deepEqual(a.received.map((r) => new TextDecoder().decode(r.data)), ["q0", "q2"]);
    assert.deepEqual(b.received.map((r) => new TextDecoder().decode(r.data)), ["q1", "q3"]);
    // Each session is open until --udp-timeout (30 s): c counts them, sent/rcvd count datagram bytes.
    const rows = await status(port);
    assert.deepEqual(rows.map((r) => [r.c, r.totalc, r.sent, r.rcvd]), [[2, 2, 4, 8], [2, 2, 4, 8]]);
    assert.deepEqual(rows[0].protocols, ["tcp", "udp"]);
    // The TCP listener is there too (its channels are UDP servers: the connect is refused).
    assert.match(await control(port, "show"), /^ *GRP/m);
  });
});

test("udp: one session carries every datagram of its client port, one in and one out, never merged", async () => {
  await withUdp([["e", "echo"]], ["--udp-only", "--udp-responses", "0"], async ({ port, backends: [e] }) => {
    const dgram = await import("node:dgram");
    const socket = dgram.createSocket("udp4");
    const got: string[] = [];
    socket.on("message", (m: Uint8Array) => got.push(new TextDecoder().decode(m)));
    await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
    try {
      for (let i = 0; i < 20; i++) socket.send(`d${i}`, port, "127.0.0.1");
      await until(() => got.length, (n) => n === 20, "20 answers");
      assert.deepEqual(got.sort(), Array.from({ length: 20 }, (_, i) => `d${i}`).sort());
      assert.equal(e.received.length, 20, "20 datagrams, none merged");
      assert.equal(new Set(e.received.map((r) => r.port)).size, 1, "one session socket");
      assert.deepEqual((await status(port)).map((r) => [r.c, r.totalc]), [[1, 1]]);
      assert.deepEqual((await status(port))[0].protocols, ["udp"]);
    } finally {
      socket.close();
    }
  });
});

test("udp: a 65,507-byte datagram arrives intact, there and back", async () => {
  await withUdp([["e", "echo"]], ["--udp-only"], async ({ port, backends: [e] }) => {
    const big = new Uint8Array(65_507);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7 + 3) & 0xff;
    const back = await udpExchange(port, big);
    assert.equal(e.received[0].data.length, 65_507);
    assert.deepEqual(e.received[0].data, big);
    assert.deepEqual(back, big);
  });
});

test("udp: a % group keeps a client address on one channel across its sessions", async () => {
  await withUdp(
    ["a", "b", "c"],
    ["--udp-only", "--udp-responses", "1"],
    async ({ port }) => {
      for (const client of ["127.0.0.9", "127.0.0.10"]) {
        const who = new Set<string | undefined>();
        for (let i = 0; i < 8; i++) who.add((await udpText(port, "q", { localAddress: client }))?.split(":")[0]);
        assert.equal(who.size, 1, `${client} always on one channel: ${[...who]}`);
      }
      assert.deepEqual((await status(port)).map((r) => r.c), [0, 0, 0], "--udp-responses 1: no session left open");
    },
    (bs) => [...bs.map((b) => `${b.host}:${b.port}`), "%"],
  );
});

test("udp: --proxy-protocol v2 puts a DGRAM header in front of every datagram, byte for byte", async () => {
  await withUdp(
    [["e", "echo"]],
    ["--udp-only", "-b", "127.0.0.1", "--proxy-protocol", "v2"],
    async ({ port, backends: [e] }) => {
      const dgram = await import("node:dgram");
      const socket = dgram.createSocket("udp4");
      await new Promise<void>((r) => socket.bind(0, "127.0.0.9", () => r()));
      try {
        socket.send("one", port, "127.0.0.1");
        socket.send("two", port, "127.0.0.1");
        await until(() => e.received.length, (n) => n === 2, "two datagrams at the channel");
        const clientPort = socket.address().port;
        const header = [
          ...[0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a],
          0x21, // v2, PROXY
          0x12, // IPv4, DGRAM
          0x00,
          12,
          ...[127, 0, 0, 9],
          ...[127, 0, 0, 1],
          clientPort >> 8,
          clientPort & 0xff,
          port >> 8,
          port & 0xff,
        ];
        // Datagrams may be reordered on the way, as UDP allows.
        const got = e.received.map((r) => [...r.data]).sort((x, y) => x.at(-1)! - y.at(-1)!);
        assert.deepEqual(got, ["one", "two"].map((p) => [...header, ...new TextEncoder().encode(p)]));
        // sent counts the client's bytes only.
        const shown = await runBalance(["-b", "127.0.0.1", "-c", "show --json", String(port)]);
        assert.deepEqual(JSON.parse(shown.stdout).map((r: StatusRow) => r.sent), [6]);
      } finally {
        socket.close();
      }
    },
  );
});

test(
  "udp: an ICMP port unreachable is a failed connect: -a disables the channel, the session ends, the next datagram goes on",
  { skip: underDeno && "Deno's datagram sockets report no ICMP error (docs/udp.md)" },
  async () => {
    const dead = await startUdpBackend("dead");
    const deadPort = dead.port;
    await dead.close();
    await withUdp(
      ["live"],
      ["--udp-only", "-a", "--log-connections"],
      async ({ port, lb }) => {
        assert.equal(
          await udpText(port, "first", { timeoutMs: 500 }),
          undefined,
          "the dead channel's session gets nothing",
        );
        await logged(lb, /connection udp 127\.0\.0\.1:\d+ -> group 0 channel 0 .*connect-failed/);
        await logged(lb, /disabled \(-a\)/);
        assert.equal(await udpText(port, "second"), "live:second");
        const rows = await status(port);
        assert.deepEqual(rows.map((r) => [r.enabled, r.c]), [[false, 0], [true, 1]]);
      },
      ([live]) => [`127.0.0.1:${deadPort}`, `${live.host}:${live.port}`],
    );
  },
);

test("udp: --udp-max-sessions caps the sessions; a datagram beyond is dropped and counted; the metrics say so", async () => {
  const metricsPort = await freePort();
  await withUdp(
    ["a"],
    ["--udp-only", "--udp-max-sessions", "2", "--metrics", String(metricsPort)],
    async ({ port }) => {
      assert.equal(await udpText(port, "1"), "a:1");
      assert.equal(await udpText(port, "2"), "a:2");
      assert.equal(await udpText(port, "3", { timeoutMs: 300 }), undefined, "a third session is over the cap");
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.match(text, /^balance_udp_sessions 2$/m);
      assert.match(text, /^balance_udp_dropped_total\{reason="over-cap"\} 1$/m);
      assert.match(text, /^balance_udp_dropped_total\{reason="no-channel"\} 0$/m);
      assert.match(
        text,
        /^balance_channel_datagrams_total\{group="0",channel="0",address="[^"]+",direction="sent"\} 2$/m,
      );
      assert.match(text, /^balance_channel_datagrams_total\{[^}]*direction="received"\} 2$/m);
      const json = await (await fetch(`http://127.0.0.1:${metricsPort}/status`)).json();
      assert.deepEqual(json[0].protocols, ["udp"]);
    },
  );
});

test("udp: --udp-timeout ends a quiet session; --log-connections writes a udp line with its reason", async () => {
  await withUdp(
    ["a"],
    ["--udp-only", "--udp-timeout", "1", "--log-connections"],
    async ({ port, lb }) => {
      assert.equal(await udpText(port, "hello", { localAddress: "127.0.0.7" }), "a:hello");
      assert.equal((await status(port))[0].c, 1);
      await until(() => status(port), (rows) => rows[0].c === 0, "the session to time out", { ms: 10_000 });
      await logged(
        lb,
        /connection udp 127\.0\.0\.7:\d+ -> group 0 channel 0 \(127\.0\.0\.1:\d+\): connect [\d.]+ ms, [\d.]+ s, 5 bytes sent, 7 rcvd, idle-timeout/,
      );
    },
  );
  await withUdp(["a"], ["--udp-only", "--udp-responses", "1", "--log-connections"], async ({ port, lb }) => {
    assert.equal(await udpText(port, "q"), "a:q");
    await logged(lb, /connection udp 127\.0\.0\.1:\d+ -> group 0 channel 0 .* 1 bytes sent, 3 rcvd, responses$/m);
  });
});
