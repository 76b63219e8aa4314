/**
 * SNI routing and named services (issue 24) on real sockets, processes and
 * TLS software: `--sni PATTERN=@NAME` sends a TLS client to the service its
 * ClientHello names (exact beats wildcard, the longest wildcard wins, case
 * and a trailing dot do not count), `--sni-default` takes the rest (no name,
 * no match, not TLS at all); `curl` and `openssl s_client` reach
 * `openssl s_server` backends end to end with the right certificate; the
 * hello reaches the channel byte for byte however it was cut (dribbled,
 * several records, padded to kilobytes), after a PROXY header sent or read;
 * malformed, oversized and late hellos (fuzzed) are refused, counted and
 * warned, and reach no channel; a reload moves a pattern for new clients
 * only; failover and hashing stay inside a service; mistakes on the command
 * line exit 64 with one line. Hellos are captured from `openssl s_client`,
 * never written by hand (only broken on purpose).
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import type * as net from "node:net";
import { join } from "node:path";
import process from "node:process";
import fc from "fast-check";
import { type Backend, type BackendSpec, type Behaviour, type Client, connect, freePort } from "../support/net.ts";
import { runBalance, type Running, withBalancer } from "../support/balance.ts";
import { control, sleep, status, withTempDir } from "../support/helpers.ts";
import { until, within } from "../support/wait.ts";
import {
  captureHello,
  curlGet,
  type Fetched,
  frame,
  handshakeMessage,
  padded,
  records,
  sClientGet,
  type TlsBackend,
  tlsUnavailable,
  withTlsBackends,
} from "../support/tls.ts";

const skip = tlsUnavailable;

// ------------------------------------------------------------- fixtures

const at = (b: { port: number }) => `127.0.0.1:${b.port}`;

/** One connection a {@link recorder} backend accepted: every byte it received. */
interface Recorded {
  data: Buffer;
}

/**
 * A plain TCP backend behaviour that records each connection's bytes, greets
 * with its name (`NAME\n`) at once and echoes what it gets: the client
 * learns who answered, the test what arrived.
 */
function recorder(): { conns: Recorded[]; behaviour: Behaviour } {
  const conns: Recorded[] = [];
  const behaviour: Behaviour = (s: net.Socket, b: Backend) => {
    const conn: Recorded = { data: Buffer.alloc(0) };
    conns.push(conn);
    s.write(`${b.name}\n`);
    s.on("data", (d: Buffer) => {
      conn.data = Buffer.concat([conn.data, d]);
      s.write(d);
    });
    s.on("end", () => s.end());
  };
  return { conns, behaviour };
}

/** Named recording backends, for {@link withSni}: `specs` to start, and each one's connections by name. */
function recorders(...names: string[]): { specs: BackendSpec[]; conns: Record<string, Recorded[]> } {
  const conns: Record<string, Recorded[]> = {};
  const specs = names.map((name) => {
    const r = recorder();
    conns[name] = r.conns;
    return { name, behaviour: r.behaviour };
  });
  return { specs, conns };
}

/** Waits until connection `i` of `conns` has at least `n` bytes; its bytes. */
async function recorded(conns: Recorded[], i: number, n: number, what = `connection ${i}`): Promise<Buffer> {
  const conn = await until(() => conns[i], (c) => c !== undefined && c.data.length >= n, `${n} bytes at ${what}`, {
    ms: 15_000,
  });
  return conn.data;
}

/** How many connections each recording backend accepted, by name. */
const accepted = (conns: Record<string, Recorded[]>) =>
  Object.fromEntries(Object.entries(conns).map(([name, list]) => [name, list.length]));

/** `text` as a literal in a regular expression. */
const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** What a TLS client got, for a failure message. */
const said = (r: Fetched) => `exit ${r.code}, body ${JSON.stringify(r.body)}, subject ${r.subject}:\n${r.output}`;

/** Asserts a TLS client got `id`'s file and `certName`'s certificate. */
function assertServed(r: Fetched, id: string, certName: string | undefined, what: string) {
  assert.equal(r.code, 0, `${what}: ${said(r)}`);
  assert.equal(r.body, `${id}\n`, `${what}: the body names the backend; ${said(r)}`);
  if (certName !== undefined) assert.equal(r.subject, certName, `${what}: the certificate; ${said(r)}`);
}

/** The `--log-connections` lines balance wrote so far. */
const connectionLines = (lb: Running) => lb.stderr().split("\n").filter((l) => /connection \S+ -> /.test(l));

/** Waits until there are at least `n` connection lines; all of them. */
const loggedConnections = (lb: Running, n: number) =>
  until(() => connectionLines(lb), (lines) => lines.length >= n, `${n} connection lines`, { ms: 15_000 });

/** A scrape of `--metrics` on `metricsPort`. */
const scrape = async (metricsPort: number) => await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();

/** The value of the unlabelled metric `name` from a scrape. */
async function metric(metricsPort: number, name: string): Promise<number> {
  const text = await scrape(metricsPort);
  const m = new RegExp(`^${name} (\\d+)$`, "m").exec(text);
  assert.ok(m, `${name} in:\n${text}`);
  return Number(m[1]);
}

/** `balance_clients_sni_refused_total` from a scrape. */
const sniRefused = (metricsPort: number) => metric(metricsPort, "balance_clients_sni_refused_total");

/** The `TLS ClientHello refused from` warnings balance has logged. */
const refusals = (lb: Running) => lb.stderr().split("\n").filter((l) => l.includes("TLS ClientHello refused from"));

/**
 * Resolves once balance has closed `c`: its FIN (the client, half-open,
 * may still be open) or a reset; rejects after `ms`.
 */
function closedByBalance(c: Client, what: string, ms = 15_000): Promise<void> {
  const gone = new Promise<void>((resolve) => {
    if (c.socket.readableEnded || c.socket.destroyed) return resolve();
    c.socket.once("end", () => resolve());
    c.socket.once("close", () => resolve());
  });
  return within(gone, ms, `balance to close ${what}`);
}

/** Hellos captured from `openssl s_client ARGS…`, once per test process per command line. */
const captured = new Map<string, Promise<Buffer>>();
function hello(...args: string[]): Promise<Buffer> {
  const key = args.join("\0");
  let h = captured.get(key);
  if (!h) {
    h = captureHello(args);
    h.catch(() => captured.delete(key));
    captured.set(key, h);
  }
  return h;
}

/** 30-char ALPN protocol names, `count` of them, for `-alpn`: a hello that long. */
const alpnList = (count: number) =>
  Array.from({ length: count }, (_, i) => `proto-${String(i).padStart(3, "0")}-${"x".repeat(20)}`).join(",");

/**
 * Connects (from `localAddress`), sends `bytes` (a ClientHello, or not),
 * and resolves with the greeting line of the backend that answered, or
 * `"closed"` when balance closed the client without one. The client stays
 * open unless `close`.
 */
