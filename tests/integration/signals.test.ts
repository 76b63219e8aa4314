import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { connect, freePort, startBackend } from "../support/net.ts";
import { startBalance } from "../support/balance.ts";
import { until, within } from "../support/wait.ts";

/** A private control directory, to see what a stopped balancer leaves in it. */
function controlDir(): string {
  return mkdtempSync(join(tmpdir(), "balance-signals-ctl-"));
}

for (const workers of [1, 2]) {
  test(
    `signals: HUP, USR2 and PIPE do not kill (-w ${workers}); the connection goes on; SIGTERM then exits 0`,
    { skip: workers > 1 && process.platform !== "linux" ? "-w needs Linux" : false },
    async () => {
      const backend = await startBackend("s");
      const dir = controlDir();
      const port = await freePort();
      const lb = await startBalance(["-w", String(workers), String(port), `127.0.0.1:${backend.port}`], port, {
        env: { BALANCE_CONTROL_DIR: dir },
      });
      try {
        const held = await connect(port);
        await held.waitFor((d) => d.toString() === "s\n");
        for (const signal of ["SIGHUP", "SIGUSR2", "SIGPIPE"] as const) process.kill(lb.child.pid!, signal);
        await lb.waitForTrace("SIGHUP: no configuration file to reload; going on");
        await lb.waitForTrace("SIGUSR2: ignored");
        held.socket.write("after HUP");
        await held.waitFor((d) => d.toString() === "s\nafter HUP");
        const next = await connect(port);
        await next.waitFor((d) => d.toString() === "s\n");
        next.socket.destroy();
        held.socket.destroy();
        assert.equal(await lb.stop(), 0, lb.stderr());
        assert.deepEqual(readdirSync(dir), [], "no control socket left");
      } finally {
        await lb.stop();
        await backend.close();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  test(`signals: ${signal} (after a HUP) exits 0 and leaves no control socket`, async () => {
    const dir = controlDir();
    const port = await freePort();
    const lb = await startBalance([String(port), "127.0.0.1:9"], port, { env: { BALANCE_CONTROL_DIR: dir } });
    try {
      assert.equal(readdirSync(dir).length, 1, "the control socket while running");
      process.kill(lb.child.pid!, "SIGHUP");
      await lb.waitForTrace("SIGHUP");
      process.kill(lb.child.pid!, signal);
      assert.equal(await within(lb.exited, 15_000, `balance to exit after ${signal}`), 0, lb.stderr());
      assert.deepEqual(readdirSync(dir), [], "no control socket left");
    } finally {
      await lb.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("signals: USR1 reopens the log file (logrotate: rename, USR1, new lines in a new file)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "balance-usr1-"));
  const file = join(dir, "balance.log");
  const port = await freePort();
  const lb = await startBalance(["--log-file", file, String(port), "127.0.0.1:9"], port);
  try {
    renameSync(file, `${file}.1`);
    process.kill(lb.child.pid!, "SIGUSR1");
    await lb.waitForTrace("SIGUSR1: log file reopened");
    process.kill(lb.child.pid!, "SIGHUP");
    await lb.waitForTrace("SIGHUP");
    const fresh = await until(
      () => existsSync(file) ? readFileSync(file, "utf8") : "",
      (s) => /SIGHUP/.test(s),
      "the new log file",
    );
    assert.match(fresh, /SIGUSR1: log file reopened/);
    assert.doesNotMatch(fresh, /started: listening on/, "the old lines stay in the renamed file");
    const rotated = readFileSync(`${file}.1`, "utf8");
    assert.match(rotated, /started: listening on/);
    assert.doesNotMatch(rotated, /SIGHUP/);
  } finally {
    await lb.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
