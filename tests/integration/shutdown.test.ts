import { test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { connect, freePort, startBackend } from "../support/net.ts";
import { startBalance } from "../support/balance.ts";

test("shutdown: SIGTERM stops accepting at once, an open connection finishes, then exit 0", async () => {
  const backend = await startBackend("g");
  const port = await freePort();
  const lb = await startBalance(["--grace", "20", String(port), `127.0.0.1:${backend.port}`], port);
  try {
    const held = await connect(port);
    await held.waitFor((d) => d.toString() === "g\n");
    process.kill(lb.child.pid!, "SIGTERM");
    await lb.waitForTrace("stopped accepting; 1 open connection(s), grace 20s");
    await assert.rejects(connect(port), /ECONNREFUSED/, "no new clients");
    held.socket.write("still served");
    await held.waitFor((d) => d.toString() === "g\nstill served");
    const started = Date.now();
    held.socket.end();
    assert.equal(await lb.exited, 0);
    assert.ok(Date.now() - started < 10_000, "exits once the last connection is done, not after the grace");
    held.socket.destroy();
  } finally {
    await lb.stop();
    await backend.close();
  }
});

test("shutdown: connections still open after the grace period are closed, exit 0", async () => {
  const backend = await startBackend("g");
  const port = await freePort();
  const lb = await startBalance(["--grace", "1", String(port), `127.0.0.1:${backend.port}`], port);
  try {
    const held = await connect(port);
    await held.waitFor((d) => d.toString() === "g\n");
    process.kill(lb.child.pid!, "SIGTERM");
    assert.equal(await lb.exited, 0);
    await held.ended;
    assert.match(lb.stderr(), /exiting, 1 connection\(s\) closed/);
    held.socket.destroy();
  } finally {
    await backend.close();
  }
});
