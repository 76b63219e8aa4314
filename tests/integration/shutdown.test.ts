import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { type Client, connect } from "../support/net.ts";
import { type Running, withProxy } from "../support/balance.ts";
import { within } from "../support/wait.ts";

/** balance with `--grace SEC` in front of one backend, one client connected, then SIGTERM. */
function afterSigterm(grace: number, fn: (ctx: { port: number; lb: Running; held: Client }) => Promise<void>) {
  return withProxy("g", undefined, ["--grace", String(grace)], async ({ port, lb }) => {
    const held = await connect(port);
    const socketPath = join(lb.controlDir, `any-${port}.sock`);
    try {
      await held.waitFor((d) => d.toString() === "g\n");
      assert.ok(existsSync(socketPath), "the control socket exists while serving");
      process.kill(lb.child.pid!, "SIGTERM");
      await fn({ port, lb, held });
    } finally {
      held.socket.destroy();
    }
    assert.ok(!existsSync(socketPath), "the control socket is removed after the graceful stop");
  });
}

test("shutdown: SIGTERM stops accepting at once, an open connection finishes, then exit 0, control socket removed", () =>
  afterSigterm(20, async ({ port, lb, held }) => {
    await lb.waitForTrace("stopped accepting; 1 open connection(s), grace 20s");
    await assert.rejects(connect(port), /ECONNREFUSED/, "no new clients");
    held.socket.write("still served");
    await held.waitFor((d) => d.toString() === "g\nstill served");
    const started = Date.now();
    held.socket.end();
    assert.equal(await within(lb.exited, 15_000, "balance to exit after its last connection"), 0);
    assert.ok(Date.now() - started < 10_000, "exits once the last connection is done, not after the grace");
  }));

test("shutdown: connections still open after the grace period are closed, exit 0, control socket removed", () =>
  afterSigterm(1, async ({ lb, held }) => {
    assert.equal(await within(lb.exited, 15_000, "balance to exit after its 1 s grace"), 0);
    await held.ended();
    assert.match(lb.stderr(), /exiting, 1 connection\(s\) closed/);
  }));

test("shutdown: a second SIGINT in the grace period closes the open connections at once, logs it, exit 0", () =>
  withProxy("g", undefined, ["--grace", "60"], async ({ port, lb }) => {
    const held = await connect(port);
    try {
      await held.waitFor((d) => d.toString() === "g\n");
      process.kill(lb.child.pid!, "SIGINT");
      await lb.waitForTrace("SIGINT: stopped accepting; 1 open connection(s), grace 60s");
      const started = Date.now();
      process.kill(lb.child.pid!, "SIGINT");
      assert.equal(await within(lb.exited, 15_000, "balance to exit after the second SIGINT"), 0);
      assert.ok(Date.now() - started < 10_000, "not after the grace period");
      await held.ended();
      const lines = lb.stderr().split("\n").filter((l) => /SIGINT|exiting/.test(l)).map((l) =>
        l.replace(/^.* INF: /, "")
      );
      assert.deepEqual(lines, [
        "SIGINT: stopped accepting; 1 open connection(s), grace 60s",
        "second SIGINT: closing 1 open connection(s) now",
        "exiting, 1 connection(s) closed",
      ]);
    } finally {
      held.socket.destroy();
    }
  }));