async function greeted(
  port: number,
  bytes: Buffer,
  { localAddress, close = true }: { localAddress?: string; close?: boolean } = {},
): Promise<{ who: string; client: Client }> {
  const client = await connect(port, "127.0.0.1", localAddress);
  client.socket.write(bytes);
  try {
    const who = await client.waitFor((d) => d.includes(10), 15_000).then(
      (d) => d.toString().split("\n")[0],
      // Closed (a FIN or a reset) before any greeting; a timeout stays an error.
      (err) => client.socket.readableEnded || client.socket.destroyed ? "closed" : Promise.reject(err),
    );
    return { who, client };
  } finally {
    if (close) client.socket.destroy();
  }
}

/** Everything {@link withSni} hands its body. */
interface SniRun {
  port: number;
  lb: Running;
  /** The `openssl s_server` backends, in the order asked. */
  tls: TlsBackend[];
  /** The plain TCP backends, in the order asked. */
  plain: Backend[];
  /** The balancer's environment (its private control directory), for {@link control}. */
  env: Record<string, string>;
  metricsPort: number;
}

/** What {@link withSni} starts. */
interface SniSetup {
  /** `openssl s_server` backends: [id, certificate name]. */
  tls?: [string, string][];
  /** Plain TCP backends. */
  plain?: BackendSpec[];
  /** Options before the port (`--sni …`); `--log-connections` and `--metrics` are added. */
  options: (f: { tls: TlsBackend[]; plain: Backend[] }) => string[];
  /** The channel words after the port. */
  channels: (f: { tls: TlsBackend[]; plain: Backend[] }) => string[];
  /** The whole command line instead (for `-F`); `--metrics` is not added. */
  args?: (f: { port: number; metricsPort: number; tls: TlsBackend[]; plain: Backend[] }) => string[];
  /** A trace to await before the body (`in 2 thread(s)`). */
  ready?: string;
}

/**
 * TLS backends, plain backends, and balance in front of them with
 * `--log-connections --metrics 127.0.0.1:M` and its own control directory;
 * runs `fn`, then stops everything whatever happened; balance must exit 0.
 */
function withSni(setup: SniSetup, fn: (f: SniRun) => Promise<void>): Promise<void> {
  return withTlsBackends(setup.tls ?? [], async (tls) => {
    const metricsPort = await freePort();
    await withBalancer({
      backends: setup.plain ?? [],
      args: ({ port, backends: plain }) =>
        setup.args?.({ port, metricsPort, tls, plain }) ?? [
          ...["--log-connections", "--metrics", `127.0.0.1:${metricsPort}`],
          ...setup.options({ tls, plain }),
          String(port),
          ...setup.channels({ tls, plain }),
        ],
      controlDir: true,
      ready: setup.ready,
      exitCode: 0,
    }, ({ port, lb, backends: plain, env }) => fn({ port, lb, tls, plain, env, metricsPort }));
  });
}

// --------------------------------------------- end to end with real TLS

/** The three `openssl s_server` backends most tests use: default, a.test, b.api.test. */
const THREE: [string, string][] = [["default", "default.test"], ["a", "a.test"], ["b", "b.api.test"]];

test(
  "sni: curl and openssl s_client reach the backend their name routes to, with its certificate; show --json, the log and metrics name the service",
  {
    skip,
    timeoutMs: 90_000,
  },
  () =>
    withSni({
      tls: THREE,
      options: () => ["--sni", "a.test=@a", "--sni", "b.api.test=@b"],
      channels: ({ tls: [d, a, b] }) => [at(d), "@a", at(a), "@b", at(b)],
    }, async ({ port, lb, tls: [d, a, b], env, metricsPort }) => {
      const cases = [["a.test", "a", "a.test"], ["b.api.test", "b", "b.api.test"], [
        "other.test",
        "default",
        "default.test",
      ]];
      for (const [name, id, cert] of cases) {
        assertServed(await curlGet(name, port), id, cert, `curl ${name}`);
        assertServed(await sClientGet(name, port), id, cert, `openssl s_client -servername ${name}`);
      }
      const rows = await status(port, env);
      assert.deepEqual(
        rows.map((r) => [r.service, r.group, r.channel, r.port, r.totalc]),
        [["", 0, 0, d.port, 2], ["a", 1, 0, a.port, 2], ["b", 2, 0, b.port, 2]],
      );
      const lines = await loggedConnections(lb, 6);
      for (
        const [name, where] of [
          ["a.test", `@a group 1 channel 0 (${at(a)})`],
          ["b.api.test", `@b group 2 channel 0 (${at(b)})`],
          ["other.test", `group 0 channel 0 (${at(d)})`],
        ]
      ) {
        const mine = lines.filter((l) => l.endsWith(` sni=${name}`));
        assert.equal(mine.length, 2, `two lines end with sni=${name}:\n${lines.join("\n")}`);
        for (const line of mine) {
          assert.match(line, new RegExp(`connection 127\\.0\\.0\\.1:\\d+ -> ${literal(where)}: `));
        }
      }
      const text = await scrape(metricsPort);
      for (const [service, group, backend] of [["a", 1, a], ["b", 2, b]] as const) {
        assert.match(
          text,
          new RegExp(
            `^balance_channel_connections_total\\{service="${service}",group="${group}",channel="0",address="${
              literal(at(backend))
            }"\\} 2$`,
            "m",
          ),
        );
      }
      assert.match(
        text,
        new RegExp(`^balance_channel_connections_total\\{group="0",channel="0",address="${literal(at(d))}"\\} 2$`, "m"),
        "the default service's series has no service label",
      );
      assert.equal(await sniRefused(metricsPort), 0);
    }),
);

test(
  "sni: an exact name beats a wildcard, the longest wildcard wins, case and a trailing dot do not count; no name or no match goes to the default",
  {
    skip,
    timeoutMs: 120_000,
  },
  () =>
    withSni({
      tls: [["default", "default.test"], ["a", "a.test"], ["b", "b.api.test"], ["api", "default.test"], [
        "deep",
        "default.test",
      ]],
      // The wildcards first, and written in capitals with a trailing dot: neither order nor case counts.
      options: () => [
        ...["--sni", "*.API.test=@api", "--sni", "*.x.api.test.=@deep"],
        ...["--sni", "B.api.test=@b", "--sni", "a.test.=@a"],
      ],
      channels: (
        { tls: [d, a, b, api, deep] },
      ) => [at(d), "@a", at(a), "@b", at(b), "@api", at(api), "@deep", at(deep)],
    }, async ({ port, lb }) => {
      const byCurl: [string, string][] = [
        ["b.api.test", "b"], // exact beats *.api.test
        ["c.api.test", "api"],
        ["x.api.test", "api"], // *.x.api.test needs a label before x.api.test
        ["q.x.api.test", "deep"], // the longer wildcard
        ["r.q.x.api.test", "deep"], // * is one or more labels
        ["api.test", "default"], // *.api.test needs a label before api.test
        ["a.test", "a"],
        ["sub.a.test", "default"], // an exact name is not a wildcard
        ["unknown.example", "default"],
      ];
      for (const [name, id] of byCurl) assertServed(await curlGet(name, port), id, undefined, `curl ${name}`);
      // curl sends names lowercase and without a trailing dot; openssl sends them as given.
      const bySClient: [string | undefined, string, string][] = [
        ["A.Test.", "a", "a.test"],
        ["B.API.TEST", "b", "b.api.test"],
        ["Q.X.Api.Test.", "deep", "q.x.api.test"],
        [undefined, "default", ""],
      ];
      for (const [i, [name, id, logged]] of bySClient.entries()) {
        assertServed(await sClientGet(name, port), id, undefined, `openssl s_client ${name ?? "-noservername"}`);
        // The log names the host lowercase and without its dot; no name, no sni=.
        const lines = await loggedConnections(lb, byCurl.length + i + 1);
        assert.equal(lines.length, byCurl.length + i + 1);
        const last = lines.at(-1)!;
        if (logged) assert.ok(last.endsWith(` sni=${logged}`), `${name}: ${last}`);
        else assert.doesNotMatch(last, / sni=/, `no name: ${last}`);
      }
      assert.ok(
        lb.stderr().includes("server name a.test: --sni a.test=@a service @a"),
        "-d traces the pattern that matched (lowercase, without its dot)",
      );
    }),
);

