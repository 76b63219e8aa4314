/**
 * `--log-connections`: every way a connection can end, produced for real,
 * gives its line with the exact client address, port and byte counts; the
 * bytes a client sends never reach the log; workers' lines reach it too.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import type * as net from "node:net";
import { type Backend, type Behaviour, type Client, connect, freePort } from "../support/net.ts";
import { type Running, withBalancer } from "../support/balance.ts";
import { within } from "../support/wait.ts";

/** One parsed `connection …` log line. */
interface Line {
  clientPort: number;
  /** `group G channel N (address:port)`, or `none`. */
  channel: string;
  connectMs?: number;
  seconds: number;
  sent: number;
  rcvd: number;
  reason: string;
}

const LINE =
  /balance INF: connection 127\.0\.0\.1:(\d+) -> (none|group \d+ channel \d+ \([^)]*\)): (?:connect ([\d.]+) ms, )?([\d.]+) s, (\d+) bytes sent, (\d+) rcvd, ([a-z-]+)$/;

function lines(lb: Running): Line[] {
  return lb.stderr().split("\n").flatMap((text) => {
    const m = LINE.exec(text);
    return m
      ? [{
        clientPort: Number(m[1]),
        channel: m[2],
        connectMs: m[3] === undefined ? undefined : Number(m[3]),
        seconds: Number(m[4]),
        sent: Number(m[5]),
        rcvd: Number(m[6]),
        reason: m[7],
      }]
      : [];
  });
}

/** The line of the client that connected from `clientPort`, once it is logged. */
async function lineOf(lb: Running, clientPort: number, ms = 10_000): Promise<Line> {
  await lb.waitForTrace(new RegExp(`connection 127\\.0\\.0\\.1:${clientPort} -> .*\\n`), ms);
  const found = lines(lb).filter((l) => l.clientPort === clientPort);
  assert.equal(found.length, 1, `one line for client port ${clientPort} in:\n${lb.stderr()}`);
  return found[0];
}

/**
 * balance `--log-connections` (without `-d`: what production logs) in
 * front of one backend with `behaviour`, plus `options`.
 */
function withLogged(
  behaviour: Behaviour | undefined,
  options: string[],
  fn: (ctx: { port: number; lb: Running; channel: string }) => Promise<void>,
) {
  return withBalancer(
    {
      backends: [{ name: "a", behaviour }],
      options: ["--log-connections", ...options],
      channels: ([a]) => [`127.0.0.1:${a.port}`],
      debug: false,
    },
    ({ port, lb, backends: [a] }) => fn({ port, lb, channel: `group 0 channel 0 (127.0.0.1:${a.port})` }),
  );
}

const greeted = (c: Client) => c.waitFor((d) => d.toString().startsWith("a\n"));

// What a client sends that must never be logged: a marker and terminal escapes.
const PAYLOAD = "SECRET-PAYLOAD \x1b[2J\r\n";

for (const workers of [[], ["-w", "2"]]) {
  const w = workers.length ? " (-w 2)" : "";

  test(`connection log${w}: client FIN: client-closed, exact port and bytes, the payload is not logged`, () =>
    withLogged(undefined, workers, async ({ port, lb, channel }) => {
      const c = await connect(port);
      const from = c.socket.localPort!;
      await greeted(c);
      c.socket.write(PAYLOAD);
      await c.waitFor((d) => d.toString() === `a\n${PAYLOAD}`);
      c.socket.end();
      await c.ended();
      const line = await lineOf(lb, from);
      assert.equal(line.channel, channel);
      assert.equal(line.reason, "client-closed");
      assert.equal(line.sent, Buffer.byteLength(PAYLOAD));
      assert.equal(line.rcvd, 2 + Buffer.byteLength(PAYLOAD));
      assert.ok(line.connectMs !== undefined && line.connectMs >= 0 && line.connectMs < 1000, `${line.connectMs}`);
      assert.ok(line.seconds >= 0 && line.seconds < 10, `${line.seconds}`);
      assert.ok(!lb.stderr().includes("SECRET"), "client bytes never reach the log");
    }));

  test(`connection log${w}: shutdown: a connection open when the grace period ends`, () =>
    withLogged(undefined, [...workers, "--grace", "1"], async ({ port, lb, channel }) => {
      const c = await connect(port);
      const from = c.socket.localPort!;
      await greeted(c);
      c.socket.write("xyz");
      await c.waitFor((d) => d.toString() === "a\nxyz");
      assert.equal(await lb.stop(), 0);
      const line = await lineOf(lb, from, 2000);
      assert.deepEqual([line.channel, line.reason, line.sent, line.rcvd], [channel, "shutdown", 3, 5]);
      assert.ok(line.seconds >= 1, `open through the grace period: ${line.seconds} s`);
      await c.ended();
    }));
}

