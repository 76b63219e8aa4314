/**
 * Who may connect (issue 23) on real sockets and processes: `--allow` and
 * `--deny` (first match decides, IPv4-mapped clients are IPv4 clients),
 * `--max-per-client` and `--rate-per-client` on one client table shared by
 * `-w 2`'s threads, the bounded table under a flood of new addresses,
 * `--proxy-from` with `--accept-proxy`, reload, big and malformed rule
 * lists, and what a refusal leaves behind (metrics, warnings, the
 * connection log, `clients`, `show --json`, `dump`). A refused client must
 * be closed without a byte reaching a backend, and no backend may see it.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { join } from "node:path";
import process from "node:process";
import { type Backend, type Behaviour, type Client, connect, freePort } from "../support/net.ts";
import { runBalance, type Running, startBalance, withBalancer } from "../support/balance.ts";
import { onTimeout } from "../support/test.ts";
import { until, within } from "../support/wait.ts";
import { control, status, withTempDir } from "../support/helpers.ts";

const at = (b: Backend) => `${b.host}:${b.port}`;

/** What {@link reach} says of a client balance closed without sending it a byte. */
const REFUSED = "refused";

/** One client: how balance dealt with it, and its socket (open unless refused). */
interface Reached {
  /** The greeting backend's name once `ping` came back after it, or {@link REFUSED}. */
  outcome: string;
  client: Client;
  /** The client's own port, as the connection log names it. */
  clientPort: number;
}

/**
 * Connects from `from` to `port` on `host`, sends `first` (a PROXY header)
 * and `ping` at once, and waits until balance either relays (the backend's
 * greeting, then the echo) or closes the connection (FIN or reset) without
 * a byte. Anything else (a partial answer, nothing within 10 s) fails.
 */