test(
  "sni: --sni-default takes clients without a name and names no pattern matches",
  { skip, timeoutMs: 90_000 },
  () =>
    withSni({
      tls: [["default", "default.test"], ["a", "a.test"], ["fallback", "default.test"]],
      options: () => ["--sni", "a.test=@a", "--sni", "*.a.test=@a", "--sni-default", "@fallback"],
      channels: ({ tls: [d, a, f] }) => [at(d), "@a", at(a), "@fallback", at(f)],
    }, async ({ port, env }) => {
      assertServed(await sClientGet(undefined, port), "fallback", undefined, "no server name");
      assertServed(await curlGet("other.test", port), "fallback", undefined, "no pattern matches");
      assertServed(await curlGet("a.test.example", port), "fallback", undefined, "a suffix of no pattern");
      assertServed(await curlGet("w.a.test", port), "a", undefined, "the wildcard");
      assertServed(await curlGet("a.test", port), "a", "a.test", "the exact name");
      // The default service is still there, and nothing was sent to it.
      assert.deepEqual((await status(port, env)).map((r) => [r.service, r.totalc]), [["", 0], ["a", 2], [
        "fallback",
        3,
      ]]);
    }),
);

test(
  "sni: a client that is not TLS (SSH, plain HTTP) goes to --sni-default with its bytes unchanged; without it, to the default service",
  {
    skip,
  },
  async () => {
    const ssh = Buffer.from("SSH-2.0-OpenSSH_9.0\r\n");
    const http = Buffer.from("GET / HTTP/1.0\r\nHost: a.test\r\n\r\n");
    const helloA = await hello("-servername", "a.test");
    const helloNone = await hello("-noservername");
    // With --sni-default @ssh.
    const r1 = recorders("default", "a", "ssh");
    await withSni({
      plain: r1.specs,
      options: () => ["--sni", "a.test=@a", "--sni-default", "@ssh"],
      channels: ({ plain: [d, a, s] }) => [at(d), "@a", at(a), "@ssh", at(s)],
    }, async ({ port, lb }) => {
      const { who, client } = await greeted(port, ssh, { close: false });
      assert.equal(who, "ssh");
      // The backend greets, then echoes: the client's bytes came back unchanged, and arrived so.
      await client.waitFor((d) => d.equals(Buffer.concat([Buffer.from("ssh\n"), ssh])));
      client.socket.write("more\n");
      assert.ok((await recorded(r1.conns.ssh, 0, ssh.length + 5)).equals(Buffer.concat([ssh, Buffer.from("more\n")])));
      client.socket.end();
      await client.ended();
      assert.equal((await greeted(port, http)).who, "ssh", "plain HTTP");
      assert.ok((await recorded(r1.conns.ssh, 1, http.length)).equals(http));
      assert.equal((await greeted(port, helloNone)).who, "ssh", "a TLS hello without a name");
      assert.ok((await recorded(r1.conns.ssh, 2, helloNone.length)).equals(helloNone));
      assert.equal((await greeted(port, helloA)).who, "a", "a TLS hello for a.test");
      assert.deepEqual(accepted(r1.conns), { default: 0, a: 1, ssh: 3 });
      const lines = await loggedConnections(lb, 4);
      assert.equal(
        lines.filter((l) => l.includes(" sni=")).length,
        1,
        `only the named hello has sni=:\n${lines.join("\n")}`,
      );
      assert.ok(lb.stderr().includes(": not TLS: the default service @ssh"), "-d traces it as not TLS");
    });
    // Without --sni-default: the default service.
    const r2 = recorders("default", "a");
    await withSni({
      plain: r2.specs,
      options: () => ["--sni", "a.test=@a"],
      channels: ({ plain: [d, a] }) => [at(d), "@a", at(a)],
    }, async ({ port }) => {
      assert.equal((await greeted(port, ssh)).who, "default");
      assert.ok((await recorded(r2.conns.default, 0, ssh.length)).equals(ssh));
      assert.equal((await greeted(port, helloNone)).who, "default");
      assert.equal((await greeted(port, helloA)).who, "a");
    });
  },
);

// ---------------------------------------------------------- hard hellos

test(
  "sni: a real hello dribbled one byte every 10 ms reaches its backend byte for byte, and the client's next bytes after it",
  {
    skip,
    timeoutMs: 90_000,
  },
  async () => {
    const helloA = await hello("-servername", "a.test");
    const r = recorders("default", "a", "b");
    await withSni({
      plain: r.specs,
      // The whole hello must be in within -t: a few seconds of dribbling on a busy machine.
      options: () => ["-t", "30", "--sni", "a.test=@a", "--sni", "b.api.test=@b"],
      channels: ({ plain: [d, a, b] }) => [at(d), "@a", at(a), "@b", at(b)],
    }, async ({ port }) => {
      const c = await connect(port);
      c.socket.setNoDelay(true);
      const deadline = Date.now() + 30_000;
      for (let i = 0; i < helloA.length && Date.now() < deadline && !c.socket.destroyed; i++) {
        c.socket.write(helloA.subarray(i, i + 1));
        await sleep(10);
        // Half a hello chooses no channel yet.
        if (i === helloA.length >> 1) assert.deepEqual(accepted(r.conns), { default: 0, a: 0, b: 0 }, "half a hello");
      }
      await c.waitFor((d) => d.toString().startsWith("a\n"), 15_000);
      c.socket.write("after the hello");
      const got = await recorded(r.conns.a, 0, helloA.length + 15);
      assert.ok(got.subarray(0, helloA.length).equals(helloA), "the hello, byte for byte");
      assert.equal(got.subarray(helloA.length).toString(), "after the hello");
      assert.equal(got.length, helloA.length + 15);
      c.socket.end();
      await c.ended();
      assert.deepEqual(accepted(r.conns), { default: 0, a: 1, b: 0 });
    });
  },
);

