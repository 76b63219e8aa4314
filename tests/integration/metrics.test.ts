/**
 * `--metrics` (issue 14) on real sockets and processes: what a scrape says
 * agrees with `show --json` after a known workload, under `-w 2` too;
 * promtool accepts a scrape taken under load; a real Prometheus scrapes
 * balance; the listener survives abuse while the balancer goes on relaying.
 */
import { onTimeout, test } from "../support/test.ts";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Backend, connect, freePort } from "../support/net.ts";
import { runBalance, type Running, withBalancer } from "../support/balance.ts";
import { until } from "../support/wait.ts";
import { control, exchange, sleep, status } from "../support/helpers.ts";

const at = (b: Backend, rest = "") => `${b.host}:${b.port}${rest}`;
const hasPromtool = spawnSync("promtool", ["--version"]).status === 0;
const hasPrometheus = spawnSync("prometheus", ["--version"]).status === 0;

/**
 * Balance with `--metrics` on a free port (after `options`) in front of
 * backends named `names`; it must exit 0.
 */
async function withMetrics(
  names: string[],
  channels: (bs: Backend[]) => string[],
  fn: (f: { port: number; metricsPort: number; lb: Running; backends: Backend[] }) => Promise<void>,
  options: string[] = [],
  metricsAt = (port: number) => String(port),
) {
  const metricsPort = await freePort();
  await withBalancer(
    { backends: names, options: [...options, "--metrics", metricsAt(metricsPort)], channels, exitCode: 0 },
    ({ port, lb, backends }) => fn({ port, metricsPort, lb, backends }),
  );
}

