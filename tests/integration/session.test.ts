/**
 * One connection lifecycle, in the core: what the two adapters used to
 * decide each in its own way, now the same on every runtime (this suite runs
 * on Deno, Bun, the binary and the binary with `-w 2`).
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { connect, freePort, startBackend } from "../support/net.ts";
import { startBalance } from "../support/balance.ts";
import { synDropper } from "../support/health.ts";
import { sleep } from "../support/helpers.ts";

test("session: a client that leaves while its channel is connecting is logged with the channel it was given", async () => {
  const hole = await synDropper();
  // A silent server that passes a FIN on: nothing it says can make the line differ between runtimes.
  const backend = await startBackend("b", (s) => void s.on("end", () => s.end()));
  const port = await freePort();
  const lb = await startBalance(
    ["--log-connections", "-t", "1", String(port), `127.0.0.1:${hole.port}`, "!", `127.0.0.1:${backend.port}`],
    port,
    { debug: false },
  );
  try {
    const c = await connect(port);
    const from = c.socket.localPort!;
    // Gone (a reset: the one close a half-open runtime reports at once) long
    // before the first channel's connect times out.
    await sleep(100);
    c.socket.resetAndDestroy();
    await lb.waitForTrace(new RegExp(`connection 127\\.0\\.0\\.1:${from} -> .*\\n`), 15_000);
    const line = lb.stderr().split("\n").find((l) => l.includes(`connection 127.0.0.1:${from} -> `))!;
    assert.match(
      line,
      new RegExp(
        `-> group 1 channel 0 \\(127\\.0\\.0\\.1:${backend.port}\\): connect \\d{4,}\\.\\d ms, [\\d.]+ s, 0 bytes sent, 0 rcvd, client-reset$`,
      ),
    );
    assert.match(lb.stderr(), new RegExp(`connect to group 0 channel 0 .* failed: connect timed out after 1s`));
  } finally {
    await lb.stop();
    await backend.close();
    await hole.close();
  }
});

test("session: a refused connect and a refused health check are worded alike: connection refused", async () => {
  const refused = await freePort();
  for (
    const [args, words] of [
      [["--check", "--check-interval", "0.2", "--fall", "1"], /is DOWN: connection refused/],
      [[], new RegExp(`connect to group 0 channel 0 \\(127\\.0\\.0\\.1:${refused}\\) failed: connection refused`)],
    ] as const
  ) {
    const port = await freePort();
    const lb = await startBalance([...args, String(port), `127.0.0.1:${refused}`], port, { debug: false });
    try {
      if (args.length === 0) await (await connect(port)).ended();
      await lb.waitForTrace(words, 10_000);
      assert.doesNotMatch(lb.stderr(), /Failed to connect|os error|ECONNREFUSED/);
    } finally {
      await lb.stop();
    }
  }
});