test(
  "sni: a hello split across records (openssl -max_send_frag 512) is routed end to end, and reaches a channel byte for byte",
  {
    skip,
    timeoutMs: 90_000,
  },
  async () => {
    const args = ["-max_send_frag", "512", "-alpn", alpnList(30)];
    const split = await hello("-servername", "b.api.test", ...args);
    const parts = records(split);
    assert.ok(parts.records.length >= 2, `openssl split its hello: ${parts.records.map((p) => p.fragment.length)}`);
    assert.ok(parts.records.every((p) => p.type === 0x16 && p.fragment.length <= 512));
    assert.equal(parts.rest.length, 0);
    // The real thing: the handshake completes through balance with the right backend.
    await withSni({
      tls: THREE,
      options: () => ["--sni", "a.test=@a", "--sni", "b.api.test=@b"],
      channels: ({ tls: [d, a, b] }) => [at(d), "@a", at(a), "@b", at(b)],
    }, async ({ port }) => {
      assertServed(await sClientGet("b.api.test", port, args), "b", "b.api.test", "-max_send_frag 512");
      assertServed(await sClientGet("a.test", port, args), "a", "a.test", "-max_send_frag 512");
    });
    // Byte for byte, and a captured hello cut into two records at other places.
    const r = recorders("default", "a", "b");
    await withSni({
      plain: r.specs,
      options: () => ["--sni", "a.test=@a", "--sni", "b.api.test=@b"],
      channels: ({ plain: [d, a, b] }) => [at(d), "@a", at(a), "@b", at(b)],
    }, async ({ port }) => {
      assert.equal((await greeted(port, split)).who, "b");
      assert.ok((await recorded(r.conns.b, 0, split.length)).equals(split), "the records, byte for byte");
      const message = handshakeMessage(await hello("-servername", "a.test"))!.message;
      // Inside the handshake header, in the random, in the extensions, at the name itself.
      const cuts = [1, 3, 20, message.length - 40, message.indexOf(Buffer.from("a.test")) + 2, message.length - 1];
      for (const [i, cut] of cuts.entries()) {
        const twoRecords = Buffer.concat([frame(message.subarray(0, cut)), frame(message.subarray(cut))]);
        assert.equal(records(twoRecords).records.length, 2);
        assert.equal((await greeted(port, twoRecords)).who, "a", `cut at ${cut}`);
        assert.ok((await recorded(r.conns.a, i, twoRecords.length)).equals(twoRecords), `cut at ${cut}: byte for byte`);
      }
      assert.deepEqual(accepted(r.conns), { default: 0, a: cuts.length, b: 1 });
    });
  },
);

test("sni: a hello of 5-8 KiB (a long ALPN list, or a padding extension) is routed, end to end and byte for byte", {
  skip,
  timeoutMs: 90_000,
}, async () => {
  const args = ["-alpn", alpnList(200)];
  const long = await hello("-servername", "a.test", ...args);
  assert.ok(long.length >= 5 * 1024 && long.length <= 8 * 1024, `a ${long.length}-byte hello`);
  await withSni({
    tls: THREE,
    options: () => ["--sni", "a.test=@a", "--sni", "b.api.test=@b"],
    channels: ({ tls: [d, a, b] }) => [at(d), "@a", at(a), "@b", at(b)],
  }, async ({ port }) => {
    assertServed(await sClientGet("a.test", port, args), "a", "a.test", "a 6 KiB hello");
    assertServed(await sClientGet("b.api.test", port, args), "b", "b.api.test", "a 6 KiB hello");
  });
  const base = await hello("-servername", "b.api.test");
  const r = recorders("default", "a", "b");
  await withSni({
    plain: r.specs,
    options: () => ["--sni", "a.test=@a", "--sni", "b.api.test=@b"],
    channels: ({ plain: [d, a, b] }) => [at(d), "@a", at(a), "@b", at(b)],
  }, async ({ port }) => {
    const sizes = [5 * 1024, 6000, 8 * 1024 - 9];
    for (const [i, size] of sizes.entries()) {
      const grown = padded(base, size);
      assert.equal(handshakeMessage(grown)!.message.length, size);
      assert.equal((await greeted(port, grown)).who, "b", `padded to ${size}`);
      assert.ok((await recorded(r.conns.b, i, grown.length)).equals(grown), `padded to ${size}: byte for byte`);
    }
    // The same, in records of 1,000 bytes.
    const framed = padded(base, 7000, 1000);
    assert.equal(records(framed).records.length, 7);
    assert.equal((await greeted(port, framed)).who, "b");
    assert.ok((await recorded(r.conns.b, sizes.length, framed.length)).equals(framed));
    // openssl's long-ALPN hello, byte for byte.
    assert.equal((await greeted(port, long)).who, "a");
    assert.ok((await recorded(r.conns.a, 0, long.length)).equals(long));
    assert.deepEqual(accepted(r.conns), { default: 0, a: 1, b: sizes.length + 1 });
  });
});

// ------------------------------------------------------------- refusals

/** Offsets of the fields a one-record ClientHello's lengths are in (record header included). */
function layout(h: Buffer) {
  // Record header (5), handshake type (5) and length (6-8), version (9-10), random (11-42).
  const sessionIdLength = 43;
  let at = 44 + h[sessionIdLength];
  const suitesLength = at;
  at += 2 + h.readUInt16BE(at);
  const compressionsLength = at;
  at += 1 + h[at];
  const extensionsLength = at;
  const end = at + 2 + h.readUInt16BE(at);
  assert.equal(end, h.length, "one hello, its extensions last");
  for (at += 2; at < end; at += 4 + h.readUInt16BE(at + 2)) {
    if (h.readUInt16BE(at) !== 0) continue;
    // server_name: the list's length, then type (0, host_name), the name's length and the name.
    const list = at + 4;
    const name = { at: list + 5, length: h.readUInt16BE(list + 3) };
    return { sessionIdLength, suitesLength, compressionsLength, extensionsLength, sniList: list, name };
  }
  throw new Error("no server_name extension");
}

/** `h` with the `width`-byte big-endian field at `offset` set to `value`. */
function withField(h: Buffer, offset: number, width: 1 | 2 | 3, value: number): Buffer {
  const copy = Buffer.from(h);
  copy.writeUIntBE(value, offset, width);
  return copy;
}

/** Bytes that may not be in a host name. */
const notInHostName = fc.integer({ min: 0, max: 255 }).filter((b) => !/[A-Za-z0-9_.-]/.test(String.fromCharCode(b)));

/**
 * Broken hellos, each refused for sure (after the client's FIN at the
 * latest), made from the real hello `h`: cut short, a length or type that
 * cannot be, a name that is not a host name, 17-20 KiB, or noise after a
 * handshake record's first byte.
 */