async function scrape(metricsPort: number, path = "/metrics"): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}${path}`);
  assert.equal(res.status, 200, `GET ${path}`);
  return await res.text();
}

/** The value of the sample `name{labels…}` (labels in the text's order, without braces); undefined when absent. */
function sample(text: string, name: string, labels?: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(labels === undefined ? `${name} ` : `${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

const labels = (g: number, n: number, b: Backend) => `group="${g}",channel="${n}",address="${at(b)}"`;

test("metrics: the start line names the listener; /metrics and /status answer GET and HEAD; others 404, 405", () =>
  withMetrics(["a"], ([a]) => [at(a)], async ({ metricsPort, lb }) => {
    assert.match(lb.stderr(), new RegExp(` 1 group\\(s\\), metrics 127\\.0\\.0\\.1:${metricsPort}, control `));
    const base = `http://127.0.0.1:${metricsPort}`;
    const get = await fetch(`${base}/metrics`);
    assert.equal(get.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const body = await get.text();
    assert.match(body, /^# HELP balance_channel_connections /);
    const head = await fetch(`${base}/metrics`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), "");
    const statusRes = await fetch(`${base}/status`);
    assert.equal(statusRes.headers.get("content-type"), "application/json; charset=utf-8");
    const rows = await statusRes.json();
    assert.deepEqual([rows.length, rows[0].channel, rows[0].enabled], [1, 0, true]);
    assert.equal((await fetch(`${base}/status`, { method: "HEAD" })).status, 200);
    const missing = await fetch(`${base}/metricsx`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    const post = await fetch(`${base}/metrics`, { method: "POST", body: "x" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
    await post.body?.cancel();
  }));

for (const workers of [undefined, 2]) {
  const w = workers ? ["-w", String(workers)] : [];
  test(`metrics: values agree with show --json after a known workload${workers ? " (-w 2)" : ""}; reset leaves them`, () =>
    withMetrics(["a", "b"], ([a, b]) => [at(a, ":0:2"), at(b)], async ({ port, metricsPort, lb, backends: [a, b] }) => {
      if (workers) await lb.waitForTrace("in 2 thread(s)");
      const rounds = workers ? 10 : 1;
      for (let i = 0; i < 6 * rounds; i++) await exchange(port, "hello");
      await until(() => status(port), (s) => s.every((row) => row.c === 0), "connections closed");
      const show = await status(port);
      const text = await scrape(metricsPort);
      const made = 6 * rounds;
      // weight 2 against 1: a takes two of every three.
      assert.deepEqual(show.map((r) => r.totalc), [made * 2 / 3, made / 3]);
      show.forEach((row, n) => {
        const l = labels(0, n, [a, b][n]);
        assert.equal(sample(text, "balance_channel_connections_total", l), row.totalc, `channel ${n} connections`);
        assert.equal(sample(text, "balance_channel_sent_bytes_total", l), row.sent, `channel ${n} sent`);
        assert.equal(sample(text, "balance_channel_received_bytes_total", l), row.rcvd, `channel ${n} received`);
        assert.equal(row.sent, 5 * row.totalc);
        assert.equal(row.rcvd, 7 * row.totalc);
        assert.equal(sample(text, "balance_channel_connections", l), 0);
        assert.equal(sample(text, "balance_channel_connect_duration_seconds_count", l), row.totalc);
        assert.equal(sample(text, "balance_channel_connect_failures_total", l), 0);
        assert.equal(sample(text, "balance_channel_weight", l), n === 0 ? 2 : 1);
        assert.equal(sample(text, "balance_channel_up", l), 1);
        assert.equal(sample(text, "balance_channel_enabled", l), 1);
      });
      assert.equal(sample(text, "balance_clients_total"), made);
      assert.equal(sample(text, "balance_clients_rejected_total"), 0);
      assert.equal(sample(text, "balance_open_connections"), 0);
      if (workers) {
        const accepted = [0, 1].map((wk) =>
          lb.stderr().split("\n").filter((l) => l.includes(`worker ${wk}: accepted`)).length
        );
        assert.ok(accepted[0] > 0 && accepted[1] > 0, `both workers counted (accepted ${accepted})`);
      }
      // reset: show starts again from 0, the metrics go on.
      await control(port, "reset 0");
      await control(port, "reset 1");
      await exchange(port, "hello");
      const after = await status(port);
      const text2 = await scrape(metricsPort);
      assert.ok(after[0].totalc + after[1].totalc === 1, "show counts from the reset");
      const total = (t: string) =>
        [0, 1].reduce((s, n) => s + sample(t, "balance_channel_connections_total", labels(0, n, [a, b][n]))!, 0);
      assert.equal(total(text2), made + 1, "the counter went on across reset");
      assert.ok(
        sample(text2, "balance_channel_sent_bytes_total", labels(0, 0, a))! >=
          sample(text, "balance_channel_sent_bytes_total", labels(0, 0, a))!,
      );
    }, w));
}

test("metrics: connect failures, rejected clients and disabled channels are counted", async () => {
  const refused = await freePort();
  await withMetrics(
    ["a"],
    ([a]) => [at(a), `127.0.0.1:${refused}`],
    async ({ port, metricsPort, lb, backends: [a] }) => {
      // Round robin: a client may try the refusing channel first, then fail over to a.
      for (let i = 0; i < 4; i++) assert.equal(await exchange(port, "hello"), "a");
      await control(port, "disable 0");
      // Only the refusing channel is left: connect-failed.
      const c1 = await connect(port);
      await c1.ended();
      await control(port, "disable 1");
      // None is left: no-channel.
      const c2 = await connect(port);
      await c2.ended();
      const text = await scrape(metricsPort);
      const dead = `group="0",channel="1",address="127.0.0.1:${refused}"`;
      assert.equal(sample(text, "balance_clients_total"), 6);
      assert.equal(sample(text, "balance_clients_rejected_total"), 2);
      assert.equal(sample(text, "balance_channel_connections_total", labels(0, 0, a)), 4);
      assert.equal(sample(text, "balance_channel_connections_total", dead), 0);
      assert.equal(sample(text, "balance_channel_connect_failures_total", labels(0, 0, a)), 0);
      // The -d trace tells each failed attempt.
      const failures =
        lb.stderr().split("\n").filter((l) => / DBG: .*connect to group 0 channel 1 .*failed/.test(l)).length;
      assert.ok(failures >= 2, `${failures} failed connects`);
      assert.equal(sample(text, "balance_channel_connect_failures_total", dead), failures);
      assert.equal(sample(text, "balance_channel_connect_duration_seconds_count", dead), failures);
      assert.equal(sample(text, "balance_channel_enabled", labels(0, 0, a)), 0);
      assert.equal(sample(text, "balance_channel_enabled", dead), 0);
    },
  );
});

test("metrics: promtool check metrics passes on scrapes taken under load", {
  skip: !hasPromtool && "promtool (Debian package prometheus) is not installed",
}, () =>
  withMetrics(["a", "b"], ([a, b]) => [at(a), at(b, ":0:3")], async ({ port, metricsPort }) => {
    let loading = true;
    const load = Promise.all(Array.from({ length: 8 }, async () => {
      while (loading) await exchange(port, "hello");
    }));
    try {
      for (let i = 0; i < 5; i++) {
        await sleep(100);
        const text = await scrape(metricsPort);
        const check = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8", timeout: 10_000 });
        assert.equal(check.status, 0, `promtool check metrics: ${check.stdout}${check.stderr}`);
      }
    } finally {
      loading = false;
      await load;
    }
  }));

/** `/proc/PID/status` VmRSS in bytes. */
function residentBytes(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1];
  return Number(kb) * 1024;
}

test(
  "metrics: a real Prometheus scrapes balance and counts each channel's connections",
  {
    skip: !hasPrometheus && "prometheus (Debian package prometheus) is not installed",
    timeoutMs: 90_000,
  },
  () =>
    withMetrics(["a", "b"], ([a, b]) => [at(a, ":0:3"), at(b)], async ({ port, metricsPort, backends: [a, b] }) => {
      // weight 3 against 1: of 8 clients, a takes 6 and b 2.
      const seen = [];
      for (let i = 0; i < 8; i++) seen.push(await exchange(port, "hello"));
      assert.deepEqual([seen.filter((x) => x === "a").length, seen.filter((x) => x === "b").length], [6, 2]);
      const dir = mkdtempSync(join(tmpdir(), "balance-prometheus-"));
      const promPort = await freePort();
      writeFileSync(
        join(dir, "prometheus.yml"),
        `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: balance\n    static_configs:\n      - targets: ["127.0.0.1:${metricsPort}"]\n`,
      );
      const prometheus = spawn("prometheus", [
        `--config.file=${join(dir, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        "--log.level=warn",
      ], { stdio: ["ignore", "ignore", "pipe"] });
      let log = "";
      prometheus.stderr!.on("data", (d) => (log += d));
      onTimeout(() => prometheus.kill("SIGKILL"));
      try {
        const query = async () => {
          const url = `http://127.0.0.1:${promPort}/api/v1/query?query=balance_channel_connections_total`;
          const res = await fetch(url).catch(() => undefined);
          if (!res?.ok) return undefined;
          const body = await res.json();
          return (body.data.result as { metric: Record<string, string>; value: [number, string] }[])
            .map((r) => [r.metric.group, r.metric.channel, r.metric.address, r.metric.job, Number(r.value[1])])
            .sort();
        };
        const result = await until(query, (r) => r?.length === 2, `Prometheus has the series (log: ${log})`, {
          ms: 45_000,
          everyMs: 250,
        });
        assert.deepEqual(result, [["0", "0", at(a), "balance", 6], ["0", "1", at(b), "balance", 2]]);
      } finally {
        prometheus.kill("SIGKILL");
        rmSync(dir, { recursive: true, force: true });
      }
    }),
);

test("metrics: the listener under abuse: idle connections, a 1 MB request line, a slow loris", {
  timeoutMs: 60_000,
}, () =>
  withMetrics(["a"], ([a]) => [at(a)], async ({ port, metricsPort, lb }) => {
    const pid = lb.child.pid!;
    await scrape(metricsPort);
    const before = residentBytes(pid);
    let peak = before;
    const sockets: net.Socket[] = [];
    const open = (onClose?: () => void) => {
      const s = net.connect(metricsPort, "127.0.0.1");
      s.on("error", () => {});
      if (onClose) s.on("close", onClose);
      sockets.push(s);
      onTimeout(() => s.destroy());
      return s;
    };
    try {
      // A request line of 1 MB: answered 431 or cut off, never read to its end.
      const big = open();
      let bigAnswer = "";
      big.on("data", (d) => (bigAnswer += d));
      const bigClosed = new Promise((r) => big.on("close", r));
      big.write(`GET /metrics?${"a".repeat(1 << 20)} HTTP/1.1\r\nHost: x\r\n\r\n`);
      // A slow loris: a header line every 200 ms, never the end of the headers; cut off by the deadline.
      const loris = open();
      const lorisStarted = Date.now();
      const lorisClosed = new Promise<number>((r) => loris.on("close", () => r(Date.now() - lorisStarted)));
      loris.write("GET /metrics HTTP/1.1\r\n");
      const drip = setInterval(() => loris.destroyed || loris.write("X-Slow: 1\r\n"), 200);
      // Then a flood of connections that send nothing (the loris and the 1 MB came first: within the cap).
      await sleep(300);
      let idleClosed = 0;
      for (let i = 0; i < 1000; i++) open(() => idleClosed++);
      try {
        // Relaying goes on meanwhile.
        for (let i = 0; i < 20; i++) {
          assert.equal(await exchange(port, "hello"), "a");
          peak = Math.max(peak, residentBytes(pid));
        }
        await bigClosed;
        assert.ok(
          bigAnswer === "" || bigAnswer.startsWith("HTTP/1.1 431"),
          `the answer to 1 MB: ${bigAnswer.slice(0, 60)}`,
        );
        const lorisMs = await lorisClosed;
        console.log(`slow loris cut off after ${lorisMs} ms`);
        assert.ok(lorisMs < 15_000, `the slow loris was held ${lorisMs} ms`);
        await until(() => idleClosed, (n) => n === 1000, "every idle connection closed by balance", { ms: 20_000 });
      } finally {
        clearInterval(drip);
      }
      peak = Math.max(peak, residentBytes(pid));
      assert.equal(await exchange(port, "hello"), "a");
      // The listener is free again.
      const text = await until(() => scrape(metricsPort).catch(() => ""), (t) => t !== "", "a scrape after the abuse");
      assert.equal(sample(text, "balance_clients_total"), 21);
      console.log(`RSS ${(before / 2 ** 20).toFixed(1)} MiB before, peak ${(peak / 2 ** 20).toFixed(1)} MiB`);
      assert.ok(peak - before < 200 * 2 ** 20, `RSS grew by ${((peak - before) / 2 ** 20).toFixed(1)} MiB`);
    } finally {
      for (const s of sockets) s.destroy();
    }
  }));

test("metrics: --metrics takes [ADDR:]PORT; a bad one is a usage error, a taken one exit 71", async () => {
  for (
    const [value, message] of [
      ["abc", /invalid metrics port \(--metrics\) 'abc'/],
      ["127.0.0.1:", /invalid metrics address \(--metrics\) '127\.0\.0\.1:': must be \[ADDR:\]PORT/],
      ["70000", /invalid metrics port \(--metrics\) '70000': must be 1-65535/],
    ] as const
  ) {
    const r = await runBalance(["-f", "--metrics", value, "8080", "127.0.0.1:1"]);
    assert.equal(r.code, 64, r.stderr);
    assert.match(r.stderr, message);
  }
  const taken = net.createServer().listen(0, "127.0.0.1");
  await new Promise((r) => taken.once("listening", r));
  try {
    const takenPort = (taken.address() as net.AddressInfo).port;
    const port = await freePort();
    const r = await runBalance(["-f", "--metrics", `127.0.0.1:${takenPort}`, String(port), "127.0.0.1:1"]);
    assert.equal(r.code, 71, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`cannot listen for metrics on 127\\.0\\.0\\.1:${takenPort}: address already in use`),
    );
  } finally {
    taken.close();
  }
});

test("metrics: an IPv6 listener; the address label brackets an IPv6 channel", () =>
  withMetrics(
    ["a"],
    ([a]) => [`[::1]:${a.port}`, at(a)],
    async ({ metricsPort, lb, backends: [a] }) => {
      assert.match(lb.stderr(), new RegExp(`, metrics \\[::1\\]:${metricsPort}, control `));
      const text = await (await fetch(`http://[::1]:${metricsPort}/metrics`)).text();
      assert.match(
        text,
        new RegExp(`^balance_channel_up\\{group="0",channel="0",address="\\[::1\\]:${a.port}"\\} 1$`, "m"),
      );
    },
    [],
    (port) => `[::1]:${port}`,
  ));

test("metrics: a scrape of 1,000 channels over HTTP", async () => {
  const channels = Array.from({ length: 1000 }, (_, i) => `127.0.0.1:${20000 + i}${i % 100 === 99 ? " !" : ""}`)
    .join(" ").split(" ");
  await withMetrics([], () => channels, async ({ metricsPort }) => {
    const times: number[] = [];
    let text = "";
    for (let i = 0; i < 6; i++) {
      const started = performance.now();
      text = await scrape(metricsPort);
      times.push(performance.now() - started);
    }
    const best = Math.min(...times.slice(1));
    console.log(`HTTP scrape of 1,000 channels: best ${best.toFixed(1)} ms, first ${times[0].toFixed(1)} ms`);
    assert.equal(text.split("\n").filter((l) => l.startsWith("balance_channel_weight{")).length, 1000);
    assert.match(text, /^balance_channel_weight\{group="9",channel="99",address="127\.0\.0\.1:20999"\} 1$/m);
    assert.ok(best < 200, `a scrape took ${best.toFixed(1)} ms`);
  });
});

test("metrics: the docs' examples listen outside the ports Prometheus allocates (9090-9999: node exporter 9100)", () => {
  const root = fileURLToPath(import.meta.resolve("../.."));
  const files = ["README.md", "packaging/balance.1", ...readdirSync(join(root, "docs")).map((f) => `docs/${f}`)];
  // `--metrics [ADDR:]PORT`, `ADDR:PORT/metrics` (curl) and `targets: ["ADDR:PORT"]` (a scrape configuration).
  const example = /-?-metrics (?:\S+:)?(\d+)|:(\d+)\/metrics|targets: \["[^"]*:(\d+)"\]/g;
  const ports = files.flatMap((file) =>
    [...readFileSync(join(root, file), "utf8").replaceAll("\\-", "-").matchAll(example)].map((m) => ({
      file,
      port: Number(m[1] ?? m[2] ?? m[3]),
    }))
  );
  assert.ok(ports.length >= 4, JSON.stringify(ports));
  assert.deepEqual(ports.filter(({ port }) => port >= 9090 && port <= 9999), []);
});
