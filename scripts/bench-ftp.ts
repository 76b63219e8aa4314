/**
 * What `--ftp` costs, measured in one run on loopback with stock vsftpd
 * (root): balance's CPU per control connection (log in, PWD, QUIT) without
 * and with `--ftp`, and per passive transfer; then a 100 MiB passive
 * download with curl: straight from vsftpd, through balance without `--ftp`
 * (only the control connection: data goes straight to the server, which
 * only loopback allows), and with `--ftp` (data through balance).
 *
 *   deno run -A scripts/bench-ftp.ts [--connections N] [--runs R]
 *   BALANCE_BIN=dist/balance deno run -A scripts/bench-ftp.ts
 *
 * @module
 */
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as net from "node:net";
import { parseArgs } from "node:util";
import { balanceCommand, balanceEnv } from "../tests/support/balance.ts";
import { freePort } from "../tests/support/net.ts";
import { startVsftpd } from "../tests/support/vsftpd.ts";

const { values } = parseArgs({ options: { connections: { type: "string" }, runs: { type: "string" } } });
const CONNECTIONS = Number(values.connections ?? 500);
const RUNS = Number(values.runs ?? 3);
const SIZE = 100 * 1024 * 1024;
const TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

// utime + stime of a process and its threads, in seconds.
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

async function startLb(options: string[], channel: string): Promise<{ pid: number; port: number; stop(): void }> {
  const port = await freePort();
  const [cmd, ...pre] = balanceCommand();
  const child = spawn(cmd, [...pre, "-f", ...options, String(port), channel], {
    env: balanceEnv(),
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  for (let i = 0; i < 300 && !err.includes("listening on"); i++) await new Promise((r) => setTimeout(r, 100));
  if (!err.includes("listening on")) throw new Error(`balance did not start:\n${err}`);
  child.on("exit", (code) => code !== null && console.error(`balance exited ${code}:\n${err}`));
  return { pid: child.pid!, port, stop: () => child.kill("SIGKILL") };
}

// One control connection: greeting, USER, then `commands` (each answered), QUIT.
function session(port: number, commands: string[], data?: (reply: string) => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1" });
    const script = ["USER anonymous", ...commands, "QUIT"];
    let buffered = "";
    socket.on("data", (d) => {
      buffered += d.toString("latin1");
      let end;
      while ((end = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, end + 1);
        buffered = buffered.slice(end + 1);
        if (line[3] !== " " || line[0] === "1") continue;
        if (line.startsWith("229") && data) data(line).catch(reject);
        const next = script.shift();
        if (next === undefined) return;
        socket.write(`${next}\r\n`);
      }
    });
    socket.on("close", () => resolve());
    socket.on("error", reject);
  });
}

// EPSV, then the data connection for a LIST of pub/: one small transfer.
// Without --ftp the data connection goes straight to the server (`dataHost`).
function transfer(port: number, dataHost: string): Promise<void> {
  let done!: Promise<void>;
  return session(port, ["EPSV", "LIST pub"], (reply) => {
    const dataPort = Number(/\|\|\|(\d+)\|/.exec(reply)![1]);
    done = new Promise((resolve, reject) => {
      const d = net.connect({ port: dataPort, host: dataHost });
      d.on("data", () => {});
      d.on("close", () => resolve());
      d.on("error", reject);
    });
    return Promise.resolve();
  }).then(() => done);
}

async function cpuPer(pid: number, n: number, one: () => Promise<void>): Promise<number> {
  for (let i = 0; i < 50; i++) await one(); // warm-up
  const before = cpuSeconds(pid);
  for (let i = 0; i < n; i++) await one();
  return (cpuSeconds(pid) - before) / n * 1e6;
}

function download(url: string, extra: string[] = []): number {
  const r = spawnSync("curl", ["-sS", "--disable-epsv", "-o", "/dev/null", "-w", "%{speed_download}", ...extra, url], {
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`curl ${url}: ${r.stderr}`);
  return Number(r.stdout) / (1024 * 1024);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const ftp = await startVsftpd("bench", "127.0.0.2", { size: SIZE });
const plain = await startLb([], `127.0.0.2:${ftp.port}`);
const aware = await startLb(["--ftp"], `127.0.0.2:${ftp.port}`);
try {
  console.log(
    `bench-ftp: ${new Date().toISOString()}, ${
      balanceCommand().join(" ")
    }, ${CONNECTIONS} connections, median of ${RUNS}`,
  );
  const rows: [string, number[], number[]][] = [
    ["control connection (login, PWD, QUIT), µs CPU", [], []],
    ["control connection with one EPSV + LIST, µs CPU", [], []],
  ];
  for (let run = 0; run < RUNS; run++) {
    rows[0][1].push(await cpuPer(plain.pid, CONNECTIONS, () => session(plain.port, ["PWD"])));
    rows[0][2].push(await cpuPer(aware.pid, CONNECTIONS, () => session(aware.port, ["PWD"])));
    rows[1][1].push(await cpuPer(plain.pid, CONNECTIONS, () => transfer(plain.port, "127.0.0.2")));
    rows[1][2].push(await cpuPer(aware.pid, CONNECTIONS, () => transfer(aware.port, "127.0.0.1")));
  }
  const direct: number[] = [];
  const without: number[] = [];
  const withFtp: number[] = [];
  const cpuWith: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    direct.push(download(`ftp://127.0.0.2:${ftp.port}/pub/data.bin`));
    without.push(download(`ftp://127.0.0.1:${plain.port}/pub/data.bin`, ["--no-ftp-skip-pasv-ip"]));
    const before = cpuSeconds(aware.pid);
    withFtp.push(download(`ftp://127.0.0.1:${aware.port}/pub/data.bin`));
    cpuWith.push(cpuSeconds(aware.pid) - before);
  }
  const f = (x: number) => x.toFixed(1);
  console.log(`| measure | without --ftp | with --ftp | ratio |`);
  console.log(`| --- | ---: | ---: | ---: |`);
  for (const [name, a, b] of rows) {
    console.log(`| ${name} | ${f(median(a))} | ${f(median(b))} | ${(median(b) / median(a)).toFixed(2)} |`);
  }
  console.log(
    `| 100 MiB passive download, MiB/s (without: data straight to vsftpd) | ${f(median(without))} | ${
      f(median(withFtp))
    } | ${(median(withFtp) / median(without)).toFixed(2)} |`,
  );
  console.log(`| straight from vsftpd, no balance, MiB/s | ${f(median(direct))} | | |`);
  console.log(`| balance CPU for the 100 MiB transfer with --ftp, s | | ${median(cpuWith).toFixed(2)} | |`);
} finally {
  plain.stop();
  aware.stop();
  await ftp.stop();
}