function brokenHellos(h: Buffer): fc.Arbitrary<{ kind: string; bytes: Buffer }> {
  const l = layout(h);
  const u16 = fc.integer({ min: 0, max: 0xffff });
  const byte = fc.integer({ min: 0, max: 255 });
  return fc.oneof(
    fc.integer({ min: 1, max: h.length - 1 }).map((n) => ({ kind: "truncated", bytes: h.subarray(0, n) })),
    u16.filter((v) => v !== h.readUInt16BE(3)).map((v) => ({ kind: "record length", bytes: withField(h, 3, 2, v) })),
    byte.filter((v) => v !== 3).map((v) => ({ kind: "record version", bytes: withField(h, 1, 1, v) })),
    byte.filter((v) => v !== 1).map((v) => ({ kind: "handshake type", bytes: withField(h, 5, 1, v) })),
    fc.integer({ min: 0, max: 0xffffff }).filter((v) => v !== h.readUIntBE(6, 3)).map((v) => ({
      kind: "handshake length",
      bytes: withField(h, 6, 3, v),
    })),
    fc.integer({ min: 33, max: 255 }).map((v) => ({
      kind: "session id length",
      bytes: withField(h, l.sessionIdLength, 1, v),
    })),
    u16.filter((v) => v % 2 === 1 || v === 0).map((v) => ({
      kind: "cipher suites length",
      bytes: withField(h, l.suitesLength, 2, v),
    })),
    fc.constant({ kind: "no compression method", bytes: withField(h, l.compressionsLength, 1, 0) }),
    u16.filter((v) => v !== h.readUInt16BE(l.extensionsLength)).map((v) => ({
      kind: "extensions length",
      bytes: withField(h, l.extensionsLength, 2, v),
    })),
    u16.filter((v) => v !== h.readUInt16BE(l.sniList)).map((v) => ({
      kind: "server_name list length",
      bytes: withField(h, l.sniList, 2, v),
    })),
    u16.filter((v) => v === 0 || v > l.name.length).map((v) => ({
      kind: "server name length",
      bytes: withField(h, l.sniList + 3, 2, v),
    })),
    fc.tuple(fc.integer({ min: 0, max: l.name.length - 1 }), notInHostName).map(([i, b]) => ({
      kind: "not a host name",
      bytes: withField(h, l.name.at + i, 1, b),
    })),
    fc.integer({ min: 17 * 1024, max: 20_000 }).map((n) => ({ kind: "17-20 KiB", bytes: padded(h, n) })),
    fc.uint8Array({ minLength: 0, maxLength: 3000 }).map((noise) => ({
      kind: "noise",
      bytes: Buffer.from([0x16, ...noise]),
    })),
  );
}

test(
  "sni: fuzzed malformed, truncated and oversized hellos are each closed, counted and logged as sni-refused; none reaches a channel",
  {
    skip,
    timeoutMs: 120_000,
  },
  async () => {
    const h = await hello("-servername", "a.test");
    const r = recorders("default", "a");
    await withSni({
      plain: r.specs,
      options: () => ["--sni", "a.test=@a"],
      channels: ({ plain: [d, a] }) => [at(d), "@a", at(a)],
    }, async ({ port, lb, env, metricsPort }) => {
      // A bare connect that sends nothing (a front balancer's check): neither refused nor logged.
      const bare = await connect(port);
      bare.socket.end();
      await bare.ended();
      let runs = 0;
      const kinds = new Set<string>();
      await fc.assert(
        fc.asyncProperty(
          brokenHellos(h),
          fc.array(fc.nat(), { minLength: 0, maxLength: 2 }),
          async ({ kind, bytes }, cuts) => {
            runs++;
            kinds.add(kind);
            const before = await sniRefused(metricsPort);
            const c = await connect(port);
            // In one to three writes, then the FIN: a hello cut short is refused there at the latest.
            const at = [...new Set(cuts.map((n) => n % bytes.length))].sort((x, y) => x - y);
            let from = 0;
            for (const cut of [...at, bytes.length]) {
              if (c.socket.destroyed) break;
              c.socket.write(bytes.subarray(from, cut));
              from = cut;
              await sleep(5);
            }
            if (!c.socket.destroyed) c.socket.end();
            await closedByBalance(c, `a ${kind} hello`);
            c.socket.destroy();
            assert.equal(c.received().length, 0, `${kind}: nothing came back`);
            await until(() => sniRefused(metricsPort), (n) => n === before + 1, `${kind}: counted once`);
            assert.deepEqual(accepted(r.conns), { default: 0, a: 0 }, `${kind}: no channel saw it`);
          },
        ),
        { numRuns: 40, endOnFailure: true },
      );
      assert.ok(kinds.size >= 5, `the kinds tried: ${[...kinds]}`);
      const lines = await loggedConnections(lb, runs);
      assert.equal(lines.length, runs);
      for (const line of lines) assert.match(line, / -> none: .* sni-refused$/);
      assert.match(refusals(lb)[0], /TLS ClientHello refused from 127\.0\.0\.1:\d+: \S.*$/);
      assert.deepEqual((await status(port, env)).map((row) => row.totalc), [0, 0]);
      assert.equal(await sniRefused(metricsPort), runs, "the bare connect is not counted");
      assert.equal(await metric(metricsPort, "balance_clients_total"), 0, "a refused client is no client");
      // A good client still gets through.
      assert.equal((await greeted(port, h)).who, "a");
      assert.equal(await metric(metricsPort, "balance_clients_total"), 1);
      assert.equal((await loggedConnections(lb, runs + 1)).length, runs + 1);
    });
  },
);

test("sni: each refusal says why: too large, a wrong length, not a host name, cut short, none (or nothing) within -t", {
  skip,
  timeoutMs: 120_000,
}, async () => {
  const h = await hello("-servername", "a.test");
  const l = layout(h);
  const spaced = withField(h, l.name.at + 1, 1, 0x20);
  const cases: { what: string; bytes: Buffer; end: boolean; reason: string }[] = [
    // Refused on the bytes, without waiting for the FIN.
    { what: "17 KiB", bytes: padded(h, 17 * 1024), end: false, reason: "ClientHello larger than 16 KiB" },
    {
      what: "extensions length",
      bytes: withField(h, l.extensionsLength, 2, h.readUInt16BE(l.extensionsLength) + 1),
      end: true,
      reason: "malformed ClientHello: extensions length past its end",
    },
    { what: "a space", bytes: spaced, end: false, reason: "server name 'a test' is not a host name" },
    { what: "cut short", bytes: h.subarray(0, 100), end: true, reason: "closed before the whole ClientHello" },
    { what: "late", bytes: h.subarray(0, 100), end: false, reason: "no whole ClientHello: none within 1s" },
    { what: "silent", bytes: Buffer.alloc(0), end: false, reason: "no whole ClientHello: none within 1s" },
  ];
  for (const { what, bytes, end, reason } of cases) {
    // -t 1 where the timeout is the point; else a -t no stall of a busy machine reaches.
    const late = reason.startsWith("no whole ClientHello");
    const r = recorders("default", "a");
    await withSni({
      plain: r.specs,
      options: () => ["-t", late ? "1" : "20", "--sni", "a.test=@a"],
      channels: ({ plain: [d, a] }) => [at(d), "@a", at(a)],
    }, async ({ port, lb, metricsPort }) => {
      const c = await connect(port);
      const from = c.socket.localPort;
      c.socket.write(bytes);
      if (end) c.socket.end();
      await closedByBalance(c, `the ${what} hello`);
      c.socket.destroy();
      assert.equal(c.received().length, 0, what);
      await lb.waitForTrace("TLS ClientHello refused from");
      assert.match(
        refusals(lb)[0],
        new RegExp(`TLS ClientHello refused from 127\\.0\\.0\\.1:${from}: ${literal(reason)}$`),
        what,
      );
      assert.equal(await sniRefused(metricsPort), 1, what);
      const [line] = await loggedConnections(lb, 1);
      assert.match(line, new RegExp(`connection 127\\.0\\.0\\.1:${from} -> none: .* sni-refused$`), what);
      assert.deepEqual(accepted(r.conns), { default: 0, a: 0 }, `${what}: no channel saw it`);
    });
  }
});

