/**
 * UDP through balance (issue 25) on real sockets: `--udp` and `--udp-only`,
 * sessions per client address and port, selection as for TCP, the PROXY v2
 * datagram header, ICMP refusals, the caps, the log and the metrics; then
 * real DNS (dnsmasq, dig, dnsperf) and syslog (logger, socat) software, and
 * load: 10,000 sessions at once, hostile datagrams.
 */
import { onTimeout, test } from "../support/test.ts";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import type { Daemon } from "../support/daemon.ts";
import { runClient } from "../support/services.ts";
import { startDnsmasq } from "../support/dnsmasq.ts";
import { findProgram } from "../support/netns.ts";
import { freePort } from "../support/net.ts";
import { runBalance, type Running, startBalance } from "../support/balance.ts";
import { control, sleep, status, type StatusRow, withTempDir } from "../support/helpers.ts";
import { logged } from "../support/health.ts";
import { until, within } from "../support/wait.ts";
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
 * The servers `starts` make, in turn, then balance with `options` before a
 * free port and `channels(servers)` after it; stops both whatever happened.
 */
async function withServers<S>(
  starts: (() => Promise<S>)[],
  stop: (server: S) => Promise<void>,
  options: string[],
  channels: (servers: S[]) => string[],
  fn: (f: { port: number; lb: Running; servers: S[] }) => Promise<void>,
): Promise<void> {
  const servers: S[] = [];
  try {
    for (const start of starts) servers.push(await start());
    const port = await freePort();
    // Open sessions hold a stop for the grace period, as connections do: a second will do here.
    const lb = await startBalance(["--grace", "1", ...options, String(port), ...channels(servers)], port);
    try {
      await fn({ port, lb, servers });
    } finally {
      assert.equal(await lb.stop(), 0, "balance exits 0");
    }
  } finally {
    for (const server of servers) await stop(server);
  }
}

/**
 * UDP backends (`name` or `[name, reply]`), then balance with `options`
 * before a free port and `channels(backends)` (default: every backend, in
 * group 0) after it; stops both whatever happened.
 */
