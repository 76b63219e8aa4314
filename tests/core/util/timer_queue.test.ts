import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import { until } from "../../support/wait.ts";
import { TimerQueue } from "../../../src/core/mod.ts";

test("timer queue: items run in time order, each once; rescheduled and cancelled ones as last said", async () => {
  const ran: string[] = [];
  const queue = new TimerQueue<string>((item) => ran.push(item), 0);
  const t0 = Date.now();
  queue.schedule("c", t0 + 60);
  queue.schedule("a", t0 + 20);
  queue.schedule("b", t0 + 40);
  queue.schedule("moved", t0 + 10);
  queue.schedule("moved", t0 + 80);
  queue.schedule("gone", t0 + 30);
  queue.cancel("gone");
  try {
    await until(() => ran.length, (n) => n === 4, "every item due");
    assert.deepEqual(ran, ["a", "b", "c", "moved"]);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(ran, ["a", "b", "c", "moved"], "nothing runs twice, the cancelled one never");
  } finally {
    queue.clear();
  }
});

test("timer queue: an item that schedules itself later does not delay one due sooner", async () => {
  const ran: { item: string; at: number }[] = [];
  const t0 = Date.now();
  const queue = new TimerQueue<string>((item) => {
    ran.push({ item, at: Date.now() - t0 });
    if (item === "again" && ran.length < 3) queue.schedule("again", Date.now() + 1000);
  }, 0);
  queue.schedule("again", t0);
  queue.schedule("soon", t0 + 30);
  try {
    await until(() => ran.find((r) => r.item === "soon"), (r) => r !== undefined, "the item due soon", { ms: 900 });
    assert.deepEqual(ran.map((r) => r.item), ["again", "soon"]);
  } finally {
    queue.clear();
  }
});

test("timer queue: items due within the slack run together; clear stops everything", async () => {
  const ran: number[] = [];
  const at: number[] = [];
  const queue = new TimerQueue<number>((item) => ran.push(item) && at.push(Date.now()), 50);
  const t0 = Date.now();
  queue.schedule(1, t0 + 20);
  queue.schedule(2, t0 + 60);
  try {
    await until(() => ran.length, (n) => n === 2, "both items");
    assert.equal(at[1], at[0], "the second ran with the first, early by less than the slack");
  } finally {
    queue.clear();
  }
  queue.schedule(3, Date.now());
  queue.clear();
  await new Promise((r) => setTimeout(r, 30));
  assert.deepEqual(ran, [1, 2], "nothing after clear");
});
