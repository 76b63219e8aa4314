/**
 * Long backpressure run: a client pushes `--mib` MiB through the balancer to
 * a backend reading at `--rate` bytes/s while, on a second connection, a
 * backend pushes as many to a client reading at the same rate. Reports the
 * balancer's RSS (idle, peak), how far the fast sides got ahead of the slow
 * ones, and checks every byte (SHA-256) and the channel counters.
 *   deno run -A scripts/backpressure.ts [--mib 1024] [--rate 1000000] [--binary PATH]
 * The CI suite runs the same properties for 3 s (tests/integration/relay.test.ts);
 * this is the full-length run, by hand.
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
  options: {
    mib: { type: "string", default: "1024" },
    rate: { type: "string", default: "1000000" },
    binary: { type: "string" },
  },
});
const total = Number(values.mib) * 1024 * 1024;
const rate = Number(values.rate);
if (!(total > 0 && rate > 0)) throw new Error("--mib and --rate must be positive");
const ROOT = new URL("..", import.meta.url).pathname;
const command = values.binary ? [values.binary] : [process.execPath, "run", "--allow-all", join(ROOT, "src/main.ts")];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (n: number) => (n / 1048576).toFixed(1);
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;

/** Consumes a socket at `rate` bytes/s on average, hashing what it reads. */
function readSlowly(s: net.Socket, onByte: (n: number) => void): Promise<string> {
  const hash = createHash("sha256");
  const started = Date.now();
  let got = 0;
  return new Promise((resolve) => {
    s.on("data", (d: Buffer) => {
      hash.update(d);
      got += d.length;
      onByte(d.length);
      const aheadMs = (got / rate) * 1000 - (Date.now() - started);
      if (aheadMs > 0) {
        s.pause();
        setTimeout(() => s.resume(), aheadMs);
      }
    });
    s.on("end", () => resolve(hash.digest("hex")));
  });
}

/** Writes `total` random bytes as fast as the path takes them, then ends. */
async function pushFast(s: net.Socket, onByte: (n: number) => void): Promise<string> {
  const hash = createHash("sha256");
  for (let sent = 0; sent < total;) {
    const chunk = randomBytes(Math.min(65536, total - sent));
    hash.update(chunk);
    sent += chunk.length;
    onByte(chunk.length);
    if (!s.write(chunk)) await new Promise((r) => s.once("drain", r));
  }
  s.end();
  return hash.digest("hex");
}

const progress = { upPushed: 0, upRead: 0, downPushed: 0, downRead: 0 };
const results: Record<string, Promise<string>> = {};
// One backend; the client's first byte (U or D, counted in sent) says which way it runs.
const backend = net.createServer({ allowHalfOpen: true }, (s) => {
  s.once("data", (first: Buffer) => {
    if (first[0] === 0x55 /* U */) {
      if (first.length > 1) s.unshift(first.subarray(1));
      results.upRead = readSlowly(s, (n) => (progress.upRead += n));
    } else {
      results.downPushed = pushFast(s, (n) => (progress.downPushed += n));
    }
  });
});
await new Promise<void>((r) => backend.listen(0, "127.0.0.1", r));
const backendPort = (backend.address() as net.AddressInfo).port;
const port = await new Promise<number>((r) => {
  const s = net.createServer().listen(0, "127.0.0.1", () => {
    const p = (s.address() as net.AddressInfo).port;
    s.close(() => r(p));
  });
});
const dir = mkdtempSync(join(tmpdir(), "balance-backpressure-"));
const env = { ...process.env, BALANCE_CONTROL_DIR: dir };
const [cmd, ...pre] = command;
const lb = spawn(cmd, [...pre, "-f", String(port), `127.0.0.1:${backendPort}`], { env, stdio: "inherit" });
const show = () =>
  new Promise<{ sent: number; rcvd: number }[]>((resolve) => {
    const p = spawn(cmd, [...pre, "-c", "show --json", String(port)], { env, stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    p.stdout!.on("data", (d) => (out += d));
    p.on("exit", () => resolve(out.startsWith("[") ? JSON.parse(out) : []));
  });
for (let i = 0; i < 100 && (await show()).length === 0; i++) await sleep(100);
const idleRss = rssMiB(lb.pid!);
console.log(`balance pid ${lb.pid}: idle RSS ${idleRss.toFixed(1)} MiB; ${mib(total)} MiB each way at ${rate} B/s`);

const connect = () =>
  new Promise<net.Socket>((resolve) => {
    const c = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true }, () => resolve(c));
  });
const up = await connect();
up.write("U");
const upPushed = pushFast(up, (n) => (progress.upPushed += n));
const down = await connect();
down.write("D");
const downRead = readSlowly(down, (n) => (progress.downRead += n));

let peakRss = idleRss;
let maxAhead = 0;
const started = Date.now();
let lastReport = started;
let finished = false;
const all = Promise.all([upPushed, downRead]).then(async (r) => {
  const upHash = await results.upRead;
  const downHash = await results.downPushed;
  finished = true;
  return { upOk: r[0] === upHash, downOk: r[1] === downHash };
});
while (!finished) {
  await sleep(1000);
  peakRss = Math.max(peakRss, rssMiB(lb.pid!));
  maxAhead = Math.max(maxAhead, progress.upPushed - progress.upRead, progress.downPushed - progress.downRead);
  if (Date.now() - lastReport >= 60_000) {
    lastReport = Date.now();
    console.log(
      `${Math.round((Date.now() - started) / 1000)} s: up ${mib(progress.upRead)} MiB read, down ${
        mib(progress.downRead)
      } MiB read; RSS ${rssMiB(lb.pid!).toFixed(1)} MiB (peak ${peakRss.toFixed(1)}); fast side ahead by at most ${
        mib(maxAhead)
      } MiB`,
    );
  }
}
const { upOk, downOk } = await all;
await sleep(200);
const [channel] = await show();
lb.kill("SIGTERM");
backend.close();
up.destroy();
down.destroy();
rmSync(dir, { recursive: true, force: true });
const countersOk = channel?.sent === total + 2 && channel?.rcvd === total;
const ok = upOk && downOk && countersOk && peakRss - idleRss <= 64;
console.log(
  `${ok ? "PASS" : "FAIL"}: ${mib(total)} MiB each way in ${Math.round((Date.now() - started) / 1000)} s; ` +
    `SHA-256 up ${upOk ? "equal" : "DIFFERENT"}, down ${downOk ? "equal" : "DIFFERENT"}; ` +
    `counters sent ${channel?.sent} rcvd ${channel?.rcvd} (${countersOk ? "exact" : "WRONG"}); ` +
    `RSS idle ${idleRss.toFixed(1)} MiB, peak ${peakRss.toFixed(1)} MiB (+${(peakRss - idleRss).toFixed(1)}); ` +
    `fast side ahead of the slow one by at most ${mib(maxAhead)} MiB`,
);
process.exit(ok ? 0 : 1);