// -------------------------------------------------------- PROXY headers

const SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/** The v2 PROXY block (PROXY, TCP over IPv4) for `src` → `dst`, written out from the specification. */
function v2Block(src: { address: string; port: number }, dst: { address: string; port: number }): Buffer {
  const ip = (a: string) => a.split(".").map(Number);
  const port = (p: number) => [p >> 8, p & 0xff];
  return Buffer.from([
    ...SIGNATURE,
    0x21,
    0x11,
    0x00,
    12,
    ...ip(src.address),
    ...ip(dst.address),
    ...port(src.port),
    ...port(dst.port),
  ]);
}

test("sni: with --proxy-protocol v2 the channel gets the v2 header, then the ClientHello byte for byte", {
  skip,
}, async () => {
  const helloA = await hello("-servername", "a.test");
  const helloNone = await hello("-noservername");
  const r = recorders("default", "a");
  await withSni({
    plain: r.specs,
    options: () => ["--proxy-protocol", "v2", "--sni", "a.test=@a"],
    channels: ({ plain: [d, a] }) => [at(d), "@a", at(a)],
  }, async ({ port }) => {
    const cases: [string, Buffer, "a" | "default"][] = [
      ["a.test", helloA, "a"],
      ["no name", helloNone, "default"],
      ["not TLS", Buffer.from("SSH-2.0-OpenSSH_9.0\r\n"), "default"],
    ];
    for (const [i, [what, bytes, who]] of cases.entries()) {
      const c = await connect(port, "127.0.0.1", "127.0.0.9");
      c.socket.setNoDelay(true);
      // In two writes: the header must still come first, and once.
      c.socket.write(bytes.subarray(0, 7));
      await sleep(50);
      c.socket.write(bytes.subarray(7));
      await c.waitFor((d) => d.toString().startsWith(`${who}\n`), 15_000);
      const header = v2Block({ address: "127.0.0.9", port: c.socket.localPort! }, { address: "127.0.0.1", port });
      const got = await recorded(r.conns[who], who === "a" ? 0 : i - 1, header.length + bytes.length, what);
      assert.equal(got.subarray(0, header.length).toString("hex"), header.toString("hex"), `${what}: the header`);
      assert.ok(got.subarray(header.length).equals(bytes), `${what}: then the client's bytes, unchanged`);
      assert.equal(got.length, header.length + bytes.length, `${what}: nothing more`);
      c.socket.end();
      await c.ended();
    }
    assert.deepEqual(accepted(r.conns), { default: 2, a: 1 });
  });
});

test(
  "sni: with --accept-proxy the PROXY header is read first, the hello routes the client it names, a bad hello is refused from it",
  {
    skip,
  },
  async () => {
    const helloA = await hello("-servername", "a.test");
    const claimed = { address: "10.9.8.7", port: 4000 };
    const claimedDst = { address: "192.0.2.1", port: 443 };
    const line = Buffer.from("PROXY TCP4 10.9.8.7 192.0.2.1 4000 443\r\n");
    const r = recorders("default", "a");
    await withSni({
      plain: r.specs,
      options: () => ["--accept-proxy", "--proxy-protocol", "v2", "--sni", "a.test=@a"],
      channels: ({ plain: [d, a] }) => [at(d), "@a", at(a)],
    }, async ({ port, lb, metricsPort }) => {
      const expected = Buffer.concat([v2Block(claimed, claimedDst), helloA]);
      // The header and the hello in one write.
      assert.equal((await greeted(port, Buffer.concat([line, helloA]))).who, "a");
      assert.ok((await recorded(r.conns.a, 0, expected.length)).equals(expected), "one write");
      // In pieces that cut the header and the hello.
      const c = await connect(port);
      c.socket.setNoDelay(true);
      const all = Buffer.concat([line, helloA]);
      for (
        const [from, to] of [[0, 10], [10, line.length + 3], [line.length + 3, line.length + 60], [
          line.length + 60,
          all.length,
        ]]
      ) {
        c.socket.write(all.subarray(from, to));
        await sleep(30);
      }
      await c.waitFor((d) => d.toString().startsWith("a\n"), 15_000);
      assert.ok((await recorded(r.conns.a, 1, expected.length)).equals(expected), "in pieces");
      c.socket.end();
      await c.ended();
      const lines = await loggedConnections(lb, 2);
      for (const l of lines) {
        assert.match(l, /connection 10\.9\.8\.7:4000 -> @a group 1 channel 0 \(.*\): .* sni=a\.test$/);
      }
      // A hello that is not one (a ServerHello's type) after a good header: refused at once, from the client the header named.
      const { who } = await greeted(port, Buffer.concat([line, withField(helloA, 5, 1, 2)]));
      assert.equal(who, "closed");
      await lb.waitForTrace("TLS ClientHello refused from");
      assert.match(
        refusals(lb)[0],
        /TLS ClientHello refused from 10\.9\.8\.7:4000: not a ClientHello \(handshake type 2\)$/,
      );
      assert.equal(await sniRefused(metricsPort), 1);
      assert.deepEqual(accepted(r.conns), { default: 0, a: 2 });
    });
  },
);

// --------------------------------------------- reload, workers, services

