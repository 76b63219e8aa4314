/**
 * Faults injected for real: backends that reset, die mid-transfer; clients
 * that reset, alone and 500 at once; a descriptor limit far below the load.
 * After each the balancer still serves and its counters are exact.
 */
import { onTimeout, test } from "../support/test.ts";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as net from "node:net";
import { type ChildProcess, spawn } from "node:child_process";
import { type Backend, connect, freePort, startBackend, whoAnswers } from "../support/net.ts";
import { balanceCommand, type Running, startBalance, withBalancer } from "../support/balance.ts";
import { until, within } from "../support/wait.ts";
import { sleep, status } from "../support/helpers.ts";

interface Status {
  c: number;
  totalc: number;
  sent: number;
  rcvd: number;
}

/**
 * Balance, with its own control directory, in front of a backend that does
 * `behaviour` (group 0) and a healthy one (group 1).
 */
function withFaultyBackend(
  behaviour: (s: net.Socket) => void,
  fn: (ctx: { port: number; lb: Running; status(): Promise<Status[]>; healthy: Backend }) => Promise<void>,
) {
  return withBalancer({
    backends: [{ name: "faulty", behaviour: (s) => behaviour(s) }, "healthy"],
    channels: ([faulty, healthy]) => [`127.0.0.1:${faulty.port}`, "!", `127.0.0.1:${healthy.port}`],
    controlDir: true,
  }, ({ port, lb, env, backends: [, healthy] }) => fn({ port, lb, status: () => status(port, env), healthy }));
}

/** Waits (at most 10 s) until every channel's `c` is 0 again. */
const drained = (status: () => Promise<Status[]>) =>
  until(status, (s) => s.every((ch) => ch.c === 0), "every channel's c back to 0");

test("faults: a backend that accepts then resets: the client sees the close or is failed over; c returns to 0", () =>
  withFaultyBackend((s) => s.resetAndDestroy(), async ({ port, status }) => {
    // The reset either arrives after the balancer's connect completed (the
    // client is closed without data) or beats it (a failed connect: the
    // client fails over to the healthy backend, which keeps it open).
    const c = await connect(port);
    const failedOver = await c.waitFor((d) => d.toString() === "healthy\n", 10_000).then(() => true, () => false);
    if (!failedOver) {
      // Not greeted within 10 s: the client must have seen the close (FIN or reset).
      assert.ok(c.socket.readableEnded || c.socket.destroyed, "neither a close nor the healthy backend's greeting");
      assert.equal(c.received().toString(), "", "closed without data from anyone");
    }
    c.socket.destroy();
    const s = await drained(status);
    const used = failedOver ? s[1] : s[0];
    assert.equal(used.totalc, 1, `the channel ${failedOver ? "failed over to" : "that reset"} counted the client`);
  }));

test("faults: a backend that dies mid-transfer: the client gets what was sent, then the close; counters exact", () =>
  withFaultyBackend((s) => {
    s.write(Buffer.alloc(100_000, 1));
    setTimeout(() => s.destroy(), 100);
  }, async ({ port, status }) => {
    const c = await connect(port);
    const got = await c.ended();
    assert.equal(got.length, 100_000);
    c.socket.destroy();
    const s = await drained(status);
    assert.deepEqual([s[0].c, s[0].rcvd], [0, 100_000]);
  }));

test("faults: a client that resets mid-transfer: the backend sees the close, c returns to 0", () => {
  let serverClosed!: Promise<void>;
  return withFaultyBackend((s) => {
    serverClosed = new Promise((r) => {
      s.on("end", () => r());
      s.on("close", () => r());
    });
    s.on("data", () => {});
    s.write("hello\n");
  }, async ({ port, status }) => {
    const c = await connect(port);
    await c.waitFor((d) => d.toString() === "hello\n");
    c.socket.write(Buffer.alloc(50_000, 2));
    await sleep(100);
    c.socket.resetAndDestroy();
    await within(serverClosed, 10_000, "the backend to see the client's reset");
    const s = await drained(status);
    assert.deepEqual([s[0].c, s[0].totalc, s[0].sent], [0, 1, 50_000]);
  });
});

