/**
 * What one proxied connection costs the balancer's heap, from the runtime's
 * own statistics: the balancer runs in this process with nothing else, and a
 * node child process is both the backend and the clients.
 *
 * - allocated: heap bytes allocated per short connection (connect, 5 bytes
 *   each way, close), over 10,000 of them one after another. Under Deno the
 *   young generation is made large enough that no collection runs meanwhile,
 *   so the heap's growth is what was allocated; Bun's collector cannot be held
 *   off, so there it is not measured.
 * - retained: heap bytes (and, under Bun, objects) per open idle connection:
 *   the heap after a full collection with 2,000 of them open, less the heap
 *   once they have closed.
 *
 * `ROOT` is the checkout to measure (default: this one), so that two commits
 * are measured by the same script:
 *
 * ```sh
 * deno run -A --v8-flags=--expose-gc,--min-semi-space-size=512,--max-semi-space-size=512 bench/per_connection.ts [ROOT]
 * bun --expose-gc bench/per_connection.ts [ROOT]
 * ```
 *
 * @module
 */
import { spawn } from "node:child_process";
import process from "node:process";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const root = pathToFileURL(resolve(process.argv[2] ?? new URL("..", import.meta.url).pathname) + "/").href;
const isBun = "Bun" in globalThis;
const { Balancer } = await import(`${root}src/core/mod.ts`);
const adapter = await import(`${root}src/adapter/${isBun ? "bun" : "deno"}/mod.ts`);

const SHORT = 10_000;
const IDLE = 2_000;

// The backend echoes; the driver makes connections when told and says when done.
const DRIVER = `
const net = require("node:net");
const backend = net.createServer({ allowHalfOpen: true }, (s) => { s.on("error", () => {}); s.pipe(s); });
const held = [];
let port;
backend.listen(0, "127.0.0.1", () => console.log(backend.address().port));
function one() {
  return new Promise((done) => {
    const c = net.connect(port, "127.0.0.1", () => c.write("ping\\n"));
    c.on("data", () => c.end());
    c.on("error", done);
    c.on("close", done);
  });
}
function idle() {
  return new Promise((done) => {
    const c = net.connect(port, "127.0.0.1", () => c.write("ping\\n"));
    c.once("data", () => done());
    held.push(c);
  });
}
require("node:readline").createInterface({ input: process.stdin }).on("line", async (line) => {
  const [what, n, p] = line.split(" ");
  port = Number(p);
  if (what === "short") for (let i = 0; i < Number(n); i++) await one();
  else if (what === "idle") for (let i = 0; i < Number(n); i += 50) await Promise.all(Array.from({ length: 50 }, idle));
  else await Promise.all(held.splice(0).map((c) => new Promise((done) => { c.on("close", done); c.end(); })));
  console.log("done");
});
`;

const driver = spawn("node", ["-e", DRIVER], { stdio: ["pipe", "pipe", "inherit"] });
const lines: string[] = [];
let wake: (() => void) | undefined;
driver.stdout!.on("data", (d) => {
  lines.push(...String(d).trim().split("\n"));
  wake?.();
});
async function nextLine(): Promise<string> {
  while (lines.length === 0) await new Promise<void>((r) => (wake = r));
  return lines.shift()!;
}
const backendPort = Number(await nextLine());

const balancer = Balancer.fromSpecs(
  [{ type: "RR", channels: [{ host: "127.0.0.1", port: backendPort, maxc: 0 }] }],
  { autodisable: false, hashFailover: false },
);
const server = await adapter.serve(balancer, {
  hostname: "127.0.0.1",
  port: 0,
  connectTimeoutMs: 5000,
  idleTimeoutMs: 0,
  warn: () => {},
});

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --expose-gc (Bun) or --v8-flags=--expose-gc (Deno)");
const jsc = isBun ? await import("bun:jsc") : undefined;
const heap = () => {
  if (jsc) return { bytes: jsc.heapStats().heapSize, objects: jsc.heapStats().objectCount };
  return { bytes: Deno.memoryUsage().heapUsed, objects: NaN };
};
async function drive(what: string, n: number): Promise<void> {
  driver.stdin!.write(`${what} ${n} ${server.port}\n`);
  if ((await nextLine()) !== "done") throw new Error("driver failed");
}

// Warm-up: code compiled, pools filled, before anything is counted.
await drive("short", 1000);
await new Promise((r) => setTimeout(r, 200));
gc();
const beforeShort = heap();
await drive("short", SHORT);
const afterShort = heap();
await drive("idle", IDLE);
await new Promise((r) => setTimeout(r, 200));
gc();
gc();
const idle = heap();
await drive("close", 0);
await new Promise((r) => setTimeout(r, 200));
gc();
gc();
const settled = heap();

const runtime = isBun ? `Bun ${Bun.version}` : `Deno ${Deno.version.deno}`;
const perShort = isBun ? "not measured" : `${((afterShort.bytes - beforeShort.bytes) / SHORT).toFixed(0)} B`;
console.log(`${runtime}, ${process.argv[2] ?? "this checkout"}:`);
console.log(`  allocated per short connection: ${perShort}`);
console.log(
  `  retained per idle connection: ${((idle.bytes - settled.bytes) / IDLE).toFixed(0)} B` +
    (isBun ? `, ${((idle.objects - settled.objects) / IDLE).toFixed(1)} objects` : ""),
);
driver.kill();
server.close();
process.exit(0);