test(
  "sni: a reload that moves a pattern to another service sends new clients there; an open one stays and still works",
  {
    skip,
    timeoutMs: 90_000,
  },
  () =>
    withTempDir("balance-sni-", async (dir) => {
      const helloA = await hello("-servername", "a.test");
      const helloB = await hello("-servername", "b.api.test");
      const file = join(dir, "sni.conf");
      const text = (port: number, [d, a, b]: Backend[], a2: string, api: string) =>
        `# services\n--log-connections\n--sni a.test=@${a2}\n--sni *.api.test=@${api}\n${port}\n${at(d)}\n@a ${
          at(a)
        }\n@b ${at(b)}\n`;
      const r = recorders("default", "a", "b");
      let write = (_a2: string, _api: string) => {};
      await withSni({
        plain: r.specs,
        options: () => [],
        channels: () => [],
        args: ({ port, plain }) => {
          write = (a2, api) => writeFileSync(file, text(port, plain, a2, api));
          write("a", "b");
          return ["-F", file];
        },
      }, async ({ port, lb, env }) => {
        const open = (await greeted(port, helloA, { close: false })).client;
        const openPort = open.socket.localPort;
        assert.equal(open.received().toString().split("\n")[0], "a");
        assert.equal((await greeted(port, helloB)).who, "b");
        // Moved: a.test to @b, *.api.test to @a.
        write("b", "a");
        assert.equal(await control(port, "reload", env), "reloaded\n");
        assert.equal((await greeted(port, helloA)).who, "b", "a.test now goes to @b");
        assert.equal((await greeted(port, helloB)).who, "a", "*.api.test now goes to @a");
        // The open connection is still with a, and still carries bytes both ways.
        const before = open.received().length;
        open.socket.write("still here\n");
        await open.waitFor((d) => d.subarray(before).toString() === "still here\n", 15_000);
        assert.ok(
          (await recorded(r.conns.a, 0, helloA.length + 11)).equals(
            Buffer.concat([helloA, Buffer.from("still here\n")]),
          ),
        );
        // A reload that names no such service fails and changes nothing.
        write("nope", "a");
        const failed = await runBalance(["-c", "reload", String(port)], { env });
        assert.equal(failed.code, 65, failed.stdout + failed.stderr);
        assert.match(failed.stdout, /reload failed: .*unknown service '@nope'/);
        assert.equal((await greeted(port, helloA)).who, "b", "the running routes stay");
        // SIGHUP moves them back.
        write("a", "b");
        const reloads = () => lb.stderr().split("reloaded ").length;
        const seen = reloads();
        process.kill(lb.child.pid!, "SIGHUP");
        await until(reloads, (n) => n > seen, "the SIGHUP reload");
        assert.equal((await greeted(port, helloA)).who, "a");
        assert.equal((await greeted(port, helloB)).who, "b");
        open.socket.end();
        await open.ended();
        const lines = await loggedConnections(lb, 7);
        const first = lines.find((l) => l.includes(`connection 127.0.0.1:${openPort} `));
        assert.match(first ?? "", / -> @a group 1 channel 0 \(.*\): .* client-closed sni=a\.test$/, lines.join("\n"));
        assert.deepEqual(accepted(r.conns), { default: 0, a: 3, b: 4 });
        assert.deepEqual((await status(port, env)).map((row) => [row.service, row.totalc]), [["", 0], ["a", 3], [
          "b",
          4,
        ]]);
      });
    }),
);

/** How many clients each worker accepted, from the `-d` traces. */
const acceptedBy = (lb: Running) =>
  [0, 1].map((w) => lb.stderr().split("\n").filter((l) => l.includes(`worker ${w}: accepted`)).length);

test(
  "sni: -w 2 routes every name to its backend whichever thread accepts",
  { skip, timeoutMs: 120_000 },
  () =>
    withSni({
      tls: THREE,
      options: () => ["-w", "2", "--sni", "a.test=@a", "--sni", "*.api.test=@b"],
      channels: ({ tls: [d, a, b] }) => [at(d), "@a", at(a), "@b", at(b)],
      ready: "in 2 thread(s)",
    }, async ({ port, lb, env }) => {
      const names: [string, string, string][] = [
        ["a.test", "a", "a.test"],
        ["b.api.test", "b", "b.api.test"],
        ["other.test", "default", "default.test"],
      ];
      const rounds = 8;
      for (let round = 0; round < rounds; round++) {
        const got = await Promise.all(names.map(([name]) => curlGet(name, port)));
        got.forEach((r, i) => assertServed(r, names[i][1], names[i][2], `round ${round}: curl ${names[i][0]}`));
      }
      assertServed(await sClientGet("A.TEST.", port), "a", "a.test", "openssl s_client");
      const [w0, w1] = await until(() => acceptedBy(lb), ([x, y]) => x + y === 3 * rounds + 1, "accepted traces");
      assert.ok(w0 > 0 && w1 > 0, `both workers accepted (${w0}, ${w1})`);
      assert.deepEqual((await status(port, env)).map((row) => [row.service, row.totalc]), [
        ["", rounds],
        ["a", rounds + 1],
        ["b", rounds],
      ]);
    }),
);

test(
  "sni: failover and hashing stay inside a service; a service with no channel left closes its clients, never sending them elsewhere",
  {
    skip,
    timeoutMs: 90_000,
  },
  async () => {
    const helloA = await hello("-servername", "a.test");
    const helloB = await hello("-servername", "b.api.test");
    const helloC = await hello("-servername", "c.test");
    const [dead1, dead2, dead3] = [await freePort(), await freePort(), await freePort()];
    const r = recorders("default", "a1", "a2");
    await withSni({
      plain: r.specs,
      options: () => ["--sni", "a.test=@a", "--sni", "b.api.test=@b", "--sni", "c.test=@c"],
      channels: ({ plain: [d, a1, a2] }) => [
        at(d),
        ...["@a", `127.0.0.1:${dead1}`, "%", at(a1), at(a2), "%"],
        ...["@b", `127.0.0.1:${dead2}`, "!", `127.0.0.1:${dead3}`],
        // @c's one channel is the default service's backend, disabled: never to be used.
        ...["@c", `${at(d)}:0:1:dis`],
      ],
    }, async ({ port, lb, env, metricsPort }) => {
      // @a: its first (Hash) group is dead; its second, a Hash group, picks by client address.
      const picks = new Map<string, string>();
      for (let i = 2; i < 18; i++) {
        const from = `127.0.0.${i}`;
        const first = (await greeted(port, helloA, { localAddress: from })).who;
        const again = (await greeted(port, helloA, { localAddress: from })).who;
        assert.ok(first === "a1" || first === "a2", `${from}: ${first}`);
        assert.equal(again, first, `${from}: the same channel twice`);
        picks.set(from, first);
      }
      assert.deepEqual(new Set(picks.values()), new Set(["a1", "a2"]), "the hash spreads addresses over both");
      assert.ok(
        lb.stderr().includes(`connect to @a group 1 channel 0 (127.0.0.1:${dead1}) failed`),
        "failover from @a's dead group",
      );
      // @b: every channel dead; @c: its only channel disabled. Closed, sent nowhere else.
      assert.equal((await greeted(port, helloB)).who, "closed");
      assert.equal((await greeted(port, helloC)).who, "closed");
      assert.deepEqual(accepted(r.conns), { default: 0, a1: count(picks, "a1") * 2, a2: count(picks, "a2") * 2 });
      const lines = await loggedConnections(lb, 2 * 16 + 2);
      assert.match(
        lines.find((l) => l.endsWith(" sni=b.api.test")) ?? "",
        / -> none: .* connect-failed sni=b\.api\.test$/,
      );
      assert.match(lines.find((l) => l.endsWith(" sni=c.test")) ?? "", / -> none: .* no-channel sni=c\.test$/);
      const rows = await status(port, env);
      assert.deepEqual(
        rows.map((row) => [row.service, row.group, row.type, row.totalc]),
        [
          ["", 0, "RR", 0],
          ["a", 1, "Hash", 0],
          ["a", 2, "Hash", 2 * count(picks, "a1")],
          ["a", 2, "Hash", 2 * count(picks, "a2")],
          ["b", 3, "RR", 0],
          ["b", 4, "RR", 0],
          ["c", 5, "RR", 0],
        ],
      );
      const text = await scrape(metricsPort);
      assert.match(
        text,
        new RegExp(
          `^balance_channel_connect_failures_total\\{service="b",group="4",channel="0",address="127\\.0\\.0\\.1:${dead3}"\\} 1$`,
          "m",
        ),
      );
    });
  },
);

