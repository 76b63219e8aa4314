/**
 * Soak test: mixed traffic with faults for a bounded time against the real
 * balancer, reporting errors, RSS every minute and the final counters.
 *   deno run -A scripts/soak.ts [--minutes N] [--binary PATH] [--workers N]
 * Faults injected: clients resetting mid-transfer (1 in 10) and backend b1
 * dying and coming back every 20 s. An error is "explained" only when it hit
 * a connection on b1 (or not yet greeted) while b1 died; any other is
 * unexplained and fails the run, as does a channel whose c is not back to 0
 * at the end.
 */
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as net from "node:net";
import process from "node:process";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { minutes: { type: "string", default: "5" }, binary: { type: "string" }, workers: { type: "string" } },
});
const minutes = Number(values.minutes);
if (!(minutes > 0 && minutes <= 120)) throw new Error("--minutes must be 1-120");
const ROOT = new URL("..", import.meta.url).pathname;
const command = values.binary ? [values.binary] : [process.execPath, "run", "--allow-all", join(ROOT, "src/main.ts")];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Backend {
  name: string;
  port: number;
  server?: net.Server;
  sockets: Set<net.Socket>;
  killedAt: number[];
}

function listen(b: Backend): Promise<void> {
  return new Promise((resolve) => {
    b.server = net.createServer((s) => {
      b.sockets.add(s);
      s.on("close", () => b.sockets.delete(s));
      s.on("error", () => {});
      s.write(`${b.name}\n`);
      s.pipe(s);
    });
    b.server.listen(b.port, "127.0.0.1", () => {
      b.port = (b.server!.address() as net.AddressInfo).port;
      resolve();
    });
  });
}

const backends: Backend[] = ["b1", "b2", "b3"].map((name) => ({ name, port: 0, sockets: new Set(), killedAt: [] }));
for (const b of backends) await listen(b);
const dir = mkdtempSync(join(tmpdir(), "balance-soak-"));
const env = { ...process.env, BALANCE_CONTROL_DIR: dir };
const port = await new Promise<number>((r) => {
  const s = net.createServer().listen(0, "127.0.0.1", () => {
    const p = (s.address() as net.AddressInfo).port;
    s.close(() => r(p));
  });
});
const [cmd, ...pre] = command;
const lb = spawn(cmd, [
  ...pre,
  "-f",
  ...(values.workers ? ["-w", values.workers] : []),
  "-T",
  "30",
  String(port),
  ...backends.slice(0, 2).map((b) => `127.0.0.1:${b.port}`),
  "!",
  `127.0.0.1:${backends[2].port}`,
], { env, stdio: ["ignore", "ignore", "inherit"] });
// `quiet`: while waiting for the balancer to start, "no instance" is expected.
const control = async (c: string, quiet = false) =>
  await new Promise<string>((resolve) => {
    const stderr = quiet ? "ignore" : "inherit";
    const p = spawn(cmd, [...pre, "-c", c, String(port)], { env, stdio: ["ignore", "pipe", stderr] });
    let out = "";
    p.stdout!.on("data", (d) => (out += d));
    p.on("exit", () => resolve(out));
  });
