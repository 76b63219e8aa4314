/**
 * 9,000 proxied connections held open at once, every one still relaying.
 * Each needs two descriptors in the balancer (the hard limit here is 20,000
 * per process), so the backend runs in a process of its own and this test
 * process holds only the client ends.
 */
import { onTimeout, test } from "../support/test.ts";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import * as net from "node:net";
import { freePort } from "../support/net.ts";
import { runBalance, type Running, startBalance } from "../support/balance.ts";
import { until, within } from "../support/wait.ts";

const CONNECTIONS = Number(process.env.BALANCE_CAPACITY ?? 9000);
const BATCH = 250;
const ECHO = fileURLToPath(import.meta.resolve("../support/echo_server.mjs"));

function open(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    let got = "";
    const timer = setTimeout(() => reject(new Error("no greeting within 20 s")), 20_000);
    s.on("data", function greet(d) {
      got += d;
      if (got === "hi\n") {
        clearTimeout(timer);
        s.removeListener("data", greet);
        resolve(s);
      }
    });
    s.once("error", reject);
  });
}

function echo(s: net.Socket, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = "";
    const timer = setTimeout(() => reject(new Error(`no echo of ${text}`)), 20_000);
    const onData = (d: Buffer) => {
      got += d;
      if (got === text) {
        clearTimeout(timer);
        s.removeListener("data", onData);
        resolve();
      }
    };
    s.on("data", onData);
    s.write(text);
  });
}

test(`capacity: ${CONNECTIONS} connections held open at once, all relaying, c back to 0`, async () => {
  const backend = spawn("node", [ECHO], { stdio: ["pipe", "pipe", "inherit"] });
  onTimeout(() => backend.kill("SIGKILL"));
  const sockets: net.Socket[] = [];
  let lb: Running | undefined;
  try {
    const backendPort = Number(
      await within(
        new Promise<string>((r) => backend.stdout!.once("data", (d) => r(String(d)))),
        10_000,
        "the echo backend to print its port",
      ),
    );
    const port = await freePort();
    lb = await startBalance([String(port), `127.0.0.1:${backendPort}`], port);
    await lb.waitForTrace(/at most (\d+) proxied connections/);
    const limit = Number(/at most (\d+) proxied connections/.exec(lb.stderr())![1]);
    assert.ok(limit >= CONNECTIONS, `the balancer can hold ${CONNECTIONS} connections (limit ${limit})`);
    for (let i = 0; i < CONNECTIONS; i += BATCH) {
      const batch = Math.min(BATCH, CONNECTIONS - i);
      sockets.push(...await Promise.all(Array.from({ length: batch }, () => open(port))));
    }
    assert.equal(sockets.length, CONNECTIONS);
    const c = async () => JSON.parse((await runBalance(["-c", "show --json", String(port)])).stdout)[0].c;
    assert.equal(await c(), CONNECTIONS, "all open at once");
    // Every connection still relays, in both directions.
    for (let i = 0; i < CONNECTIONS; i += BATCH) {
      await Promise.all(sockets.slice(i, i + BATCH).map((s, k) => echo(s, `ping ${i + k}\n`)));
    }
    for (const s of sockets) s.destroy();
    sockets.length = 0;
    await until(c, (open) => open === 0, "every connection counted out", { ms: 20_000, everyMs: 200 });
  } finally {
    for (const s of sockets) s.destroy();
    await lb?.stop();
    backend.stdin!.end();
  }
});