function withUdp(
  names: (string | [string, UdpReply])[],
  options: string[],
  fn: (udp: Udp) => Promise<void>,
  channels: (backends: UdpBackend[]) => string[] = (bs) => bs.map((b) => `${b.host}:${b.port}`),
): Promise<void> {
  const starts = names.map((n) => () => typeof n === "string" ? startUdpBackend(n) : startUdpBackend(...n));
  return withServers(
    starts,
    (b) => b.close(),
    options,
    channels,
    ({ port, lb, servers }) => fn({ port, lb, backends: servers }),
  );
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

// Real DNS software: two dnsmasq, each answering its own address for web.test.

/** A DNS query for `web.test A` with ID 0xbeef, in --check-send's escapes. */
const DNS_QUERY =
  "\\xbe\\xef\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x03web\\x04test\\x00\\x00\\x01\\x00\\x01";
const skipDns = !findProgram("dnsmasq")
  ? "dnsmasq is not installed"
  : !findProgram("dig")
  ? "dig is not installed"
  : false;

/** Two dnsmasq (198.18.0.1 and 198.18.0.2 for web.test), then balance with `options` and `channels(ns1, ns2)`. */
function withDnsPair(
  options: string[],
  fn: (f: { port: number; lb: Running; servers: Daemon[] }) => Promise<void>,
  channels: (servers: Daemon[]) => string[] = (ss) => ss.map((s) => `127.0.0.1:${s.port}`),
): Promise<void> {
  const starts = ["198.18.0.1", "198.18.0.2"].map((address) => () => startDnsmasq("web.test", address));
  return withServers(starts, (s) => s.stop(), options, channels, fn);
}

/** What `dig` through balance answers for web.test (`+tcp` among `flags` for TCP). */
async function dig(port: number, ...flags: string[]): Promise<string> {
  const r = await runClient("dig", [
    "+short",
    "+tries=1",
    "+time=2",
    ...flags,
    "@127.0.0.1",
    "-p",
    String(port),
    "web.test",
  ]);
  return r.stdout.trim();
}

test("udp: DNS: dig over UDP and over TCP through --udp both get answers, alternating over two dnsmasq", {
  skip: skipDns,
}, async () => {
  await withDnsPair(["--udp", "--udp-responses", "1"], async ({ port }) => {
    const overUdp = [await dig(port), await dig(port)];
    const overTcp = [await dig(port, "+tcp"), await dig(port, "+tcp")];
    assert.deepEqual(overUdp.sort(), ["198.18.0.1", "198.18.0.2"]);
    assert.deepEqual(overTcp.sort(), ["198.18.0.1", "198.18.0.2"]);
    assert.deepEqual((await status(port)).map((r) => r.c), [0, 0], "--udp-responses 1: no session left");
  });
});

/** Runs dnsperf: `queries` queries for web.test at `rate` a second; the share answered. */
async function dnsperf(port: number, queries: number, rate: number): Promise<number> {
  return await withTempDir("balance-dnsperf-", async (dir) => {
    const file = join(dir, "queries");
    writeFileSync(file, "web.test A\n");
    const r = await runClient(
      "dnsperf",
      [
        "-s",
        "127.0.0.1",
        "-p",
        String(port),
        "-d",
        file,
        "-n",
        String(queries),
        "-Q",
        String(rate),
        "-c",
        "20",
        "-t",
        "2",
      ],
      (queries / rate + 30) * 1000,
    );
    const completed = /Queries completed:\s+(\d+)/.exec(r.stdout);
    assert.ok(completed, `dnsperf said:\n${r.stdout}\n${r.stderr}`);
    return Number(completed[1]) / queries;
  });
}

test(
  "udp: DNS: dnsperf's 10,000 queries are answered (99.9 %), split evenly over equal channels and 3:1 by weight; no session left",
  { skip: skipDns || (!findProgram("dnsperf") && "dnsperf is not installed"), timeoutMs: 120_000 },
  async () => {
    for (const [weights, share] of [[[1, 1], 0.5], [[3, 1], 0.75]] as const) {
      await withDnsPair(
        ["--udp-only", "--udp-responses", "1"],
        async ({ port }) => {
          assert.ok((await dnsperf(port, 10_000, 2500)) >= 0.999, "at least 99.9 % answered");
          // Every query is the same size: the bytes sent to a channel count its queries.
          const rows = await until(() => status(port), (rs) => rs.every((r) => r.c === 0), "every session ended");
          const first = rows[0].sent / (rows[0].sent + rows[1].sent);
          assert.ok(Math.abs(first - share) <= 0.05 * share, `weights ${weights}: first channel's share ${first}`);
        },
        (ss) => ss.map((s, i) => `127.0.0.1:${s.port}::${weights[i]}`),
      );
    }
  },
);

test(
  "udp: DNS: a stopped dnsmasq is found down by a datagram --check; every query goes to the other; it comes back",
  { skip: skipDns, timeoutMs: 90_000 },
  async () => {
    const check = ["--check", "--check-interval", "0.5", "--check-timeout", "0.5", "--fall", "2", "--rise", "2"];
    await withDnsPair(
      ["--udp-only", "--udp-responses", "1", ...check, "--check-send", DNS_QUERY, "--check-expect", "\\xbe\\xef"],
      async ({ port, lb, servers: [ns1] }) => {
        await until(() => status(port), (rs) => rs.every((r) => r.health === "up"), "both up");
        process.kill(ns1.pid, "SIGSTOP");
        try {
          await logged(lb, /group 0 channel 0 .*is DOWN/, 20_000);
          const answers = [];
          for (let i = 0; i < 6; i++) answers.push(await dig(port));
          assert.deepEqual(answers, Array(6).fill("198.18.0.2"));
        } finally {
          process.kill(ns1.pid, "SIGCONT");
        }
        await logged(lb, /group 0 channel 0 .*is UP/, 20_000);
        assert.deepEqual([await dig(port), await dig(port)].sort(), ["198.18.0.1", "198.18.0.2"]);
      },
    );
  },
);

test(
  "udp: syslog: 10,000 lines from logger --udp reach two socat sinks behind --udp-only, every one",
  { skip: !findProgram("socat") ? "socat is not installed" : !findProgram("logger") && "logger is not installed" },
  async () => {
    await withTempDir("balance-syslog-", async (dir) => {
      const sinks: { port: number; child: ChildProcess; file: string }[] = [];
      try {
        for (const name of ["s1", "s2"]) {
          const port = await freePort();
          const child = spawn("socat", [
            "-u",
            `UDP4-RECV:${port},bind=127.0.0.1`,
            `OPEN:${join(dir, name)},creat,append`,
          ]);
          onTimeout(() => child.kill("SIGKILL"));
          sinks.push({ port, child, file: join(dir, name) });
        }
        await until(() => sinks.every((s) => udpBound(s.port)), (ok) => ok, "the sinks to listen");
        const port = await freePort();
        const lb = await startBalance(
          ["--grace", "1", "--udp-only", String(port), ...sinks.map((s) => `127.0.0.1:${s.port}`)],
          port,
        );
        try {
          // Two loggers, two sessions: one on each sink. 5,000 lines each, at most 2,000 a second in all.
          await Promise.all([0, 1].map((n) => sendLines(port, n, 5000, 1000)));
          const count = () => sinks.map((s) => (readText(s.file).match(/line-\d+-\d+/g) ?? []).length);
          const counts = await until(count, (c) => c[0] + c[1] === 10_000, "10,000 lines in the sinks", { ms: 15_000 });
          assert.deepEqual(counts, [5000, 5000], "one logger's session on each sink");
        } finally {
          assert.equal(await lb.stop(), 0);
        }
      } finally {
        for (const s of sinks) s.child.kill();
      }
    });
  },
);

// `lines` lines to `logger --udp` on `port`, `perSecond` at most.
async function sendLines(port: number, n: number, lines: number, perSecond: number): Promise<void> {
  const logger = spawn("logger", ["--udp", "-n", "127.0.0.1", "-P", String(port), "-t", "balance-test"], {
    stdio: ["pipe", "ignore", "inherit"],
  });
  onTimeout(() => logger.kill("SIGKILL"));
  const exited = new Promise<void>((r) => logger.once("exit", () => r()));
  const batch = perSecond / 20;
  for (let i = 0; i < lines; i += batch) {
    const text = Array.from({ length: Math.min(batch, lines - i) }, (_, j) => `line-${n}-${i + j}\n`).join("");
    logger.stdin!.write(text);
    await sleep(50);
  }
  logger.stdin!.end();
  await within(exited, 10_000, "logger to exit");
}

function readText(file: string): string {
  return existsSync(file) ? readFileSync(file, "latin1") : "";
}

// Whether something is bound to UDP `port` on 127.0.0.1 (from /proc/net/udp).
function udpBound(port: number): boolean {
  const hex = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  return readFileSync("/proc/net/udp", "utf8").includes(hex);
}

test(
  "udp: 10,000 sessions at once under -w 2 are all answered; the sessions end at the timeout; descriptors return to the baseline",
  { timeoutMs: 120_000 },
  async () => {
    await withUdp(["a", "b"], ["--udp-only", "-w", "2", "--udp-timeout", "3"], async ({ port, lb }) => {
      const pid = lb.child.pid!;
      const baseline = openDescriptors(pid);
      // A bounded rate: Deno opens a session's socket in a slower call, and a
      // full socket buffer would drop datagrams, as UDP may.
      const rate = underDeno ? 1000 : 2500;
      const r = await runClient(
        "python3",
        [
          join(import.meta.dirname!, "../support/udp_sessions.py"),
          "127.0.0.11",
          String(port),
          "10000",
          String(rate),
          "20",
        ],
        90_000,
      );
      assert.equal(r.stdout.trim(), "10000", `every session answered:\n${r.stderr}`);
      const rows = await status(port);
      assert.equal(rows[0].totalc + rows[1].totalc, 10_000);
      await until(() => status(port), (rs) => rs.every((row) => row.c === 0), "every session ended", { ms: 30_000 });
      await until(() => openDescriptors(pid), (n) => n <= baseline + 2, `descriptors back to ${baseline}`, {
        ms: 10_000,
      });
    });
  },
);

// Open descriptors of process `pid`.
function openDescriptors(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

test("udp: hostile datagrams (random sizes and bytes, 200 source ports) crash nothing; memory stays bounded", {
  timeoutMs: 90_000,
}, async () => {
  await withUdp([["e", "echo"]], ["--udp-only", "--udp-timeout", "1"], async ({ port, lb }) => {
    const dgram = await import("node:dgram");
    const pid = lb.child.pid!;
    const sockets = await Promise.all(
      Array.from({ length: 200 }, () =>
        new Promise<import("node:dgram").Socket>((resolve) => {
          const s = dgram.createSocket("udp4");
          s.on("message", () => {});
          s.bind(0, "127.0.0.12", () => resolve(s));
        })),
    );
    try {
      let seed = 7;
      const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
      const rssBefore = residentKiB(pid);
      // 4,000 datagrams, 40 every 20 ms (2,000 a second), sizes 0 to 65,507.
      for (let i = 0; i < 4000; i += 40) {
        for (let j = 0; j < 40; j++) {
          const size = random() < 0.1 ? 65_507 : Math.floor(random() * 2000);
          const data = new Uint8Array(size).map(() => Math.floor(random() * 256));
          sockets[(i + j) % sockets.length].send(data, port, "127.0.0.1");
        }
        await sleep(20);
      }
      assert.equal(await udpText(port, "still there"), "still there");
      assert.equal(lb.child.exitCode, null, "balance still runs");
      await until(() => status(port), (rs) => rs[0].c <= 1, "the sessions to time out", { ms: 15_000 });
      const grown = residentKiB(pid) - rssBefore;
      assert.ok(grown < 200 * 1024, `resident memory grew by ${grown} KiB`);
    } finally {
      for (const s of sockets) s.close();
    }
  });
});

// The resident set of process `pid`, in KiB.
function residentKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
}
