import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { receiveAll, sendRandom } from "../support/traffic.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as net from "node:net";
import { type Backend, connected, freePort, startBackend } from "../support/net.ts";
import { type Running, startBalance } from "../support/balance.ts";
import { until } from "../support/wait.ts";
import { status } from "../support/helpers.ts";

const PARALLEL = 8;
const EACH_WAY = 16 * 1024 * 1024; // 8 connections x 16 MiB x 2 directions = 256 MiB
// Within the test's 60 s: a stall fails naming the bytes that did arrive.
const TRANSFER_LIMIT_MS = 50_000;

test(`integrity: ${PARALLEL} connections x ${EACH_WAY >> 20} MiB each way at once (256 MiB): every byte, in order; counters exact`, async () => {
  const results: Promise<[[number, string], string]>[] = [];
  const dir = mkdtempSync(join(tmpdir(), "balance-int-"));
  const env = { BALANCE_CONTROL_DIR: dir };
  let backend: Backend | undefined;
  let lb: Running | undefined;
  try {
    backend = await startBackend("sink", (s) => {
      results.push(
        Promise.all([
          receiveAll(s, TRANSFER_LIMIT_MS),
          sendRandom(s, EACH_WAY, { maxChunk: 200_000, pauses: true }).then((h) => (s.end(), h)),
        ]),
      );
    });
    const port = await freePort();
    lb = await startBalance([String(port), `127.0.0.1:${backend.port}`], port, { env });
    const clients = await Promise.all(Array.from({ length: PARALLEL }, async () => {
      const c = await connected(net.connect({ port, host: "127.0.0.1", allowHalfOpen: true }));
      const received = receiveAll(c, TRANSFER_LIMIT_MS);
      const sent = await sendRandom(c, EACH_WAY, { maxChunk: 200_000, pauses: true });
      c.end();
      return { c, sent, received: await received };
    }));
    const backendSide = await Promise.all(results);
    // Match each client to its server end by the digest of what the client sent.
    const upHashes = backendSide.map(([[n, h]]) => (assert.equal(n, EACH_WAY), h)).sort();
    assert.deepEqual(upHashes, clients.map((c) => c.sent).sort(), "client to server: every byte, in order");
    const downHashes = backendSide.map(([, h]) => h).sort();
    assert.deepEqual(
      clients.map((c) => (assert.equal(c.received[0], EACH_WAY), c.received[1])).sort(),
      downHashes,
      "server to client: every byte, in order",
    );
    clients.forEach(({ c }) => c.destroy());
    const last = await until(async () => (await status(port, env))[0], (row) => row.c === 0, "c back to 0");
    assert.deepEqual([last.c, last.totalc, last.sent, last.rcvd], [
      0,
      PARALLEL,
      PARALLEL * EACH_WAY,
      PARALLEL * EACH_WAY,
    ]);
  } finally {
    await lb?.stop();
    await backend?.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