test("connection log: server FIN: server-closed", () =>
  withLogged((s) => s.end("bye\n"), [], async ({ port, lb, channel }) => {
    const c = await connect(port);
    const from = c.socket.localPort!;
    assert.equal((await c.ended()).toString(), "bye\n");
    c.socket.end("late");
    const line = await lineOf(lb, from);
    assert.deepEqual([line.channel, line.reason, line.sent, line.rcvd], [channel, "server-closed", 4, 4]);
  }));

test("connection log: client reset: client-reset", () =>
  withLogged(undefined, [], async ({ port, lb }) => {
    const c = await connect(port);
    const from = c.socket.localPort!;
    await greeted(c);
    c.socket.resetAndDestroy();
    const line = await lineOf(lb, from);
    assert.deepEqual([line.reason, line.sent, line.rcvd], ["client-reset", 0, 2]);
  }));

test("connection log: server reset: server-reset", () =>
  withLogged(
    (s: net.Socket) => {
      s.write("a\n");
      s.once("data", () => s.resetAndDestroy());
    },
    [],
    async ({ port, lb }) => {
      const c = await connect(port);
      const from = c.socket.localPort!;
      await greeted(c);
      c.socket.write("go");
      // The reset reaches the client as a close (a FIN or a reset).
      await c.ended().catch(() => {});
      const line = await lineOf(lb, from);
      assert.deepEqual([line.reason, line.sent, line.rcvd], ["server-reset", 2, 2]);
    },
  ));

test("connection log: -T 1 idle timeout: idle-timeout", () =>
  withLogged(undefined, ["-T", "1"], async ({ port, lb }) => {
    const c = await connect(port);
    const from = c.socket.localPort!;
    await greeted(c);
    await c.ended(5000);
    const line = await lineOf(lb, from);
    assert.equal(line.reason, "idle-timeout");
    assert.ok(line.seconds >= 1 && line.seconds < 4, `${line.seconds} s`);
  }));

test("connection log: a refused connect: connect-failed, no channel named", async () => {
  const refused = await freePort();
  const setup = { options: ["--log-connections"], channels: () => [`127.0.0.1:${refused}`], debug: false };
  await withBalancer(setup, async ({ port, lb }) => {
    const c = await connect(port);
    const from = c.socket.localPort!;
    c.socket.write(PAYLOAD);
    // A FIN, or a reset when the payload was still unread as balance closed
    // the client (the kernel's answer to that, as for balance 3.54).
    await c.ended().catch((err) => assert.match(String(err), /closed without FIN/));
    const line = await lineOf(lb, from);
    assert.deepEqual([line.channel, line.connectMs, line.reason, line.sent, line.rcvd], [
      "none",
      undefined,
      "connect-failed",
      0,
      0,
    ]);
    assert.ok(!lb.stderr().includes("SECRET"), "client bytes never reach the log");
  });
});

test("connection log: every channel disabled: no-channel", async () => {
  const setup = {
    backends: ["a"],
    options: ["--log-connections"],
    channels: ([a]: Backend[]) => [`127.0.0.1:${a.port}:0:1:dis`],
    debug: false,
  };
  await withBalancer(setup, async ({ port, lb, backends: [backend] }) => {
    const c = await connect(port);
    const from = c.socket.localPort!;
    await c.ended();
    const line = await lineOf(lb, from);
    assert.deepEqual([line.channel, line.reason, line.sent, line.rcvd], ["none", "no-channel", 0, 0]);
    assert.equal(backend.peers.length, 0, "no channel was tried");
  });
});

test("connection log: without --log-connections no connection line is logged", async () => {
  await withBalancer({ backends: ["a"], debug: false }, async ({ port, lb }) => {
    const c = await connect(port);
    await greeted(c);
    c.socket.end();
    await c.ended();
    await lb.stop();
    await within(lb.exited, 1000, "the exit");
    assert.doesNotMatch(lb.stderr(), /connection 127\.0\.0\.1:/);
  });
});