async function reach(
  port: number,
  from: string,
  { host = "127.0.0.1", first }: { host?: string; first?: string } = {},
): Promise<Reached> {
  const client = await connect(port, host, from);
  const clientPort = client.socket.localPort!;
  const { socket } = client;
  socket.write(`${first ?? ""}ping`);
  const settled = new Promise<string>((resolve) => {
    const check = () => {
      const text = client.received().toString();
      if (text.endsWith("\nping")) resolve(text.split("\n")[0]);
      else if (socket.readableEnded || socket.destroyed) {
        resolve(text === "" ? REFUSED : `closed after ${JSON.stringify(text)}`);
      }
    };
    socket.on("data", check).on("end", check).on("close", check);
    check();
  });
  try {
    const outcome = await within(
      settled,
      10_000,
      () => `balance to serve or close the client from ${from}; got ${JSON.stringify(client.received().toString())}`,
    );
    if (outcome === REFUSED) socket.destroy();
    return { outcome, client, clientPort };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

/** {@link reach}, then hang up: what balance did with the client. */
async function attempt(port: number, from: string, options: { host?: string; first?: string } = {}): Promise<string> {
  const { outcome, client } = await reach(port, from, options);
  client.socket.destroy();
  return outcome;
}

/** Closes held clients and waits until they are closed. */
async function hangUp(clients: Client[]): Promise<void> {
  for (const c of clients) c.socket.end();
  await Promise.all(clients.map((c) => c.closed()));
}

/** One row of `clients`: the client, then its open, total and refused counts. */
type ClientRow = [string, number, number, number];

/** `clients` of the balancer on `port`, its header checked, as rows. */
async function clientRows(port: number, env?: Record<string, string>): Promise<ClientRow[]> {
  const text = await control(port, "clients", env);
  const [header, ...rows] = text.trimEnd().split("\n").map((l) => l.trim().split(/\s+/));
  assert.deepEqual(header, ["client", "open", "total", "refused"], text);
  return rows.map(([client, ...counts]) => {
    assert.equal(counts.length, 3, text);
    return [client, ...counts.map(Number)] as ClientRow;
  });
}

/** The row of `client` in `rows`, or undefined. */
const rowOf = (rows: ClientRow[], client: string) => rows.find((r) => r[0] === client);

/** Waits until `clients` shows `n` open connections of `client` (the ends of closed ones are counted); the rows. */
const openOf = (port: number, env: Record<string, string> | undefined, client: string, n: number) =>
  until(() => clientRows(port, env), (rows) => rowOf(rows, client)?.[1] === n, `${n} open of ${client}`);

/** The text of a scrape of `/metrics`. */
async function scrape(metricsPort: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  assert.equal(res.status, 200);
  return await res.text();
}

/** The value of the sample `name` (with its labels, as written) in `text`; undefined when absent. */
function sample(text: string, name: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

/** The refusal counters of a scrape: denied, limited concurrent, limited rate, and clients reaching selection. */
async function refusals(metricsPort: number): Promise<(number | undefined)[]> {
  const text = await scrape(metricsPort);
  return [
    sample(text, "balance_clients_denied_total"),
    sample(text, 'balance_clients_limited_total{limit="concurrent"}'),
    sample(text, 'balance_clients_limited_total{limit="rate"}'),
    sample(text, "balance_clients_total"),
  ];
}

/** Resident memory of `pid` in bytes. */
const rss = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;

const mib = (n: number) => (n / 1048576).toFixed(1);

/** Waits until every channel's `c` is 0 again (the relays of closed clients have wound down). */
const idle = (port: number, env?: Record<string, string>) =>
  until(() => status(port, env), (rows) => rows.every((r) => r.c === 0), "every channel's c back to 0");

/** The PROXY v1 header of a client `src`:4000 that connected to 127.0.0.1:`port`. */
const v1 = (src: string, port: number) => `PROXY TCP4 ${src} 127.0.0.1 4000 ${port}\r\n`;

/** The `--log-connections` line of the client `address:clientPort`, once logged. */
async function logLine(lb: Running, address: string, clientPort: number): Promise<string> {
  const start = `connection ${address}:${clientPort} -> `;
  await lb.waitForTrace(new RegExp(`${literally(start)}.*\\n`));
  return lb.stderr().split("\n").find((l) => l.includes(start))!;
}

/** `text` as a regular expression matching it. */
const literally = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

/** An IPv4 client on a `-6` listener, as a runtime may name it in a log line (a pattern). */
const mappedOrNot = (address: string) => `(?:::ffff:)?${literally(address)}`;

/** Waits for the warning line that ends in `pattern` (a worker's says which). */
const warned = (lb: Running, pattern: string) => lb.waitForTrace(new RegExp(`WRN: (?:worker \\d+: )?${pattern}\\n`));

// --------------------------------------------------------------- rules

test("access: 127.0.0.5 is served and 127.0.0.9 (--deny 127.0.0.9) closed without a byte reaching any backend", () =>
  withBalancer(
    { backends: ["a", "b"], options: ["--deny", "127.0.0.9"], controlDir: true, exitCode: 0 },
    async ({ port, lb, backends: [a, b], env }) => {
      const seen = [];
      for (let i = 0; i < 4; i++) {
        seen.push(await attempt(port, "127.0.0.5"));
        seen.push(await attempt(port, "127.0.0.9"));
      }
      // A refused client takes no round-robin turn: a and b alternate.
      assert.deepEqual(seen, ["a", REFUSED, "b", REFUSED, "a", REFUSED, "b", REFUSED]);
      await warned(lb, literally("client 127.0.0.9 denied by --deny 127.0.0.9"));
      const rows = await idle(port, env);
      assert.deepEqual(rows.map((r) => [r.c, r.totalc, r.sent, r.rcvd]), [[0, 2, 8, 12], [0, 2, 8, 12]]);
      assert.deepEqual([a.peers.length, b.peers.length], [2, 2], "the backends saw the 4 served clients only");
      assert.deepEqual(await clientRows(port, env), [["127.0.0.5", 0, 4, 0], ["127.0.0.9", 0, 0, 4]]);
    },
  ));

test("access: on a -6 listener ::1 and IPv4 clients (::ffff:127.0.0.x) each meet their own family's rules", async () => {
  // ::1 allowed before ::/0 denies IPv6; an IPv4 client is not IPv6 for the rules.
  await withBalancer({
    backends: ["a"],
    options: ["-6", "--deny", "127.0.0.9", "--allow", "::1", "--deny", "::/0"],
  }, async ({ port, lb, backends: [a] }) => {
    assert.equal(await attempt(port, "::1", { host: "::1" }), "a");
    assert.equal(await attempt(port, "127.0.0.9"), REFUSED, "an IPv4 client on -6 matches --deny 127.0.0.9");
    assert.equal(await attempt(port, "127.0.0.5"), "a", "::/0 is IPv6 only");
    await warned(lb, `client ${mappedOrNot("127.0.0.9")} denied by --deny 127\\.0\\.0\\.9`);
    assert.equal(a.peers.length, 2);
    await idle(port);
    assert.deepEqual(await clientRows(port), [["::/64", 0, 1, 0], ["127.0.0.5", 0, 1, 0], ["127.0.0.9", 0, 0, 1]]);
  });
  // ::1 denied; a rule written IPv4-mapped is an IPv4 rule.
  await withBalancer({
    backends: ["a"],
    options: ["-6", "--deny", "::1,::ffff:127.0.0.10"],
  }, async ({ port, lb, backends: [a] }) => {
    assert.equal(await attempt(port, "::1", { host: "::1" }), REFUSED);
    await warned(lb, "client ::1 denied by --deny ::1");
    assert.equal(await attempt(port, "127.0.0.10"), REFUSED);
    assert.equal(await attempt(port, "127.0.0.5"), "a");
    assert.equal(a.peers.length, 1);
    assert.deepEqual((await status(port)).map((r) => r.totalc), [1]);
  });
});

test("access: the first matching rule decides, whichever way overlapping rules are ordered", {
  timeoutMs: 90_000,
}, async () => {
  const clients = ["127.0.0.5", "127.0.0.7", "127.0.1.5", "::1"];
  const cases: [string[], string[], string][] = [
    // rules; served (s) or refused (r) for each client; the warning of the first refusal
    [["--deny", "127.0.0.7", "--allow", "127.0.0.0/8", "--deny", "all"], ["s", "r", "s", "r"], "--deny 127.0.0.7"],
    [["--allow", "127.0.0.0/8", "--deny", "127.0.0.7"], ["s", "s", "s", "s"], ""],
    [["--allow", "127.0.0.0/8", "--deny", "127.0.0.7", "--deny", "all"], ["s", "s", "s", "r"], "--deny all"],
    [
      ["--allow", "127.0.0.7", "--deny", "127.0.0.0/24", "--allow", "127.0.0.0/8"],
      ["r", "s", "s", "s"],
      "--deny 127.0.0.0/24",
    ],
    [["--deny", "127.0.0.0/24", "--allow", "127.0.0.7"], ["r", "r", "s", "s"], "--deny 127.0.0.0/24"],
    [["--deny", "::1/128,127.0.1.0/24", "--allow", "::/0", "--deny", "all"], ["r", "r", "r", "r"], "--deny all"],
    [["--allow", "::1", "--deny", "127.0.0.6,127.0.0.7"], ["s", "r", "s", "s"], "--deny 127.0.0.7"],
  ];
  for (const [rules, expected, warning] of cases) {
    await withBalancer(
      { backends: ["a"], options: ["-6", ...rules] },
      async ({ port, lb, backends: [a] }) => {
        const got = [];
        for (const from of clients) {
          const outcome = await attempt(port, from, { host: from.includes(":") ? "::1" : "127.0.0.1" });
          got.push(outcome === REFUSED ? "r" : outcome === "a" ? "s" : outcome);
        }
        assert.deepEqual(got, expected, `${rules.join(" ")}: ${clients.join(", ")}`);
        const served = expected.filter((x) => x === "s").length;
        assert.equal(a.peers.length, served, `${rules.join(" ")}: the backend saw the served clients only`);
        if (warning) {
          const first = clients[expected.indexOf("r")];
          const who = first.includes(":") ? literally(first) : mappedOrNot(first);
          await warned(lb, `client ${who} denied by ${literally(warning)}`);
        }
        if (!warning) assert.doesNotMatch(lb.stderr(), /denied by/);
      },
    );
  }
});

// -------------------------------------------------------------- limits

/** How many clients each worker accepted, from the `-d` traces. */
const acceptedBy = (lb: Running) =>
  [0, 1].map((w) => lb.stderr().split("\n").filter((l) => l.includes(`worker ${w}: accepted`)).length);

test("access: -w 2 --max-per-client 10: of 50 clients held open from one address exactly 10 are relayed", () =>
  withBalancer({
    backends: ["a"],
    options: ["-w", "2", "--max-per-client", "10"],
    controlDir: true,
    ready: "in 2 thread(s)",
    exitCode: 0,
  }, async ({ port, lb, backends: [a], env }) => {
    for (let round = 0; round < 2; round++) {
      const all = await Promise.all(Array.from({ length: 50 }, () => reach(port, "127.0.0.5")));
      const held = all.filter((r) => r.outcome !== REFUSED);
      try {
        assert.deepEqual(
          [held.length, held.every((r) => r.outcome === "a")],
          [10, true],
          `round ${round}: ${all.map((r) => r.outcome)}`,
        );
        assert.equal(a.sockets.size, 10, "the backend has exactly the 10 relayed connections");
        assert.equal(a.peers.length, 11 * round + 10, "and saw no other");
        // The 10 stay open and relay; another address is still served.
        await Promise.all(held.map(async ({ client }, i) => {
          client.socket.write(`more ${i};`);
          await client.waitFor((d) => d.toString().endsWith(`more ${i};`));
        }));
        assert.equal(await attempt(port, "127.0.0.6"), "a");
        const rows = await clientRows(port, env);
        assert.deepEqual(rowOf(rows, "127.0.0.5"), ["127.0.0.5", 10, 10 * (round + 1), 40 * (round + 1)]);
        const [row] = await until(() => status(port, env), ([r]) => r.c === 10, "127.0.0.6's connection ended");
        assert.equal(row.totalc, 11 * (round + 1), "the channel counted the served clients only");
      } finally {
        await hangUp(held.map((r) => r.client));
      }
      // Every thread's releases reach the one table.
      await until(
        () => clientRows(port, env),
        (rows) => rowOf(rows, "127.0.0.5")?.[1] === 0,
        "127.0.0.5's open connections back to 0",
      );
      await until(() => a.sockets.size, (n) => n === 0, "the backend's connections closed");
    }
    const [w0, w1] = acceptedBy(lb);
    assert.ok(w0 > 0 && w1 > 0, `clients came through both workers (${w0}, ${w1})`);
  }));

/** Connects from `from` as fast as one client can, one at a time, for `ms` or `max` attempts: how many were served, in how long. */
async function hammer(
  port: number,
  from: string,
  ms: number,
  max: number,
): Promise<{ served: number; tries: number; ms: number }> {
  const started = performance.now();
  const deadline = started + ms;
  let served = 0;
  let tries = 0;
  while (performance.now() < deadline && tries < max) {
    tries++;
    const outcome = await attempt(port, from);
    if (outcome !== REFUSED) {
      assert.equal(outcome, "a");
      served++;
    }
  }
  return { served, tries, ms: performance.now() - started };
}

for (const workers of [[], ["-w", "2"]]) {
  const w = workers.length ? " (-w 2: one bucket for both threads)" : "";
  test(
    `access: --rate-per-client 20${w}: a burst of 20, then attempts as fast as possible for 5 s are served at 20 a second (± 10)`,
    {
      timeoutMs: 90_000,
    },
    () =>
      withBalancer({
        backends: ["a"],
        options: [...workers, "--rate-per-client", "20"],
        ready: workers.length ? "in 2 thread(s)" : undefined,
      }, async ({ port, lb, backends: [a] }) => {
        const started = performance.now();
        // The burst: the first 20 at once (well within a second: the bucket refills by far less than 20 meanwhile).
        const first = await Promise.all(Array.from({ length: 20 }, () => attempt(port, "127.0.0.5")));
        assert.deepEqual(first, Array(20).fill("a"), "the burst of 20");
        // Spend whatever refilled meanwhile: attempts until the first refusal.
        let spent = 0;
        while ((await attempt(port, "127.0.0.5")) !== REFUSED) assert.ok(++spent < 40, `refused at last (${spent})`);
        const before = a.peers.length;
        const { served, tries, ms } = await hammer(port, "127.0.0.5", 5000, 100_000);
        const seconds = (ms / 1000).toFixed(1);
        console.log(`--rate-per-client 20${w}: ${served} served of ${tries} attempts in ${seconds} s`);
        // 20 a second, for as long as the attempts went on (the count bound may end them before 5 s).
        const expected = 20 * ms / 1000;
        assert.ok(Math.abs(served - expected) <= 10, `${served} served of ${tries} attempts in ${seconds} s`);
        assert.ok(tries > served + 100, `the client kept trying (${tries} attempts)`);
        assert.equal(a.peers.length - before, served, "the backend saw exactly the served ones");
        // Another address has a bucket of its own: its burst of 20 at once.
        const other = await Promise.all(Array.from({ length: 20 }, () => attempt(port, "127.0.0.6")));
        assert.deepEqual(other, Array(20).fill("a"), "127.0.0.6's own burst");
        await idle(port);
        const rows = await clientRows(port);
        const five = rowOf(rows, "127.0.0.5")!;
        assert.deepEqual([five[1], five[2], five[3]], [0, 20 + spent + served, tries - served + 1]);
        assert.deepEqual(rowOf(rows, "127.0.0.6"), ["127.0.0.6", 0, 20, 0]);
        // Thousands of refusals, a few warning lines: one per 10 s.
        await warned(lb, literally("client 127.0.0.5 limited by --rate-per-client 20/1"));
        const lines = lb.stderr().split("\n").filter((l) => l.includes("limited by --rate-per-client")).length;
        const allowed = 1 + Math.ceil((performance.now() - started) / 10_000);
        assert.ok(lines <= allowed, `${lines} warning lines for ${tries - served + 1} refusals`);
      }),
  );
}

/** A backend that greets, echoes the first bytes and hangs up. */
const echoOnceAndEnd: Behaviour = (s) => {
  s.write("a\n");
  s.once("data", (d) => s.end(d));
};

/** 127.A.B.C for the `i`th client of a flood: 127.1.0.0 upward. */
const floodAddress = (i: number) => `127.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;

/**
 * The clients `first` to `first + n - 1` of a flood, each from its own
 * address ({@link floodAddress}), at most `inFlight` at once: each connects,
 * sends `ping`, reads the greeting, the echo and the FIN, and hangs up.
 * `onProgress` runs every 1,000 clients. Stops at `deadline`
 * (performance.now()). Returns how many were served, and the first failures.
 */
async function flood(
  port: number,
  first: number,
  n: number,
  { inFlight, deadline, onProgress = () => {} }: {
    inFlight: number;
    deadline: number;
    onProgress?: (done: number) => void;
  },
): Promise<{ served: number; done: number; failures: string[] }> {
  const open = new Set<net.Socket>();
  onTimeout(() => open.forEach((s) => s.destroy()));
  let next = first;
  let done = 0;
  let served = 0;
  const failures: string[] = [];
  const one = (i: number) =>
    new Promise<void>((resolve) => {
      const from = floodAddress(i);
      const s = net.connect({ port, host: "127.0.0.1", localAddress: from, allowHalfOpen: true });
      open.add(s);
      s.write("ping");
      let got = "";
      const timer = setTimeout(() => s.destroy(new Error("no answer within 10 s")), 10_000);
      const end = (failure?: string) => {
        if (!open.delete(s)) return;
        clearTimeout(timer);
        if (failure === undefined && got === "a\nping") served++;
        else if (failures.length < 10) failures.push(`${from}: ${failure ?? `got ${JSON.stringify(got)}`}`);
        s.destroy();
        resolve();
      };
      s.on("data", (d) => (got += d));
      s.on("end", () => end());
      s.on("error", (err) => end(err.message));
      s.on("close", () => end("closed without FIN"));
    });
  const worker = async () => {
    while (next < first + n && performance.now() < deadline) {
      await one(next++);
      if (++done % 1000 === 0) onProgress(done);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return { served, done, failures };
}

test("access: --client-table 16: a forgotten client starts afresh; the ends of its old connections count against no one", () =>
  withBalancer({
    backends: [{ name: "a", behaviour: echoOnceAndEnd }],
    options: ["--client-table", "16", "--max-per-client", "5"],
    controlDir: true,
    exitCode: 0,
  }, async ({ port, env }) => {
    const held: Client[] = [];
    try {
      for (let i = 0; i < 5; i++) {
        const r = await reach(port, "127.0.0.5");
        held.push(r.client);
        assert.equal(r.outcome, "a");
      }
      assert.equal(await attempt(port, "127.0.0.5"), REFUSED, "the 6th of 127.0.0.5");
      // 16 other clients, one after another: the table is full, and 127.0.0.5, seen least recently, is forgotten.
      for (let i = 0; i < 16; i++) assert.equal(await attempt(port, floodAddress(i)), "a", floodAddress(i));
      const full = await until(
        () => clientRows(port, env),
        (rows) => rows.every((r) => r[1] === 0),
        "the 16 clients' connections closed",
      );
      assert.deepEqual(full.map((r) => r[0]).sort(), Array.from({ length: 16 }, (_, i) => floodAddress(i)).sort());
      const fresh = await reach(port, "127.0.0.5");
      held.push(fresh.client);
      assert.equal(fresh.outcome, "a", "a forgotten client starts afresh");
      // Its 5 old connections end: no one's count moves, none goes below 0.
      await hangUp(held.splice(0, 5));
      await until(() => status(port, env), (rows) => rows[0].c === 1, "the 5 old connections ended");
      const rows = await clientRows(port, env);
      assert.deepEqual(rows[0], ["127.0.0.5", 1, 1, 0]);
      assert.deepEqual(rows.slice(1).map((r) => r.slice(1)), Array(15).fill([0, 1, 0]), JSON.stringify(rows));
      for (let i = 0; i < 4; i++) {
        const r = await reach(port, "127.0.0.5");
        held.push(r.client);
        assert.equal(r.outcome, "a");
      }
      assert.equal(await attempt(port, "127.0.0.5"), REFUSED, "5 open again: the 6th refused");
      assert.deepEqual((await clientRows(port, env))[0], ["127.0.0.5", 5, 5, 1]);
    } finally {
      await hangUp(held);
    }
  }));

test(
  "access: --client-table 1000 --max-per-client 5 under 100,000 distinct addresses: memory bounded, forgotten clients start afresh",
  {
    timeoutMs: 180_000,
  },
  () =>
    withBalancer({
      // The backend echoes the first bytes and hangs up first: no TIME_WAIT piles up on balance's side of the channel.
      backends: [{ name: "a", behaviour: echoOnceAndEnd }],
      options: ["--client-table", "1000", "--max-per-client", "5"],
      controlDir: true,
      debug: false,
      exitCode: 0,
    }, async ({ port, lb, backends: [a], env }) => {
      const N = 100_000;
      // 127.0.0.5 holds its 5; its 6th is refused.
      const held: Client[] = [];
      try {
        for (let i = 0; i < 5; i++) {
          const r = await reach(port, "127.0.0.5");
          held.push(r.client);
          assert.equal(r.outcome, "a");
        }
        assert.equal(await attempt(port, "127.0.0.5"), REFUSED, "the 6th of 127.0.0.5");
        const pid = lb.child.pid!;
        const started = performance.now();
        const deadline = started + 150_000;
        const atStart = rss(pid);
        // The first 20,000 warm the runtime up (its heap and buffers grow to their working size under
        // load, with or without limits); from there on, the other 80,000 must not make balance grow.
        const WARM = 20_000;
        const warm = await flood(port, 0, WARM, { inFlight: 200, deadline });
        const before = rss(pid);
        let peak = before;
        const rest = await flood(port, WARM, N - WARM, {
          inFlight: 200,
          deadline,
          onProgress: () => (peak = Math.max(peak, rss(pid))),
        });
        const seconds = (performance.now() - started) / 1000;
        const after = rss(pid);
        console.log(
          `${warm.done + rest.done} clients from distinct addresses in ${seconds.toFixed(1)} s; RSS ${
            mib(atStart)
          } MiB at the start, ${mib(before)} after ${WARM} clients, ${mib(peak)} at the peak, ${mib(after)} after`,
        );
        assert.deepEqual(
          [warm.done + rest.done, warm.served + rest.served, [...warm.failures, ...rest.failures]],
          [N, N, []],
          "every new client is served",
        );
        assert.ok(peak - before < 64 * 1048576, `RSS grew ${mib(peak - before)} MiB over ${N - WARM} clients`);
        assert.equal(lb.child.exitCode, null, "balance still runs");
        // The table holds the 1,000 clients seen last: 20 of them are listed, none from early in the flood.
        const rows = await until(
          () => clientRows(port, env),
          (rows) => rows.every((r) => r[1] === 0),
          "the flood's connections closed",
        );
        assert.equal(rows.length, 20, "clients lists 20");
        const recent = new Set(Array.from({ length: 1500 }, (_, k) => floodAddress(N - 1 - k)));
        for (const row of rows) {
          assert.ok(recent.has(row[0]), `${row[0]} is among the last clients seen`);
          assert.deepEqual(row.slice(1), [0, 1, 0], row[0]);
        }
        // 127.0.0.5 was forgotten: its 5 open connections no longer count, its next is let in afresh.
        const fresh = await reach(port, "127.0.0.5");
        held.push(fresh.client);
        assert.equal(fresh.outcome, "a", "a forgotten client starts afresh");
        assert.deepEqual((await clientRows(port, env))[0], ["127.0.0.5", 1, 1, 0]);
        // The old connections' ends do not count against the new entry.
        await hangUp(held.splice(0, 5));
        await until(() => status(port, env), (rows) => rows[0].c === 1, "the 5 old connections ended");
        assert.deepEqual((await clientRows(port, env))[0], ["127.0.0.5", 1, 1, 0], "the old ends leave the new count");
        for (let i = 0; i < 4; i++) {
          const r = await reach(port, "127.0.0.5");
          held.push(r.client);
          assert.equal(r.outcome, "a");
        }
        assert.equal(await attempt(port, "127.0.0.5"), REFUSED, "5 open again: the 6th refused");
        assert.deepEqual((await clientRows(port, env))[0], ["127.0.0.5", 5, 5, 1]);
        assert.equal(a.peers.length, 5 + N + 5, "the backend saw the served clients only");
      } finally {
        held.forEach((c) => c.socket.destroy());
      }
    }),
);

// -------------------------------------------------------------- reload

for (const workers of [[], ["-w", "2"]]) {
  const w = workers.length ? " (-w 2)" : "";
  test(
    `access: a reload${w} that adds --deny for a connected client keeps its connection and refuses its next; counts survive`,
    {
      timeoutMs: 90_000,
    },
    () =>
      withTempDir("balance-access-", async (dir) => {
        const file = join(dir, "access.conf");
        const config = (port: number, a: Backend, options: string) => `${options}\n${port}\n${at(a)}\n`;
        await withBalancer({
          backends: ["a"],
          args: ({ port, backends: [a] }) => {
            writeFileSync(file, config(port, a, "--max-per-client 3"));
            return [...workers, "-F", file];
          },
          ready: workers.length ? "in 2 thread(s)" : undefined,
          controlDir: true,
          exitCode: 0,
        }, async ({ port, lb, backends: [a], env }) => {
          const reloaded = async (how: "control" | "SIGHUP") => {
            const before = lb.stderr().split("reloaded ").length;
            if (how === "control") assert.equal(await control(port, "reload", env), "reloaded\n");
            else process.kill(lb.child.pid!, "SIGHUP");
            await until(() => lb.stderr().split("reloaded ").length, (n) => n > before, `the ${how} reload`);
          };
          const seven = await reach(port, "127.0.0.7");
          const fives = [
            await reach(port, "127.0.0.5"),
            await reach(port, "127.0.0.5"),
            await reach(port, "127.0.0.5"),
          ];
          const open = [seven, ...fives].map((r) => r.client);
          try {
            assert.deepEqual([seven, ...fives].map((r) => r.outcome), ["a", "a", "a", "a"]);
            writeFileSync(file, config(port, a, "--deny 127.0.0.7\n--max-per-client 2"));
            await reloaded("control");
            assert.deepEqual((await status(port, env))[0].access, {
              rules: [{ action: "deny", spec: "127.0.0.7" }],
              proxyFrom: null,
              maxPerClient: 2,
              ratePerClient: null,
              clientTable: 65536,
            });
            // The open connection relays both ways as before.
            seven.client.socket.write("after the reload");
            await seven.client.waitFor((d) => d.toString() === "a\npingafter the reload");
            assert.equal(a.sockets.size, 4, "no connection was dropped");
            assert.equal(await attempt(port, "127.0.0.7"), REFUSED, "its next connection is refused");
            await warned(lb, literally("client 127.0.0.7 denied by --deny 127.0.0.7"));
            // Under a lowered limit 127.0.0.5 keeps its 3 and gets no 4th until it is below 2.
            assert.equal(await attempt(port, "127.0.0.5"), REFUSED);
            await hangUp([fives[0].client, fives[1].client]);
            await openOf(port, env, "127.0.0.5", 1);
            const again = await reach(port, "127.0.0.5");
            open.push(again.client);
            assert.equal(again.outcome, "a", "below the new limit again");
            assert.deepEqual(await clientRows(port, env), [["127.0.0.5", 2, 4, 1], ["127.0.0.7", 1, 1, 1]]);
            // The rule removed again (SIGHUP): 127.0.0.7 is served; its counts went on.
            writeFileSync(file, config(port, a, "--max-per-client 2"));
            await reloaded("SIGHUP");
            assert.equal(await attempt(port, "127.0.0.7"), "a");
            assert.deepEqual(rowOf(await openOf(port, env, "127.0.0.7", 1), "127.0.0.7"), ["127.0.0.7", 1, 2, 1]);
            // A bad SPEC or a new --client-table is refused; the rules in force stay.
            for (
              const [options, why] of [
                ["--deny 127.0.0.0/33", "invalid address (--deny) '127.0.0.0/33': prefix length must be 0-32"],
                ["--deny all --client-table 100", "--client-table cannot change without a restart"],
              ]
            ) {
              writeFileSync(file, config(port, a, options));
              const r = await runBalance(["-c", "reload", String(port)], { env });
              assert.equal(r.code, 65, r.stdout + r.stderr);
              assert.match(r.stdout, new RegExp(`^reload failed: .*${why.replace(/[.*()/]/g, "\\$&")}\\n$`));
              assert.equal(await attempt(port, "127.0.0.7"), "a", `${options}: the old rules stay`);
              await openOf(port, env, "127.0.0.7", 1);
            }
            seven.client.socket.write("!");
            await seven.client.waitFor((d) => d.toString() === "a\npingafter the reload!");
          } finally {
            await hangUp(open.filter((c) => !c.socket.destroyed));
          }
        });
      }),
  );
}

// ----------------------------------------------------- --proxy-from

test("access: --accept-proxy --proxy-from 127.0.0.2: another peer is refused at accept; rules and limits apply to the header's client", async () => {
  const metricsPort = await freePort();
  const received: string[] = [];
  const recording: Behaviour = (s) => {
    s.write("a\n");
    s.on("data", (d) => (received.push(d.toString()), s.write(d)));
    s.on("end", () => s.end());
  };
  await withBalancer({
    backends: [{ name: "a", behaviour: recording }],
    options: [
      "--accept-proxy",
      "--proxy-from",
      "127.0.0.2",
      "--deny",
      "127.0.0.9",
      "--max-per-client",
      "1",
      "--log-connections",
      "--metrics",
      String(metricsPort),
    ],
    controlDir: true,
    exitCode: 0,
  }, async ({ port, lb, backends: [a], env }) => {
    // A peer --proxy-from does not name: closed, whatever header it sends.
    const stranger = await reach(port, "127.0.0.3", { first: v1("127.0.0.8", port) });
    assert.equal(stranger.outcome, REFUSED);
    await warned(lb, literally("client 127.0.0.3 denied by --proxy-from"));
    assert.match(
      await logLine(lb, "127.0.0.3", stranger.clientPort),
      /-> none: [\d.]+ s, 0 bytes sent, 0 rcvd, denied$/,
    );
    // The trusted peer's header names a denied client.
    assert.equal(await attempt(port, "127.0.0.2", { first: v1("127.0.0.9", port) }), REFUSED);
    assert.match(await logLine(lb, "127.0.0.9", 4000), /-> none: [\d.]+ s, 0 bytes sent, 0 rcvd, denied$/);
    // ... and one that is let in: served, and the limit is its own, not the peer's.
    const eight = await reach(port, "127.0.0.2", { first: v1("127.0.0.8", port) });
    try {
      assert.equal(eight.outcome, "a");
      assert.equal(
        await attempt(port, "127.0.0.2", { first: v1("127.0.0.7", port) }),
        "a",
        "another client, same peer",
      );
      assert.equal(await attempt(port, "127.0.0.2", { first: v1("127.0.0.8", port) }), REFUSED, "127.0.0.8's 2nd");
      assert.deepEqual(received, ["ping", "ping"], "only the served clients' bytes, no header, reached the backend");
      assert.equal(a.peers.length, 2);
      assert.deepEqual(await refusals(metricsPort), [2, 1, 0, 2]);
      // The table holds the headers' clients; neither peer is in it.
      assert.deepEqual(await openOf(port, env, "127.0.0.7", 0), [
        ["127.0.0.8", 1, 1, 1],
        ["127.0.0.7", 0, 1, 0],
        ["127.0.0.9", 0, 0, 1],
      ]);
      assert.equal((await status(port, env))[0].access.proxyFrom, "127.0.0.2");
    } finally {
      await hangUp([eight.client]);
    }
  });
});

test("access: a reload adds, changes and removes --proxy-from; connections of a peer it no longer names stay open", () =>
  withTempDir("balance-access-", async (dir) => {
    const file = join(dir, "proxied.conf");
    let text = (_proxyFrom: string) => "";
    await withBalancer({
      backends: ["a"],
      args: ({ port, backends: [a] }) => {
        text = (proxyFrom: string) => `--accept-proxy ${proxyFrom}\n${port}\n${at(a)}\n`;
        writeFileSync(file, text(""));
        return ["-F", file];
      },
      controlDir: true,
      exitCode: 0,
    }, async ({ port, lb, backends: [a], env }) => {
      const reload = async (proxyFrom: string) => {
        writeFileSync(file, text(proxyFrom));
        assert.equal(await control(port, "reload", env), "reloaded\n");
      };
      const from = (peer: string) => attempt(port, peer, { first: v1("127.0.0.8", port) });
      const open = await reach(port, "127.0.0.3", { first: v1("127.0.0.8", port) });
      try {
        assert.deepEqual([open.outcome, await from("127.0.0.2")], ["a", "a"], "no --proxy-from: any peer");
        await reload("--proxy-from 127.0.0.2");
        assert.deepEqual([await from("127.0.0.2"), await from("127.0.0.3")], ["a", REFUSED]);
        await warned(lb, literally("client 127.0.0.3 denied by --proxy-from"));
        // The connection 127.0.0.3 made before is not cut.
        open.client.socket.write("still");
        await open.client.waitFor((d) => d.toString() === "a\npingstill");
        await reload("--proxy-from 127.0.0.3/32,::1");
        assert.deepEqual([await from("127.0.0.2"), await from("127.0.0.3")], [REFUSED, "a"]);
        assert.equal((await status(port, env))[0].access.proxyFrom, "127.0.0.3/32,::1");
        await reload("");
        assert.deepEqual([await from("127.0.0.2"), await from("127.0.0.3")], ["a", "a"]);
        assert.equal((await status(port, env))[0].access.proxyFrom, null);
        assert.equal(a.peers.length, 6, "the refused peers reached no backend");
      } finally {
        await hangUp([open.client]);
      }
    });
  }));

test("access: behind --accept-proxy an IPv6 /64 is one client for the limits; rules match whole addresses and IPv6 prefixes", () =>
  withBalancer({
    backends: ["a"],
    options: ["--accept-proxy", "--max-per-client", "2", "--deny", "2001:db8:1:2::7,2001:db8:ff00::/40"],
    controlDir: true,
    exitCode: 0,
  }, async ({ port, backends: [a], env }) => {
    const v6 = (src: string) => `PROXY TCP6 ${src} 2001:db8::1 4000 443\r\n`;
    const held = [await reach(port, "127.0.0.1", { first: v6("2001:db8:1:2::5") })];
    try {
      held.push(await reach(port, "127.0.0.1", { first: v6("2001:db8:1:2::9") }));
      assert.deepEqual(held.map((r) => r.outcome), ["a", "a"]);
      const outcomes = [];
      for (const src of ["2001:db8:1:2::a", "2001:db8:1:3::5", "2001:db8:1:2::7", "2001:db8:ff12::1", "2001:db9::1"]) {
        outcomes.push(await attempt(port, "127.0.0.1", { first: v6(src) }));
      }
      // ::a: a third of its /64; 1:3::5: another /64; ::7: denied by address; ff12::1: by the /40; db9: by nothing.
      assert.deepEqual(outcomes, [REFUSED, "a", REFUSED, REFUSED, "a"]);
      assert.equal(a.peers.length, 4);
      await openOf(port, env, "2001:db8:1:3::/64", 0);
      assert.deepEqual(await openOf(port, env, "2001:db9::/64", 0), [
        ["2001:db8:1:2::/64", 2, 2, 2],
        ["2001:db8:1:3::/64", 0, 1, 0],
        ["2001:db9::/64", 0, 1, 0],
        ["2001:db8:ff12::/64", 0, 0, 1],
      ]);
    } finally {
      await hangUp(held.map((r) => r.client));
    }
  }));

// ------------------------------------------------- big and hostile input

test("access: 10,000 rules from a file are enforced in order, where -F stands among the command line's", {
  timeoutMs: 90_000,
}, () =>
  withTempDir("balance-access-", async (dir) => {
    const file = join(dir, "rules.conf");
    const rules: string[] = [];
    for (let i = 0; rules.length < 9_998; i++) {
      rules.push(
        i % 10 === 0 ? `--deny 2001:db8:${i.toString(16)}::/48` : `--deny 10.${i >> 8}.${i & 255}.0/${24 + (i % 9)}`,
      );
    }
    // In the middle, a /16 around 127.1.2.3; at the end, the one host.
    rules.splice(5_000, 0, "--deny 127.1.0.0/16");
    rules.push("--deny 127.0.0.9");
    assert.equal(rules.length, 10_000);
    writeFileSync(file, `# 10,000 rules\n${rules.join("\n")}\n`);
    await withBalancer({
      backends: ["a"],
      // One rule before the file's, one after.
      options: ["--allow", "127.1.2.4", "-F", file, "--deny", "127.2.0.2"],
    }, async ({ port, lb, backends: [a] }) => {
      const outcomes = [];
      for (const from of ["127.0.0.9", "127.1.2.3", "127.1.2.4", "127.0.0.5", "127.2.0.1", "127.2.0.2"]) {
        outcomes.push(await attempt(port, from));
      }
      assert.deepEqual(outcomes, [REFUSED, REFUSED, "a", "a", "a", REFUSED]);
      await warned(lb, literally("client 127.0.0.9 denied by --deny 127.0.0.9"));
      assert.equal(a.peers.length, 3);
      const all = ["--allow 127.1.2.4", ...rules, "--deny 127.2.0.2"];
      const { access } = (await status(port))[0];
      assert.deepEqual(
        access.rules.map((r) => `--${r.action} ${r.spec}`),
        all,
        "show --json: the 10,002 rules in order",
      );
      const dump = await control(port, "dump");
      const words = dump.split("\n").find((l) => l.includes("--deny"))!.split(" ");
      const dumped = words.flatMap((w, i) => /^--(allow|deny)$/.test(w) ? [`${w} ${words[i + 1]}`] : []);
      assert.deepEqual(dumped, all, "dump: every rule in order");
    });
  }));

