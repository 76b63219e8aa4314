/**
 * `--engine native` (issue 27) on its own ground: the fallback where FFI is
 * missing, descriptors after a storm of resets and refusals, a slow reader
 * under backpressure, bulk both ways (spliced, and with `-p` not), a stop
 * while the loop waits in epoll_wait, and an idle balancer's CPU. The whole integration suite runs on the engine too
 * with `BALANCE_ENGINE=native`.
 *
 * @module
 */
import { onTimeout, test } from "../support/test.ts";
import assert from "node:assert/strict";
import net from "node:net";
import process from "node:process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { spawn } from "node:child_process";
import { balanceCommand, balanceEnv, startBalance, withBalancer } from "../support/balance.ts";
import { type Backend, connect, connected, freePort, withBackends } from "../support/net.ts";
import { halfResetting, openDescriptors, storm } from "../support/storm.ts";
import { exchange, sleep, status } from "../support/helpers.ts";
import { until } from "../support/wait.ts";

const NATIVE = ["--engine", "native"];
const at = (b: Backend) => `${b.host}:${b.port}`;
const linux = process.platform === "linux" && (process.arch === "x64" || process.arch === "arm64");
const SKIP = linux ? false : "the native engine runs on Linux x86-64 and arm64 only";

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
  await withBalancer({
    backends: [halfResetting()],
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

/**
 * A stream whose every byte says where it is: byte i is i % 251 (a prime, so
 * a chunk lost, repeated or moved by any power-of-two size shows).
 */
const CYCLE = 251;
const pattern = Buffer.from(Array.from({ length: CYCLE * 4096 + CYCLE }, (_, i) => i % CYCLE));

/** The bytes of the stream from `offset`, `length` of them (at most `CYCLE * 4096`). */
function streamAt(offset: number, length: number): Buffer {
  const start = offset % CYCLE;
  return pattern.subarray(start, start + length);
}

/** Writes `size` bytes of the stream to `s` as fast as it takes them, then ends it once `before` has settled (destroys it if it failed). */
function pumpStream(s: net.Socket, size: number, before: Promise<unknown> = Promise.resolve()): void {
  const chunk = streamAt(0, CYCLE * 1024);
  let sent = 0;
  const pump = () => {
    while (sent < size) {
      const n = Math.min(chunk.length, size - sent);
      sent += n;
      if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void s.once("drain", pump);
    }
    before.then(() => s.end(), () => s.destroy());
  };
  pump();
}

/** Reads `s` to its end: how many bytes, and whether they were the stream's, in order. */
function readStream(s: net.Socket): Promise<{ got: number; intact: boolean }> {
  let got = 0;
  let intact = true;
  return new Promise((resolve, reject) => {
    s.on("data", (d: Buffer) => {
      for (let i = 0; i < d.length && intact; i += CYCLE * 4096) {
        const piece = d.subarray(i, i + CYCLE * 4096);
        intact = piece.equals(streamAt(got + i, piece.length));
      }
      got += d.length;
    });
    s.on("end", () => resolve({ got, intact }));
    s.on("error", reject);
  });
}

test("native: a slow reader of 1 GiB: its channel is not read ahead, memory stays bounded, every byte arrives", {
  skip: SKIP,
  timeoutMs: 180_000,
}, async () => {
  const SIZE = 1024 * 1024 * 1024;
  await withBalancer({
    backends: [{ name: "firehose", behaviour: (s) => pumpStream(s, SIZE) }],
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
      const read = readStream(c);
      c.resume();
      const { got, intact } = await read;
      c.destroy();
      assert.equal(got, SIZE);
      assert.ok(intact, "every byte as sent, in order");
      assert.ok(stalled - before < 16 * 1024, `RSS grew ${stalled - before} KiB while the reader stalled`);
      assert.ok(peak - before < 64 * 1024, `RSS grew ${peak - before} KiB at its peak`);
    } finally {
      clearInterval(sampler);
    }
  });
});

// Bulk goes through the thread's one pipe (splice) unless something looks at
// the bytes: several connections at once, both ways, share it without
// mixing; with -p every byte is still shown.
for (const dump of [false, true]) {
  test(`native: 4 connections each sending and receiving 32 MiB at once arrive byte for byte${dump ? " (-p)" : ""}`, {
    skip: SKIP,
    timeoutMs: 120_000,
  }, async () => {
    // -p writes each byte as text: a smaller transfer, still many full reads.
    const SIZE = dump ? 256 * 1024 : 32 * 1024 * 1024;
    await withBalancer({
      backends: [{
        name: "both-ways",
        // Its answer ends only once the client's stream has all come, intact: else it is cut short.
        behaviour: (s) =>
          pumpStream(
            s,
            SIZE,
            readStream(s).then(({ got, intact }) =>
              assert.ok(got === SIZE && intact, `${got} bytes, intact ${intact}`)
            ),
          ),
      }],
      options: dump ? [...NATIVE, "-p"] : NATIVE,
    }, async ({ port, lb }) => {
      const results = await Promise.all(Array.from({ length: 4 }, async () => {
        const c = await connected(net.connect({ port, host: "127.0.0.1", allowHalfOpen: true }));
        const read = readStream(c);
        pumpStream(c, SIZE);
        const r = await read;
        c.destroy();
        return r;
      }));
      assert.deepEqual(results, Array(4).fill({ got: SIZE, intact: true }));
      const [row] = await status(port);
      assert.equal(row.sent, 4 * SIZE, "every client byte counted as sent");
      assert.equal(row.rcvd, 4 * SIZE, "every channel byte counted as received");
      if (dump) {
        const shown = () => {
          const total = { "->": 0, "-<": 0 };
          for (const [, way, n] of lb.stdout().matchAll(/^(->|-<) (\d+)$/gm)) total[way as "->" | "-<"] += Number(n);
          return total;
        };
        const all = { "->": 4 * SIZE, "-<": 4 * SIZE };
        await until(shown, (total) => total["->"] === all["->"] && total["-<"] === all["-<"], "-p showing every byte");
      }
    });
  });
}

// A system that refuses splice(2) (a seccomp filter, a socket it does not
// take): strace makes every splice fail with EPERM, and the engine copies.
test("native: where splice(2) is refused, one warning a thread and the bulk is copied instead, every byte arriving", {
  skip: SKIP,
  timeoutMs: 120_000,
}, async () => {
  const SIZE = 16 * 1024 * 1024;
  await withBackends([{ name: "firehose", behaviour: (s) => pumpStream(s, SIZE) }], async ([b]) => {
    const port = await freePort();
    const strace = ["strace", "-f", "--seccomp-bpf", "-qq", "-o", "/dev/null", "-e", "trace=splice"];
    const lb = await startBalance([...NATIVE, String(port), at(b)], port, {
      command: [...strace, "-e", "inject=splice:error=EPERM", ...balanceCommand()],
    });
    // SIGTERM goes to balance itself: strace keeps fatal signals from its own command.
    const pid = Number(readFileSync(`/proc/${lb.child.pid}/task/${lb.child.pid}/children`, "utf8").split(" ")[0]);
    onTimeout(() => process.kill(pid, "SIGKILL"));
    try {
      for (let i = 0; i < 2; i++) {
        const c = await connected(net.connect({ port, host: "127.0.0.1" }));
        assert.deepEqual(await readStream(c), { got: SIZE, intact: true });
        c.destroy();
      }
      // Once per thread that met it (with -w 2, "worker N: " says which).
      const warnings = lb.stderr().split("\n").filter((l) => l.includes("splice(2) refused"));
      const said = /WRN: (worker \d+: )?splice\(2\) refused \(splice failed: EPERM\): copying instead$/;
      assert.ok(warnings.length >= 1 && warnings.every((w) => said.test(w)), lb.stderr().slice(-2000));
      assert.equal(new Set(warnings.map((w) => said.exec(w)![1])).size, warnings.length, "once per thread");
    } finally {
      process.kill(pid, "SIGTERM");
      assert.equal(await lb.exited, 0);
    }
  });
});

// TCP's urgent byte (telnet's interrupt, an FTP client's ABOR) stops a read
// short at its mark and a splice at it for good: the rest of a bulk stream
// must still come, the urgent byte itself dropped, as the runtimes' sockets do.
test("native: urgent data in the middle of a bulk stream: every byte around it arrives, both ways", {
  skip: SKIP,
  timeoutMs: 60_000,
}, async () => {
  const MIB = 1024 * 1024;
  // Sends 1 MiB of A, an urgent !, 1 MiB of B and closes; or, as "sink", counts what it gets.
  const python = (role: string, port: number) =>
    spawn("python3", [
      "-c",
      [
        "import socket, sys, time",
        "role, port = sys.argv[1], int(sys.argv[2])",
        "def send(c):",
        "    c.sendall(b'A' * (1 << 20)); c.send(b'!', socket.MSG_OOB); time.sleep(0.05); c.sendall(b'B' * (1 << 20))",
        "if role == 'server':",
        "    s = socket.socket(); s.bind(('127.0.0.1', port)); s.listen(4); print('ready', flush=True)",
        "    while True:",
        "        c, _ = s.accept(); send(c); c.close()",
        "c = socket.create_connection(('127.0.0.1', port)); send(c); c.shutdown(socket.SHUT_WR)",
        "print(len(c.recv(100)), flush=True)",
      ].join("\n"),
      role,
      String(port),
    ], { stdio: ["ignore", "pipe", "inherit"] });
  const backendPort = await freePort();
  const server = python("server", backendPort);
  onTimeout(() => server.kill("SIGKILL"));
  try {
    await new Promise((resolve) => server.stdout!.once("data", resolve));
    const sunk: Buffer[] = [];
    await withBackends([{
      name: "sink",
      behaviour: (s) => {
        s.on("data", (d: Buffer) => sunk.push(d));
        s.on("end", () => s.end("ok"));
      },
    }], async ([sink]) => {
      const port = await freePort();
      const lb = await startBalance([...NATIVE, String(port), `127.0.0.1:${backendPort}`], port);
      const up = await freePort();
      const lbUp = await startBalance([...NATIVE, String(up), at(sink)], up);
      try {
        const c = await connected(net.connect({ port, host: "127.0.0.1" }));
        const got: Buffer[] = [];
        await new Promise<void>((resolve, reject) => {
          c.on("data", (d: Buffer) => got.push(d));
          c.on("end", () => resolve());
          c.on("error", reject);
        });
        c.destroy();
        const down = Buffer.concat(got).toString("latin1");
        assert.equal(down, "A".repeat(MIB) + "B".repeat(MIB), `${down.length} bytes down`);
        const client = python("client", up);
        onTimeout(() => client.kill("SIGKILL"));
        const answered = await new Promise((resolve) => client.stdout!.once("data", (d) => resolve(String(d).trim())));
        assert.equal(answered, "2", "the sink's answer came back");
        assert.equal(Buffer.concat(sunk).toString("latin1"), "A".repeat(MIB) + "B".repeat(MIB), "every byte up");
      } finally {
        await lb.stop();
        await lbUp.stop();
      }
    });
  } finally {
    server.kill("SIGKILL");
  }
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
