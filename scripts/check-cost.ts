/**
 * What health checks cost (run by `./scripts/check-cost`): `./scripts/check-cost [--channels N]
 * [--interval SEC] [--seconds N] [--binary PATH] [--runtime deno|bun]`.
 * Starts N listeners on 127.0.0.1 (each accepts and closes), a balancer
 * with `--check` over them, and HAProxy (one thread) with `check inter` over
 * the same servers as the yardstick; after a warm-up of two intervals,
 * prints the CPU each spends (user + system, % of one core) over the
 * measured seconds, one after the other so they never compete.
 *
 * @module
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    channels: { type: "string", default: "1000" },
    interval: { type: "string", default: "1" },
    seconds: { type: "string", default: "30" },
    binary: { type: "string" },
    runtime: { type: "string", default: "bun" },
  },
});
const channels = Number(values.channels);
const interval = Number(values.interval);
const seconds = Number(values.seconds);
const root = new URL("..", import.meta.url).pathname;

const servers: net.Server[] = [];
for (let i = 0; i < channels; i++) {
  const server = net.createServer((socket) => socket.on("error", () => {}).destroy());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  servers.push(server);
}
const ports = servers.map((s) => (s.address() as net.AddressInfo).port);

/** CPU seconds (user + system) of `pid` so far. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Runs `command`, waits the warm-up, prints the share of one core it spends over `seconds`, stops it. */
async function measure(name: string, command: string[]): Promise<void> {
  const child = spawn(command[0], command.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d) => stderr += d);
  try {
    await new Promise((r) => setTimeout(r, Math.max(3, 2 * interval) * 1000));
    if (child.exitCode !== null) throw new Error(`${name} exited: ${stderr}`);
    const before = cpuSeconds(child.pid!);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const spent = cpuSeconds(child.pid!) - before;
    const checks = channels * seconds / interval;
    console.log(
      `${name}: ${(100 * spent / seconds).toFixed(1)} % of one core for ${channels} channels every ${interval} s ` +
        `(${(1e6 * spent / checks).toFixed(0)} µs per check)`,
    );
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => child.exitCode !== null ? r(null) : child.once("exit", r));
  }
}

const dir = mkdtempSync(join(tmpdir(), "check-cost-"));
try {
  const listen = String(
    await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, "127.0.0.1", () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    }),
  );
  const args = ["-f", "--check", "--check-interval", String(interval), listen, ...ports.map((p) => `127.0.0.1:${p}`)];
  const balance = values.binary
    ? [values.binary, ...args]
    : values.runtime === "deno"
    ? [join(root, "node_modules/.bin/deno"), "run", "-A", "--unstable-net", join(root, "src/main.ts"), ...args]
    : [join(root, "node_modules/.bin/bun"), join(root, "src/main.ts"), ...args];
  await measure(`balance (${values.binary ?? values.runtime})`, balance);
  const config = join(dir, "haproxy.cfg");
  writeFileSync(
    config,
    [
      "global",
      "  nbthread 1",
      "defaults",
      "  mode tcp",
      "  timeout connect 5s",
      "  timeout client 30s",
      "  timeout server 30s",
      `  default-server check inter ${interval * 1000}`,
      "listen l",
      `  bind 127.0.0.1:${listen}`,
      ...ports.map((p, i) => `  server s${i} 127.0.0.1:${p}`),
      "",
    ].join("\n"),
  );
  await measure("haproxy (1 thread)", ["haproxy", "-db", "-f", config]);
} finally {
  rmSync(dir, { recursive: true, force: true });
  for (const s of servers) s.close();
}