test("access: a malformed or empty SPEC exits 64 with one line naming the option and the text", () =>
  withTempDir("balance-access-", async (dir) => {
    const port = await freePort();
    const cases: [string[], string][] = [
      [["--deny", "10.0.0.0/33"], "invalid address (--deny) '10.0.0.0/33': prefix length must be 0-32"],
      [["--allow", "::1/129"], "invalid address (--allow) '::1/129': prefix length must be 0-128"],
      [["--deny", "1.2.3"], "invalid address (--deny) '1.2.3': '1.2.3' is not an IPv4 or IPv6 address or prefix"],
      [["--deny", ""], "invalid address (--deny) '': an address, a prefix or 'all' is needed"],
      [
        ["--allow", "10.0.0.1,,10.0.0.2"],
        "invalid address (--allow) '10.0.0.1,,10.0.0.2': '' is not an IPv4 or IPv6 address or prefix",
      ],
      [
        ["--accept-proxy", "--proxy-from", "10.0.0.1/40"],
        "invalid address (--proxy-from) '10.0.0.1/40': prefix length must be 0-32",
      ],
      [["--proxy-from", "10.0.0.1"], "option --proxy-from needs --accept-proxy"],
      [["--max-per-client", "0"], "invalid connections per client (--max-per-client) '0': must be 1-1000000"],
      [["--client-table", "15"], "invalid client table (--client-table) '15': must be 16-16777216 clients"],
    ];
    for (const [words, message] of cases) {
      for (const mode of ["--check-config", "-f"]) {
        const r = await runBalance([mode, ...words, String(port), "127.0.0.1:1"]);
        assert.deepEqual(
          [r.code, r.stderr.split("\n")],
          [64, [`balance: ${message}`, "Try 'balance --help'.", ""]],
          `${mode} ${words.join(" ")}`,
        );
      }
    }
    // In a file, at its last line of 10,000, the line is named.
    const file = join(dir, "bad.conf");
    const lines = Array.from({ length: 9_999 }, (_, i) => `--deny 10.${i >> 8}.${i & 255}.0/24`);
    writeFileSync(file, `${lines.join("\n")}\n--deny 10.0.0.0/33 ${port} 127.0.0.1:1\n`);
    const r = await runBalance(["--check-config", "-F", file]);
    assert.deepEqual([r.code, r.stderr.split("\n")[0]], [
      64,
      `balance: ${file}:10000: invalid address (--deny) '10.0.0.0/33': prefix length must be 0-32`,
    ]);
  }));

