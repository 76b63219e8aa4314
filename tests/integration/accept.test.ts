/**
 * Accept errors that concern one connection (a client that resets before
 * its accept completes) cost nothing: the listener goes straight on to the
 * next client. Only descriptor or memory exhaustion backs off.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { performance } from "node:perf_hooks";
import { connect } from "../support/net.ts";
import { withProxy } from "../support/balance.ts";
import { onTimeout, test } from "../support/test.ts";

const STORM = 500;

/**
 * Starts a separate Node process whose `STORM` clients connect to `port` and
 * reset at once (SO_LINGER 0), all together; resolves once every one has
 * connected and reset, so that they wait, reset, in the listener's queue.
 */
function resetStorm(port: number): Promise<void> {
  const storm = spawn("node", [
    "-e",
    `
    const net = require("net");
    let left = ${STORM};
    for (let i = 0; i < ${STORM}; i++) {
      const s = net.connect(${port}, "127.0.0.1");
      s.on("error", () => {});
      s.on("connect", () => { s.resetAndDestroy(); if (--left === 0) console.log("reset"); });
    }
    setTimeout(() => process.exit(1), 20000);
    `,
  ], { stdio: ["ignore", "pipe", "inherit"] });
  onTimeout(() => storm.kill("SIGKILL"));
  return new Promise<void>((resolve, reject) => {
    storm.stdout!.on("data", (d) => String(d).includes("reset") && resolve());
    storm.on("exit", (code) => code !== 0 && reject(new Error(`the storm process exited ${code}`)));
  }).finally(() => storm.kill());
}

test("accept: 500 clients that reset before their accept do not delay the next client (served within 200 ms)", () =>
  withProxy("b", undefined, [], async ({ port, lb }) => {
    await resetStorm(port);
    const start = performance.now();
    const c = await connect(port);
    c.socket.write("ping\n");
    await c.waitFor((d) => d.toString() === "b\nping\n", 10_000);
    const ms = performance.now() - start;
    console.log(`served in ${ms.toFixed(1)} ms behind ${STORM} reset clients`);
    c.socket.destroy();
    assert.ok(ms < 200, `the next client waited ${ms.toFixed(0)} ms behind ${STORM} reset clients`);
    // The resets are not worth a warning each: at most one throttled line.
    const warnings = lb.stderr().match(/accept failed/g)?.length ?? 0;
    assert.ok(warnings <= 1, `${warnings} accept warnings for one storm`);
  }));
