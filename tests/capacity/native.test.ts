/**
 * The native engine's descriptors over a long storm (issue 27): 100,000
 * connections that end every way a connection can (client resets, clients
 * that leave at once, channels that reset, refused connects that fail over),
 * then connects that time out: the balancer's open descriptors come back to
 * where they were.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import process from "node:process";
import { withBalancer } from "../support/balance.ts";
import { freePort } from "../support/net.ts";
import { control, sleep } from "../support/helpers.ts";
import { synDropper } from "../support/health.ts";
import { halfResetting, openDescriptors, storm } from "../support/storm.ts";

const TOTAL = Number(process.env.BALANCE_STORM ?? 100_000);
const BATCH = 200;
const TIMEOUTS = 300;
const linux = process.platform === "linux" && (process.arch === "x64" || process.arch === "arm64");

test(`native: after ${TOTAL} connections (resets, refusals, timeouts) the open descriptors return to the baseline`, {
  skip: linux ? false : "the native engine runs on Linux x86-64 and arm64 only",
  timeoutMs: 600_000,
}, async () => {
  const refused = await freePort();
  const hole = await synDropper();
  try {
    await withBalancer({
      backends: [halfResetting()],
      options: ["--engine", "native", "-t", "1"],
      controlDir: true,
      // Group 0 is refused (later: drops the SYN), and every client fails over to group 1.
      channels: ([b]) => [`127.0.0.1:${refused}`, "!", `${b.host}:${b.port}`],
    }, async ({ port, lb, env }) => {
      const pid = lb.child.pid!;
      for (let i = 0; i < 6; i++) await storm(port, i % 3);
      await sleep(200);
      const baseline = openDescriptors(pid);
      const started = performance.now();
      for (let done = 0; done < TOTAL; done += BATCH) {
        await Promise.all(Array.from({ length: Math.min(BATCH, TOTAL - done) }, (_, i) => storm(port, (done + i) % 3)));
      }
      console.log(`${TOTAL} connections in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      // Group 0 now drops SYNs: every client waits out -t 1, then fails over.
      assert.equal(await control(port, "disable 0", env), "channel 0 disabled\n");
      assert.equal(await control(port, `assign 0 127.0.0.1 ${hole.port}`, env), "channel reassigned\n");
      assert.equal(await control(port, "enable 0", env), "channel 0 enabled\n");
      await Promise.all(Array.from({ length: TIMEOUTS }, (_, i) => storm(port, i % 3)));
      assert.match(lb.stderr(), /connect timed out after 1s/);
      let now = openDescriptors(pid);
      for (let tries = 0; tries < 100 && now > baseline; tries++) {
        await sleep(50);
        now = openDescriptors(pid);
      }
      assert.equal(now, baseline, `descriptors: ${now} now, ${baseline} before the storm`);
    });
  } finally {
    await hole.close();
  }
});