// ------------------------------------------------- what a refusal leaves

test("access: metrics, warnings, the connection log, clients, show --json and dump after a denial, a concurrent and a rate limit", () =>
  withTempDir("balance-access-", async (dir) => {
    const metricsPort = await freePort();
    const options = [
      "--deny",
      "127.0.0.9",
      "-t",
      "5",
      "--allow",
      "127.0.0.0/8",
      "--deny",
      "all",
      "--max-per-client",
      "2",
      "--rate-per-client",
      "3/60",
    ];
    await withBalancer({
      backends: ["a"],
      options: [...options, "--log-connections", "--metrics", String(metricsPort)],
      controlDir: true,
      exitCode: 0,
    }, async ({ port, lb, backends: [a], env }) => {
      const denied = await reach(port, "127.0.0.9");
      const five = [await reach(port, "127.0.0.5"), await reach(port, "127.0.0.5")];
      try {
        const concurrent = await reach(port, "127.0.0.5");
        // One at a time, each gone before the next: --max-per-client 2 is not what stops the 4th.
        const six = [];
        for (let i = 0; i < 4; i++) {
          const r = await reach(port, "127.0.0.6");
          six.push(r);
          r.client.socket.destroy();
          if (r.outcome !== REFUSED) await openOf(port, env, "127.0.0.6", 0);
        }
        assert.deepEqual(
          [denied, ...five, concurrent, ...six].map((r) => r.outcome),
          [REFUSED, "a", "a", REFUSED, "a", "a", "a", REFUSED],
        );
        assert.equal(a.peers.length, 5);
        assert.deepEqual(await refusals(metricsPort), [1, 1, 1, 5]);
        for (
          const warning of [
            "client 127.0.0.9 denied by --deny 127.0.0.9",
            "client 127.0.0.5 limited by --max-per-client 2",
            "client 127.0.0.6 limited by --rate-per-client 3/60",
          ]
        ) await warned(lb, literally(warning));
        for (
          const [address, { clientPort }, reason] of [
            ["127.0.0.9", denied, "denied"],
            ["127.0.0.5", concurrent, "limited"],
            ["127.0.0.6", six[3], "limited"],
          ] as const
        ) {
          assert.match(
            await logLine(lb, address, clientPort),
            new RegExp(
              `INF: connection ${
                address.replaceAll(".", "\\.")
              }:${clientPort} -> none: [\\d.]+ s, 0 bytes sent, 0 rcvd, ${reason}$`,
            ),
          );
        }
        assert.deepEqual(await clientRows(port, env), [
          ["127.0.0.5", 2, 2, 1],
          ["127.0.0.6", 0, 3, 1],
          ["127.0.0.9", 0, 0, 1],
        ]);
        const access = {
          rules: [
            { action: "deny", spec: "127.0.0.9" },
            { action: "allow", spec: "127.0.0.0/8" },
            { action: "deny", spec: "all" },
          ],
          proxyFrom: null,
          maxPerClient: 2,
          ratePerClient: { connections: 3, seconds: 60 },
          clientTable: 65536,
        };
        assert.deepEqual((await status(port, env)).map((r) => r.access), [access]);
        const statusPage = await (await fetch(`http://127.0.0.1:${metricsPort}/status`)).json();
        assert.deepEqual(statusPage[0].access, access, "GET /status too");
        // dump: the rules and limits, in order; a balancer started from it has them.
        const dump = await control(port, "dump", env);
        const words = dump.split("\n").find((l) => l.includes("--deny"))!.split(" ");
        const accessWords = words.flatMap((w, i) =>
          /^--(allow|deny|max-per-client|rate-per-client|client-table|proxy-from)$/.test(w)
            ? [`${w} ${words[i + 1]}`]
            : []
        );
        assert.deepEqual(accessWords, [
          "--deny 127.0.0.9",
          "--allow 127.0.0.0/8",
          "--deny all",
          "--max-per-client 2",
          "--rate-per-client 3/60",
        ]);
        const [other, otherMetrics] = [await freePort(), await freePort()];
        const file = join(dir, "dumped.conf");
        writeFileSync(
          file,
          dump.replace(new RegExp(`^${port}$`, "m"), String(other)).replace(
            `--metrics ${metricsPort}`,
            `--metrics ${otherMetrics}`,
          ),
        );
        const copy = await startBalance(["-F", file], other, { env });
        try {
          assert.deepEqual((await status(other, env)).map((r) => r.access), [access], "the dump's balancer");
          assert.equal(await attempt(other, "127.0.0.9"), REFUSED);
          assert.equal(await attempt(other, "127.0.0.5"), "a");
        } finally {
          assert.equal(await copy.stop(), 0);
        }
      } finally {
        await hangUp(five.map((r) => r.client));
      }
    });
  }));
