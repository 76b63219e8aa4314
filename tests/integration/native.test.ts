/**
 * `--engine native` (issue 27) on its own ground: the fallback where FFI is
 * missing, descriptors after a storm of resets and refusals, a slow reader
 * under backpressure, a stop while the loop waits in epoll_wait, and an
 * idle balancer's CPU. The whole integration suite runs on the engine too
 * with `BALANCE_ENGINE=native`.
 *
 * @module
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import net from "node:net";
import process from "node:process";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { balanceEnv, startBalance, withBalancer } from "../support/balance.ts";
import { type Backend, connect, connected, freePort } from "../support/net.ts";
import { exchange, sleep, status } from "../support/helpers.ts";

const NATIVE = ["--engine", "native"];
const at = (b: Backend) => `${b.host}:${b.port}`;
const linux = process.platform === "linux" && (process.arch === "x64" || process.arch === "arm64");
const SKIP = linux ? false : "the native engine runs on Linux x86-64 and arm64 only";

function openDescriptors(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]);
}

// User and system CPU of `pid` so far, in clock ticks (100 a second on Linux).
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

test("native: where FFI is not allowed (Deno without --allow-ffi), one info line and the runtime's sockets serve", {
  skip: SKIP,
}, async () => {
  const port = await freePort();
  const main = fileURLToPath(import.meta.resolve("../../src/main.ts"));
  const deno = process.execPath.includes("deno") ? process.execPath : "deno";
  const lb = await startBalance(
    [...NATIVE, String(port), "127.0.0.1:1"],
    port,
    { command: [deno, "run", "--allow-all", "--deny-ffi", "--unstable-net", main], env: { BALANCE_ENGINE: "" } },
  );
  try {
    const lines = lb.stderr().split("\n");
    const fallback = lines.filter((l) => l.includes("--engine native:"));
    assert.equal(fallback.length, 1, lb.stderr());
    assert.match(fallback[0], / INF: --engine native: no FFI to libc \(.+\); the runtime's sockets serve TCP$/);
    assert.match(lb.stderr(), /in \d+ thread\(s\), runtime engine, 1 group\(s\)/);
    assert.deepEqual((await status(port)).map((r) => r.engine), ["runtime"]);
  } finally {
    assert.equal(await lb.stop(), 0);
  }
});

test("native: the start line, show --json and /status say the native engine runs", { skip: SKIP }, async () => {
  const metrics = await freePort();
  await withBalancer({
    backends: ["a"],
    options: [...NATIVE, "--metrics", `127.0.0.1:${metrics}`],
    controlDir: true,
  }, async ({ port, lb, env }) => {
    assert.match(lb.stderr(), /in \d+ thread\(s\), native engine, 1 group\(s\)/);
    assert.equal(await exchange(port, "ping"), "a");
    assert.deepEqual((await status(port, env)).map((r) => r.engine), ["native"]);
    const body = await (await fetch(`http://127.0.0.1:${metrics}/status`)).json();
    assert.deepEqual(body.map((r: { engine: string }) => r.engine), ["native"]);
  });
});

// Clients that reset, channels that refuse, channels that reset: each
// costs descriptors for a moment, and every one must be given back.
test("native: after 2,000 connections with resets and refusals the open descriptors return to the baseline", {
  skip: SKIP,
  timeoutMs: 90_000,
}, async () => {
  const refused = await freePort();
  let accepted = 0;
  await withBalancer({
    backends: [{
      name: "half-rst",
      behaviour: (s) => {
        // Every other connection is reset by the channel at once; the others echo.
        if (accepted++ % 2 === 0) s.resetAndDestroy();
        else s.pipe(s);
      },
    }],
    options: [...NATIVE, "-t", "2"],
    channels: ([b]) => [`127.0.0.1:${refused}`, "!", at(b)],
  }, async ({ port, lb }) => {
    const pid = lb.child.pid!;
    for (let i = 0; i < 6; i++) await storm(port, i % 3);
    await sleep(200);
    const baseline = openDescriptors(pid);
    const TOTAL = 2000;
    const BATCH = 50;
    for (let done = 0; done < TOTAL; done += BATCH) {
      await Promise.all(Array.from({ length: BATCH }, (_, i) => storm(port, (done + i) % 3)));
    }
    let now = openDescriptors(pid);
    for (let tries = 0; tries < 100 && now > baseline; tries++) {
      await sleep(50);
      now = openDescriptors(pid);
    }
    assert.equal(now, baseline, `descriptors: ${now} now, ${baseline} before the storm`);
  });
});

// One client of the storm: 0 resets right after sending, 1 sends and reads
// the echo (or the channel's reset), 2 connects and leaves at once.
function storm(port: number, kind: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: "127.0.0.1" });
    const done = () => resolve();
    const limit = setTimeout(() => (s.destroy(), done()), 5000);
    s.on("error", () => {});
    s.on("close", () => (clearTimeout(limit), done()));
    s.on("connect", () => {
      if (kind === 0) s.write("x", () => s.resetAndDestroy());
      else if (kind === 1) s.end("ping");
      else s.destroy();
    });
    s.on("data", () => {});
  });
}

test("native: a slow reader of 256 MiB: its channel is not read ahead, memory stays bounded, every byte arrives", {
  skip: SKIP,
  timeoutMs: 120_000,
}, async () => {
  const SIZE = 256 * 1024 * 1024;
  const chunk = Buffer.alloc(256 * 1024, 7);
  const sevens = Buffer.alloc(1024 * 1024, 7);
  await withBalancer({
    backends: [{
      name: "firehose",
      behaviour: (s) => {
        let sent = 0;
        const pump = () => {
          while (sent < SIZE) {
            sent += chunk.length;
            if (!s.write(chunk)) return void s.once("drain", pump);
          }
          s.end();
        };
        pump();
      },
    }],
    options: NATIVE,
  }, async ({ port, lb }) => {
    const pid = lb.child.pid!;
    const before = rssKiB(pid);
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, rssKiB(pid))), 50);
    try {
      const c = await connected(net.connect({ port, host: "127.0.0.1" }));
      c.pause();
      // The reader stalls: the channel fills the kernel's buffers, then balance stops reading it.
      await sleep(1500);
      const stalled = rssKiB(pid);
      let got = 0;
      let intact = true;
      const ended = new Promise<void>((resolve, reject) => {
        c.on("data", (d: Buffer) => {
          got += d.length;
          intact &&= d.length <= sevens.length && d.equals(sevens.subarray(0, d.length));
        });
        c.on("end", () => resolve());
        c.on("error", reject);
      });
      c.resume();
      await ended;
      c.destroy();
      assert.equal(got, SIZE);
      assert.ok(intact, "every byte as sent");
      assert.ok(stalled - before < 16 * 1024, `RSS grew ${stalled - before} KiB while the reader stalled`);
      assert.ok(peak - before < 64 * 1024, `RSS grew ${peak - before} KiB at its peak`);
    } finally {
      clearInterval(sampler);
    }
  });
});

for (const workers of [1, 2]) {
  test(`native: SIGTERM while ${workers} loop(s) wait in epoll_wait stops at once (-w ${workers})`, {
    skip: SKIP,
  }, async () => {
    const port = await freePort();
    const lb = await startBalance(["-w", String(workers), ...NATIVE, String(port), "127.0.0.1:1"], port, {
      env: { BALANCE_WORKERS: "" },
    });
    if (workers > 1) await lb.waitForTrace("in 2 thread(s), native engine");
    // Idle: every loop is blocked in epoll_wait now.
    await sleep(300);
    const started = performance.now();
    const code = await lb.stop();
    const took = performance.now() - started;
    assert.equal(code, 0, lb.stderr());
    assert.match(lb.stderr(), /exiting, 0 connection\(s\) closed/);
    assert.ok(took < 3000, `stopped after ${Math.round(took)} ms`);
  });
}

test("native: an idle balancer does not burn CPU (under 3% of a core over 3 s)", { skip: SKIP }, async () => {
  const port = await freePort();
  const lb = await startBalance([...NATIVE, String(port), "127.0.0.1:1"], port, {
    env: balanceEnv({ BALANCE_WORKERS: "" }) as Record<string, string>,
  });
  try {
    await sleep(1000);
    const pid = lb.child.pid!;
    const before = cpuTicks(pid);
    await sleep(3000);
    const used = cpuTicks(pid) - before;
    assert.ok(used <= 9, `${used} ticks (1/100 s) of CPU in 3 s idle`);
  } finally {
    await lb.stop();
  }
});

// A connection that is half-closed by the client keeps its other way open
// until the channel is done: the native engine passes FINs on, as the runtime's do.
test("native: half-close both ways: the client's FIN reaches the channel, whose late answer still arrives", {
  skip: SKIP,
}, async () => {
  await withBalancer({
    backends: [{
      name: "late",
      behaviour: (s) => {
        let got = "";
        s.on("data", (d) => (got += d));
        s.on("end", () => setTimeout(() => s.end(`late answer to ${got}`), 200));
      },
    }],
    options: NATIVE,
  }, async ({ port }) => {
    const c = await connect(port);
    c.socket.end("question");
    assert.equal((await c.ended()).toString(), "late answer to question");
  });
});
