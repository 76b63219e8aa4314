import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  BATCH_MS,
  ConnectionBatch,
  type ConnectionRecord,
  type EndReason,
  formatConnectionLine,
} from "../../../src/core/observe/connection_log.ts";

const record: ConnectionRecord = {
  clientAddress: "10.0.0.7",
  clientPort: 53124,
  channel: "group 0 channel 1 (10.0.0.2:80)",
  connectMs: 0.4321,
  durationMs: 12031.4,
  sent: 1234,
  rcvd: 56789,
  reason: "client-closed",
};

test("connection log: a connected client's line names client, channel, connect time, duration, bytes and reason", () => {
  assert.equal(
    formatConnectionLine(record),
    "connection 10.0.0.7:53124 -> group 0 channel 1 (10.0.0.2:80): connect 0.4 ms, 12.031 s, 1234 bytes sent, 56789 rcvd, client-closed",
  );
});

test("connection log: a client without a channel has no connect time; IPv6 clients are bracketed", () => {
  for (const reason of ["connect-failed", "no-channel"] as EndReason[]) {
    assert.equal(
      formatConnectionLine({
        ...record,
        clientAddress: "::1",
        channel: undefined,
        durationMs: 5003,
        sent: 0,
        rcvd: 0,
        reason,
      }),
      `connection [::1]:53124 -> none: 5.003 s, 0 bytes sent, 0 rcvd, ${reason}`,
    );
  }
});

test("connection log: whatever text a record holds, the line is one line of printable ASCII", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary" }), fc.string({ unit: "binary" }), (address, channel) => {
      const line = formatConnectionLine({ ...record, clientAddress: address, channel });
      assert.match(line, /^[\x20-\x7e]*$/);
      assert.ok(line.startsWith("connection ") && line.endsWith(", client-closed"), line);
    }),
  );
});

test("connection log: text that is not plain printable ASCII is escaped, plain text is kept as it is", () => {
  const line = formatConnectionLine({ ...record, clientAddress: "a\\b\n\x1b[2J", channel: "group 0 channel 0 (ä:1)" });
  assert.equal(
    line,
    "connection a\\\\b\\n\\u001b[2J:53124 -> group 0 channel 0 (\\u00e4:1): connect 0.4 ms, 12.031 s, 1234 bytes sent, 56789 rcvd, client-closed",
  );
});

test("connection log: a batch hands on its records together, in order, once, within BATCH_MS or at flush", async () => {
  const handed: ConnectionRecord[][] = [];
  const batch = new ConnectionBatch((records) => handed.push(records));
  batch.add({ ...record, clientPort: 1 });
  batch.add({ ...record, clientPort: 2 });
  assert.equal(handed.length, 0, "not at once");
  await new Promise((r) => setTimeout(r, BATCH_MS * 3));
  assert.deepEqual(handed.map((b) => b.map((r) => r.clientPort)), [[1, 2]]);
  batch.add({ ...record, clientPort: 3 });
  batch.flush();
  batch.flush();
  assert.deepEqual(handed.map((b) => b.map((r) => r.clientPort)), [[1, 2], [3]]);
  await new Promise((r) => setTimeout(r, BATCH_MS * 2));
  assert.equal(handed.length, 2, "a flushed batch's timer is gone");
});
