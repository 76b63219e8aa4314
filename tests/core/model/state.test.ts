import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import { Balancer, parseGroups, SharedState } from "../../../src/core/mod.ts";

const specs = parseGroups(["127.0.0.1:81:2", "127.0.0.1:82", "%", "127.0.0.1:83"], 80, () => undefined);
const options = { autodisable: false, hashFailover: false };

/** The control thread's balancer and a worker's view over the same state (writer 1). */
function twoViews() {
  const main = Balancer.fromSpecs(specs, options, undefined, undefined, 2);
  const worker = new Balancer([], options, undefined, new SharedState(main.state.handle, 1));
  worker.adopt(main.layout());
  return { main, worker };
}

test("shared state: a worker's view sees the same channels, types and flags", () => {
  const { main, worker } = twoViews();
  assert.deepEqual(worker.layout(), main.layout());
  assert.deepEqual(worker.groups.map((g) => g.type), ["Hash", "RR"]);
  main.groups[0].channels[1].enabled = false;
  main.groups[0].type = "RR";
  assert.equal(worker.groups[0].channels[1].enabled, false);
  assert.equal(worker.groups[0].type, "RR");
  assert.equal(worker.groups[0].channels[0].maxc, 2);
});

test("shared state: maxc holds across views; c and the open total are one", () => {
  const { main, worker } = twoViews();
  const [mine, theirs] = [main.groups[0].channels[0], worker.groups[0].channels[0]];
  assert.equal(mine.tryClaim(), true);
  assert.equal(theirs.tryClaim(), true);
  assert.equal(theirs.tryClaim(), false, "maxc 2 reached by the two views together");
  assert.equal(mine.c, 2);
  theirs.release();
  assert.equal(mine.c, 1);
  assert.equal(mine.totalc, 0, "a claim is no connection until its connect succeeds");
});

test("shared state: counters add up over writers; reset moves the baseline, not the writers' rows", () => {
  const { main, worker } = twoViews();
  const [mine, theirs] = [main.groups[0].channels[0], worker.groups[0].channels[0]];
  mine.countSent(100);
  theirs.countSent(23);
  theirs.countRcvd(7);
  assert.deepEqual([mine.sent, theirs.sent, mine.rcvd], [123, 123, 7]);
  mine.sent = 0;
  theirs.countSent(5);
  assert.deepEqual([mine.sent, theirs.sent], [5, 5]);
});

test("shared state: a channel created in the control thread reaches a worker in place", async () => {
  const { main, worker } = twoViews();
  main.groups[0].type = "RR";
  const before = worker.groups[0].channels[0];
  const created = main.addChannel(2, "127.0.0.9", 90, 0, false)!;
  main.groups[0].channels[0].address = "127.0.0.5";
  worker.adopt(main.layout());
  assert.equal(worker.groups[0].channels[0], before, "existing channels stay the same objects");
  assert.equal(before.address, "127.0.0.5");
  assert.deepEqual([worker.groups[2].channels[0].address, worker.groups[2].channels[0].enabled], ["127.0.0.9", false]);
  created.enabled = true;
  assert.equal(worker.groups[2].channels[0].enabled, true);
  const got = await worker.connect("10.0.0.1", () => Promise.resolve("conn"));
  assert.equal(got.channel?.address, "127.0.0.5");
  assert.equal(main.openConnections(), 1);
});

test("shared state: allocation stops at the capacity", () => {
  const state = SharedState.create({ groups: 1, channels: 2, writers: 1 });
  assert.deepEqual([state.allocateChannel(), state.allocateChannel(), state.allocateChannel()], [0, 1, undefined]);
});