for (let i = 0; i < 100 && !(await control("version", true)).startsWith("This is"); i++) await sleep(100);
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${lb.pid}/status`, "utf8"))![1]) / 1024;

const stats = { ok: 0, resets: 0, explained: 0, unexplained: 0, bytes: 0 };

/**
 * Whether a fault was aimed at this connection: b1 died while it was open,
 * and it was b1's (or had not yet learned whose it was). Nothing else, not
 * even a failure before the first echoed byte, excuses an error.
 */
function diedUnder(backend: Backend | undefined, started: number): boolean {
  const b1 = backends[0];
  return (backend === undefined || backend === b1) && b1.killedAt.some((t) => t >= started - 100);
}

/** One client: greeting, random payload, full echo expected unless it resets on purpose. */
function client(): Promise<void> {
  return new Promise((resolve) => {
    const started = Date.now();
    const size = 1 + Math.floor(Math.random() * 256 * 1024);
    const payload = randomBytes(size);
    const resetAt = Math.random() < 0.1 ? Math.floor(size / 2) : -1;
    const s = net.connect(port, "127.0.0.1");
    let got = Buffer.alloc(0);
    let backend: Backend | undefined;
    let done = false;
    const finish = (outcome: "ok" | "reset" | "error", why = "") => {
      if (done) return;
      done = true;
      if (outcome === "ok") (stats.ok++, stats.bytes += size * 2);
      else if (outcome === "reset") stats.resets++;
      else if (diedUnder(backend, started)) stats.explained++;
      else (stats.unexplained++, console.error(`soak: unexplained: ${why}`));
      s.destroy();
      resolve();
    };
    s.on("error", () => finish("error", "socket error"));
    s.on("close", () => finish("error", `closed after ${got.length} bytes`));
    s.on("data", (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (!backend) {
        const nl = got.indexOf(10);
        if (nl < 0) return;
        backend = backends.find((b) => b.name === got.subarray(0, nl).toString());
        got = got.subarray(nl + 1);
        if (resetAt >= 0) {
          s.write(payload.subarray(0, resetAt), () => (s.resetAndDestroy(), finish("reset")));
        } else s.write(payload);
      }
      if (got.length === size) {
        const same =
          createHash("sha256").update(got).digest("hex") === createHash("sha256").update(payload).digest("hex");
        finish(same ? "ok" : "error", "echo differs");
      }
    });
    setTimeout(() => finish("error", "timed out"), 30_000);
  });
}

const start = Date.now();
const deadline = start + minutes * 60_000;
const rssByMinute: number[] = [rss()];
console.log(`soak: ${minutes} min against ${command.join(" ")}; RSS at start ${rssByMinute[0].toFixed(1)} MB`);
// Backend b1 dies every 20 s in the middle of traffic and returns 5 s later.
const killer = setInterval(() => {
  const b1 = backends[0];
  b1.killedAt.push(Date.now());
  b1.server!.close();
  for (const s of b1.sockets) s.destroy();
  setTimeout(() => listen(b1), 5000);
}, 20_000);
let nextMinute = start + 60_000;
while (Date.now() < deadline) {
  await Promise.all(Array.from({ length: 20 }, client));
  if (Date.now() >= nextMinute) {
    nextMinute += 60_000;
    rssByMinute.push(rss());
    console.log(`soak: minute ${rssByMinute.length - 1}: RSS ${rss().toFixed(1)} MB, ${JSON.stringify(stats)}`);
  }
}
clearInterval(killer);
await sleep(1000);
const table = JSON.parse(await control("show --json"));
const finalRss = rss();
console.log(await control("show"));
console.log(
  `soak: final RSS ${finalRss.toFixed(1)} MB (by minute: ${rssByMinute.map((r) => r.toFixed(1)).join(", ")})`,
);
console.log(
  `soak: ${stats.ok} exchanges verified (${
    (stats.bytes / 2 ** 20).toFixed(0)
  } MiB), ${stats.resets} client resets injected, ` +
    `${
      backends[0].killedAt.length
    } backend deaths injected, ${stats.explained} explained errors, ${stats.unexplained} unexplained`,
);
const stuck = table.filter((c: { c: number }) => c.c !== 0);
lb.kill("SIGTERM");
for (const b of backends) (b.server?.close(), b.sockets.forEach((s) => s.destroy()));
rmSync(dir, { recursive: true, force: true });
const growth = finalRss - (rssByMinute[1] ?? rssByMinute[0]);
const failed = stats.unexplained > 0 || stuck.length > 0 || stats.ok === 0 || growth > 64;
console.log(
  failed
    ? `soak: FAILED (${stuck.length} channels with c != 0, RSS growth after warm-up ${growth.toFixed(1)} MB)`
    : "soak: ok",
);
process.exit(failed ? 1 : 0);