/** How many values of `m` are `v`. */
const count = (m: Map<string, string>, v: string) => [...m.values()].filter((x) => x === v).length;

test("sni: a client --deny refuses is closed at accept: denied, not sni-refused, and no channel sees it", {
  skip,
}, async () => {
  const helloA = await hello("-servername", "a.test");
  const r = recorders("default", "a");
  await withSni({
    plain: r.specs,
    options: () => ["--deny", "127.0.0.5", "--sni", "a.test=@a"],
    channels: ({ plain: [d, a] }) => [at(d), "@a", at(a)],
  }, async ({ port, lb, metricsPort }) => {
    assert.equal((await greeted(port, helloA, { localAddress: "127.0.0.5" })).who, "closed");
    assert.equal((await greeted(port, helloA, { localAddress: "127.0.0.6" })).who, "a");
    assert.equal(await metric(metricsPort, "balance_clients_denied_total"), 1);
    assert.equal(await sniRefused(metricsPort), 0);
    const lines = await loggedConnections(lb, 2);
    assert.match(
      lines.find((l) => l.includes("connection 127.0.0.5:")) ?? "",
      / -> none: .* denied$/,
      lines.join("\n"),
    );
    assert.deepEqual(accepted(r.conns), { default: 0, a: 1 });
  });
});

test("sni: a reload can add --sni to a balancer that had none (hellos are read from then on) and take it away", {
  skip,
}, () =>
  withTempDir("balance-sni-", async (dir) => {
    const helloA = await hello("-servername", "a.test");
    const file = join(dir, "sni.conf");
    const r = recorders("default", "a");
    let write = (_sni: boolean) => {};
    await withSni({
      plain: r.specs,
      options: () => [],
      channels: () => [],
      args: ({ port, plain: [d, a] }) => {
        write = (sni) => writeFileSync(file, `${sni ? "--sni a.test=@a\n" : ""}${port}\n${at(d)}\n@a ${at(a)}\n`);
        write(false);
        return ["-F", file];
      },
    }, async ({ port, lb, env }) => {
      // Without --sni nothing is read ahead: a silent client is connected and greeted at once.
      assert.equal((await greeted(port, Buffer.alloc(0))).who, "default");
      assert.equal((await greeted(port, helloA)).who, "default", "@a takes no client without --sni");
      write(true);
      assert.equal(await control(port, "reload", env), "reloaded\n");
      assert.equal((await greeted(port, helloA)).who, "a");
      write(false);
      const reloads = () => lb.stderr().split("reloaded ").length;
      const seen = reloads();
      process.kill(lb.child.pid!, "SIGHUP");
      await until(reloads, (n) => n > seen, "the SIGHUP reload");
      assert.equal((await greeted(port, helloA)).who, "default");
      assert.equal((await greeted(port, Buffer.alloc(0))).who, "default");
      assert.deepEqual(accepted(r.conns), { default: 4, a: 1 });
    });
  }));

test("sni: unknown services, malformed patterns, --sni-default without --sni, a service given twice or empty exit 64 with one line", async () => {
  const port = String(await freePort());
  const channels = [port, "127.0.0.1:1", "@a", "127.0.0.1:2", "@b", "127.0.0.1:3"];
  const cases: [string[], string][] = [
    [["--sni", "a.test=@x", ...channels], "unknown service '@x' in --sni 'a.test=@x': no channel word declares it"],
    [
      ["--sni", "a.test=@a", "--sni-default", "@x", ...channels],
      "unknown service '@x' in --sni-default: no channel word declares it",
    ],
    [["--sni", "a.test", ...channels], "invalid --sni 'a.test': must be PATTERN=@NAME"],
    [["--sni", "a.test=a", ...channels], "invalid --sni 'a.test=a': must be PATTERN=@NAME"],
    [["--sni", "=@a", ...channels], "invalid --sni '=@a': must be PATTERN=@NAME"],
    [
      ["--sni", "*a.test=@a", ...channels],
      "invalid --sni '*a.test=@a': '*' may only be the whole first label, as in *.example.com",
    ],
    [
      ["--sni", "a.*.test=@a", ...channels],
      "invalid --sni 'a.*.test=@a': '*' may only be the whole first label, as in *.example.com",
    ],
    [["--sni", "*=@a", ...channels], "invalid --sni '*=@a': '*' needs a suffix, as in *.example.com"],
    [["--sni", "a..test=@a", ...channels], "invalid --sni 'a..test=@a': PATTERN has an empty label"],
    [
      ["--sni", "a b.test=@a", ...channels],
      "invalid --sni 'a b.test=@a': label 'a b' is not 1-63 letters, digits, '-' or '_'",
    ],
    [
      ["--sni", `${"x".repeat(64)}.test=@a`, ...channels],
      `invalid --sni '${"x".repeat(64)}.test=@a': label '${"x".repeat(64)}' is not 1-63 letters, digits, '-' or '_'`,
    ],
    [
      ["--sni", `${"abcdefghi.".repeat(26)}test=@a`, ...channels],
      // A long word is shown cut at 80 characters.
      `invalid --sni '${"abcdefghi.".repeat(8)}...': PATTERN is longer than 253 characters`,
    ],
    [
      ["--sni", "a.test=@", ...channels],
      "invalid --sni 'a.test=@': NAME must be 1-64 letters, digits, '-', '_' or '.'",
    ],
    [["--sni", "a.test=@a", "--sni", "A.TEST.=@b", ...channels], "--sni pattern 'a.test' given twice"],
    [["--sni-default", "@a", ...channels], "option --sni-default needs --sni"],
    [["--sni", "a.test=@a", "--sni-default", "a", ...channels], "invalid --sni-default 'a': must be @NAME"],
    [[port, "127.0.0.1:1", "@a", "127.0.0.1:2", "@a", "127.0.0.1:3"], "service '@a' given twice"],
    [[port, "127.0.0.1:1", "@a", "@b", "127.0.0.1:3"], "service '@a' has no channel"],
    [[port, "127.0.0.1:1", "@a"], "service '@a' has no channel"],
    [[port, "127.0.0.1:1", "@", "127.0.0.1:2"], "invalid service '@': must be @NAME (letters, digits, '-', '_', '.')"],
    [
      [port, "127.0.0.1:1", "@a/b", "127.0.0.1:2"],
      "invalid service '@a/b': must be @NAME (letters, digits, '-', '_', '.')",
    ],
  ];
  for (const [args, message] of cases) {
    for (const mode of ["--check-config", "-f"]) {
      const r = await runBalance([mode, ...args]);
      assert.deepEqual(
        [r.code, r.stdout, r.stderr],
        [64, "", `balance: ${message}\nTry 'balance --help'.\n`],
        `${mode} ${args.join(" ")}`,
      );
    }
  }
  // And what is right passes.
  const ok = await runBalance([
    "--check-config",
    "--sni",
    "*.A.test.=@a",
    "--sni",
    "a.test=@b",
    "--sni-default",
    "@b",
    ...channels,
  ]);
  assert.deepEqual([ok.code, ok.stderr], [0, ""]);
});
