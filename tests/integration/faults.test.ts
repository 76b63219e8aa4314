/**
 * Faults injected for real: backends that reset, die mid-transfer; clients
 * that reset, alone and 500 at once; a descriptor limit far below the load.
 * After each the balancer still serves and its counters are exact.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as net from "node:net";
import { spawn } from "node:child_process";
import { type Backend, connect, freePort, startBackend, whoAnswers } from "../support/net.ts";
import { balanceCommand, runBalance, type Running, startBalance } from "../support/balance.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Status {
  c: number;
  totalc: number;
  sent: number;
  rcvd: number;
}

async function withFaultyBackend(
  behaviour: (s: net.Socket) => void,
  fn: (ctx: { port: number; lb: Running; status(): Promise<Status[]>; healthy: Backend }) => Promise<void>,
  command?: string[],
) {
  const dir = mkdtempSync(join(tmpdir(), "balance-faults-"));
  const env = { BALANCE_CONTROL_DIR: dir };
  const faulty = await startBackend("faulty", (s) => behaviour(s));
  const healthy = await startBackend("healthy");
  const port = await freePort();
  const lb = await startBalance([String(port), `127.0.0.1:${faulty.port}`, "!", `127.0.0.1:${healthy.port}`], port, {
    env,
    command,
  });
  const status = async () => JSON.parse((await runBalance(["-c", "show --json", String(port)], { env })).stdout);
  try {
    await fn({ port, lb, status, healthy });
  } finally {
    await lb.stop();
    await faulty.close();
    await healthy.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Waits until the faulty channel's `c` is 0 again. */
async function drained(status: () => Promise<Status[]>): Promise<Status[]> {
  for (let i = 0; i < 100; i++) {
    const s = await status();
    if (s[0].c === 0) return s;
    await sleep(50);
  }
  return status();
}

test("faults: a backend that accepts then resets: the client sees the close, c returns to 0", () =>
  withFaultyBackend((s) => s.resetAndDestroy(), async ({ port, status }) => {
    // (A reset that beats the connect's completion counts as a failed
    // connect and fails over instead: both end with c = 0.)
    const c = await connect(port);
    await Promise.race([c.ended, c.closed]);
    c.socket.destroy();
    const s = await drained(status);
    assert.equal(s[0].c, 0);
    assert.equal(s[1].c, 0);
  }));

test("faults: a backend that dies mid-transfer: the client gets what was sent, then the close; counters exact", () =>
  withFaultyBackend((s) => {
    s.write(Buffer.alloc(100_000, 1));
    setTimeout(() => s.destroy(), 100);
  }, async ({ port, status }) => {
    const c = await connect(port);
    const got = await c.ended;
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
    await serverClosed;
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
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "balance-ulimit-"));
  const cmd = balanceCommand().map((a) => `'${a}'`).join(" ");
  const lb = await startBalance([String(port), `127.0.0.1:${backend.port}`], port, {
    command: ["sh", "-c", `ulimit -n 64 && exec ${cmd} "$@"`, "balance"],
    env: { BALANCE_CONTROL_DIR: dir },
  });
  // The load comes from a separate Node process, as real clients would.
  const load = spawn("node", [
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
  const loadDone = new Promise((r) => load.on("exit", r));
  try {
    // More clients than descriptors: each takes two in the balancer.
    await sleep(2000);
    const cpuBefore = cpuTicks(lb.child.pid!);
    await sleep(2000);
    const cpuUsed = cpuTicks(lb.child.pid!) - cpuBefore;
    // Exhausted, it waits rather than spins: well under half a core.
    assert.ok(cpuUsed < 100, `balancer used ${cpuUsed} ticks of CPU in 2 s while out of descriptors`);
    const reports = lb.stderr().match(/at the limit of \d+ connections|accept failed/g)?.length ?? 0;
    assert.ok(reports >= 1 && reports <= 2, `${reports} reports in 4 s: said once, no log flood`);
    load.stdin!.end();
    await loadDone;
    // The queue drains (clients that gave up are accepted and closed), then
    // service is normal again.
    let answer = "";
    for (let i = 0; i < 50 && answer !== "ok"; i++) {
      answer = await whoAnswers(port).catch(() => "");
      if (answer !== "ok") await sleep(100);
    }
    assert.equal(answer, "ok", `serves normally once descriptors are free:\n${lb.stderr().slice(-1500)}`);
    assert.deepEqual(await Promise.all([whoAnswers(port), whoAnswers(port), whoAnswers(port)]), ["ok", "ok", "ok"]);
  } finally {
    load.kill();
    await lb.stop();
    await backend.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return Number(fields[11]) + Number(fields[12]);
}
