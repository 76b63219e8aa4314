import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import { addressBytes, clientKey, ClientTable, formatClient } from "../../../src/core/mod.ts";

const key = (address: string) => clientKey(addressBytes(address)!);

test("client table: a client is an IPv4 address or an IPv6 /64", () => {
  assert.deepEqual(key("10.0.0.7"), { family: 4, hi: 0, lo: 0x0a000007 });
  assert.deepEqual(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
  assert.notDeepEqual(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
  assert.deepEqual(key("::ffff:10.0.0.7"), key("10.0.0.7"));
  assert.equal(formatClient(key("10.0.0.7")), "10.0.0.7");
  assert.equal(formatClient(key("2001:db8:1:2::1")), "2001:db8:1:2::/64");
  assert.equal(formatClient(key("2001:db8::1")), "2001:db8::/64");
  assert.equal(formatClient(key("::1")), "::/64");
});

test("client table: --max-per-client counts open connections; a release makes room again", () => {
  const table = ClientTable.create(16);
  const a = key("10.0.0.7");
  const slots = [1, 2, 3].map(() => table.admit(a, { maxOpen: 2 }, 0));
  assert.equal(typeof slots[0], "number");
  assert.equal(typeof slots[1], "number");
  assert.equal(slots[2], "concurrent");
  assert.equal(typeof table.admit(key("10.0.0.8"), { maxOpen: 2 }, 0), "number", "another client has its own count");
  table.release(slots[0] as number);
  assert.equal(typeof table.admit(a, { maxOpen: 2 }, 0), "number");
  assert.deepEqual(table.top(1).map((r) => [formatClient(r.key), r.open, r.total, r.refused]), [["10.0.0.7", 2, 3, 1]]);
});

test("client table: --rate-per-client is a token bucket with a burst of N", () => {
  const table = ClientTable.create(16);
  const a = key("10.0.0.7");
  const rate = { rate: { connections: 20, seconds: 2 } };
  const admitted = (now: number, n: number) =>
    Array.from({ length: n }, () => table.admit(a, rate, now)).filter((s) => typeof s === "number").length;
  assert.equal(admitted(1000, 25), 20, "the burst");
  assert.equal(table.admit(a, rate, 1000), "rate");
  assert.equal(admitted(1100, 5), 1, "10 per second: one token in 100 ms");
  assert.equal(admitted(3100, 30), 20, "refilled to the burst, no more");
  assert.equal(admitted(3100, 1), 0);
});

test("client table: full, it forgets the least recently seen client, which starts afresh", () => {
  const table = ClientTable.create(16);
  const limits = { maxOpen: 1 };
  const held = Array.from({ length: 16 }, (_, i) => table.admit(key(`10.0.0.${i}`), limits, i) as number);
  assert.equal(table.admit(key("10.0.0.0"), limits, 20), "concurrent", "10.0.0.0 is seen again, so most recent");
  assert.equal(typeof table.admit(key("10.0.1.1"), limits, 21), "number", "evicts 10.0.0.1, the least recent");
  assert.equal(table.size, 16);
  assert.equal(typeof table.admit(key("10.0.0.1"), limits, 22), "number", "forgotten: counts afresh");
  // The old connection of a forgotten client ends: nothing is taken from the new entry.
  table.release(held[1]);
  table.release(held[2]); // 10.0.0.2 was evicted by 10.0.0.1's return
  const rows = new Map(table.top(16).map((r) => [formatClient(r.key), r.open]));
  assert.equal(rows.get("10.0.0.1"), 1);
  assert.equal(rows.get("10.0.0.0"), 1);
  assert.equal(rows.size, 16);
});

test("client table: 100,000 distinct clients through a table of 1,000 stay 1,000, and every release balances", () => {
  const table = ClientTable.create(1000);
  const open: number[] = [];
  for (let i = 0; i < 100_000; i++) {
    const slot = table.admit({ family: 4, hi: 0, lo: 0x7f000000 + i }, { maxOpen: 3 }, i);
    assert.equal(typeof slot, "number");
    open.push(slot as number);
    if (open.length > 500) table.release(open.shift()!);
  }
  assert.equal(table.size, 1000);
  for (const slot of open) table.release(slot);
  assert.ok(table.top(1000).every((r) => r.open === 0));
});

test("client table: two threads' views of one buffer share the counts", () => {
  const table = ClientTable.create(64);
  const other = new ClientTable(table.handle);
  const a = key("10.0.0.7");
  const slot = table.admit(a, { maxOpen: 1 }, 0);
  assert.equal(other.admit(a, { maxOpen: 1 }, 0), "concurrent");
  other.release(slot as number);
  assert.equal(typeof other.admit(a, { maxOpen: 1 }, 0), "number");
});

test("client table: two worker threads admitting and releasing at once lose no count (the lock holds)", async () => {
  const table = ClientTable.create(64);
  const rounds = 50_000;
  const url = new URL("./table_worker.ts", import.meta.url).href;
  const workers = [0, 1].map(() => new Worker(url, { type: "module" }));
  try {
    const refused = await Promise.all(workers.map((w) =>
      new Promise<number>((resolve, reject) => {
        w.onmessage = (e) => resolve(e.data);
        w.onerror = (e) => reject(new Error(e.message));
        w.postMessage({ handle: table.handle, rounds });
      })
    ));
    assert.deepEqual(refused, [0, 0]);
    const rows = table.top(8);
    assert.equal(rows.reduce((n, r) => n + r.total, 0), 2 * rounds);
    assert.ok(rows.every((r) => r.open === 0), JSON.stringify(rows));
  } finally {
    workers.forEach((w) => w.terminate());
  }
});