test("faults: 500 clients reset at once; the balancer serves on with exact counters", () =>
  withFaultyBackend((s) => {
    s.on("data", () => {});
    s.write("x");
  }, async ({ port, status }) => {
    const clients = await Promise.all(Array.from({ length: 500 }, () => connect(port)));
    await Promise.all(clients.map((c) => c.waitFor((d) => d.length === 1)));
    assert.equal((await status())[0].c, 500);
    for (const c of clients) c.socket.resetAndDestroy();
    const s = await drained(status);
    assert.deepEqual([s[0].c, s[0].totalc, s[0].rcvd], [0, 500, 500]);
    const after = await connect(port);
    await after.waitFor((d) => d.toString() === "x");
    after.socket.destroy();
  }));

test("faults: under ulimit -n 64 the excess waits, the log does not flood, and service resumes", async () => {
  // A backend that, like most, closes when its client has (the default of
  // a server without half-open connections).
  const backend = await startBackend("ok", (s) => {
    s.on("data", () => {});
    s.on("end", () => s.end());
    s.write("ok\n");
  });
  const dir = mkdtempSync(join(tmpdir(), "balance-ulimit-"));
  let lb: Running | undefined;
  let load: ChildProcess | undefined;
  try {
    const port = await freePort();
    const cmd = balanceCommand().map((a) => `'${a}'`).join(" ");
    lb = await startBalance([String(port), `127.0.0.1:${backend.port}`], port, {
      command: ["sh", "-c", `ulimit -n 64 && exec ${cmd} "$@"`, "balance"],
      env: { BALANCE_CONTROL_DIR: dir },
    });
    // The load comes from a separate Node process, as real clients would.
    load = spawn("node", [
      "-e",
      `
      const net = require("net");
      const clients = [];
      for (let i = 0; i < 80; i++) {
        const s = net.connect(${port}, "127.0.0.1");
        s.on("error", () => {});
        clients.push(s);
      }
      process.stdin.on("end", () => { clients.forEach((s) => s.destroy()); setTimeout(() => process.exit(0), 200); });
      process.stdin.resume();
    `,
    ], { stdio: ["pipe", "ignore", "inherit"] });
    const loader = load;
    onTimeout(() => loader.kill("SIGKILL"));
    const loadDone = new Promise((r) => loader.on("exit", r));
    // More clients than descriptors: each takes two in the balancer.
    await sleep(2000);
    const cpuBefore = cpuTicks(lb.child.pid!);
    await sleep(2000);
    const cpuUsed = cpuTicks(lb.child.pid!) - cpuBefore;
    // Exhausted, it waits rather than spins: well under half a core.
    assert.ok(cpuUsed < 100, `balancer used ${cpuUsed} ticks of CPU in 2 s while out of descriptors`);
    // The report is throttled to one line per 10 s: in these 4 s, exactly one.
    const reports = lb.stderr().match(/at the limit of \d+ connections|accept failed.*/g) ?? [];
    assert.equal(reports.length, 1, `reports in 4 s of exhaustion: ${JSON.stringify(reports)}`);
    load.stdin!.end();
    await within(loadDone, 10_000, "the load process to exit");
    // The queue drains (clients that gave up are accepted and closed), then
    // service is normal again.
    await until(() => whoAnswers(port).catch((err) => String(err)), (answer) => answer === "ok", "service again", {
      ms: 15_000,
      everyMs: 100,
    });
    assert.deepEqual(await Promise.all([whoAnswers(port), whoAnswers(port), whoAnswers(port)]), ["ok", "ok", "ok"]);
  } finally {
    load?.kill();
    await lb?.stop();
    await backend.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return Number(fields[11]) + Number(fields[12]);
}
