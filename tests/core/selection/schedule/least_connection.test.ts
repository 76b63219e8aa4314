import { test } from "../../../support/test.ts";
import assert from "node:assert/strict";
import { Balancer, Channel, Group, pickChannels } from "../../../../src/core/mod.ts";
import { leastConnectionChannels } from "../../../../src/core/selection/schedule/least_connection.ts";

/** An LC group of channels with these weights, as the balancer makes one from a command line. */
function lc(...weights: number[]): Group {
  const channels = weights.map((weight, i) => ({ host: "127.0.0.1", port: i + 1, maxc: 0, weight }));
  return Balancer.fromSpecs([{ type: "LC", channels }], { autodisable: false, hashFailover: false }).groups[0];
}
/** Picks and claims (keeps) `count` connections: the channel indices in order. */
function claims(group: Group, count: number): number[] {
  return Array.from({ length: count }, () => {
    for (const c of leastConnectionChannels(group)) if (c.tryClaim()) return group.channels.indexOf(c);
    return -1;
  });
}
const idx = (group: Group, it: Iterable<Channel>) => [...it].map((c) => group.channels.indexOf(c));

test("least connection: an idle group alternates, ties going in round-robin order", () => {
  const group = lc(1, 1, 1);
  const seq = Array.from({ length: 6 }, () => group.channels.indexOf(leastConnectionChannels(group).next().value!));
  assert.deepEqual(seq, [0, 1, 2, 0, 1, 2]);
});

test("least connection: the channel with the fewest connections, wherever the position is", () => {
  const group = lc(1, 1, 1);
  const [a, b, c] = group.channels;
  a.tryClaim(), a.tryClaim(), b.tryClaim(), c.tryClaim(), c.tryClaim();
  assert.deepEqual(claims(group, 1), [1]);
  // Now 2,2,2: a tie, round robin from past b.
  assert.deepEqual(claims(group, 3), [2, 0, 1]);
  c.release(), c.release(), c.release();
  assert.deepEqual(claims(group, 3), [2, 2, 2]);
});

test("least connection: weights: lowest c/weight; a weight-2 channel holds twice the connections", () => {
  const group = lc(2, 1);
  const seq = claims(group, 9);
  assert.deepEqual(group.channels.map((c) => c.c), [6, 3]);
  // At 2/2 against 1/1 the tie goes to b, round robin being past a.
  assert.deepEqual(seq, [0, 1, 0, 1, 0, 0, 1, 0, 0]);
});

test("least connection: equal c/weight is a tie (2/2 = 1/1), broken in round-robin order", () => {
  const group = lc(2, 1);
  const [a, b] = group.channels;
  a.tryClaim(), a.tryClaim(), b.tryClaim();
  group.current = 1;
  assert.equal(leastConnectionChannels(group).next().value, b);
  assert.equal(leastConnectionChannels(group).next().value, a);
  assert.equal(leastConnectionChannels(group).next().value, b);
});

test("least connection: weight 0, disabled, down and full channels take no new connection", () => {
  const group = lc(0, 1, 1, 1);
  const [, b, c, d] = group.channels;
  b.enabled = false;
  c.up = false;
  d.maxc = 1;
  assert.deepEqual(claims(group, 2), [3, -1]);
  const backup = new Group("RR", [new Channel("127.0.0.1", 9)]);
  assert.deepEqual([...pickChannels([group, backup], "x", false)].map((ch) => ch.port), [9]);
});

test("least connection: when a pick is not taken, the next best, each channel once", () => {
  const group = lc(1, 1, 1);
  const [a, b, c] = group.channels;
  b.tryClaim();
  c.tryClaim(), c.tryClaim();
  // Connects that fail leave the counts as they were: every channel is tried once, by load.
  assert.deepEqual(idx(group, leastConnectionChannels(group)), [0, 1, 2]);
  a.tryClaim(), a.tryClaim(), a.tryClaim();
  assert.deepEqual(idx(group, leastConnectionChannels(group)), [1, 2, 0]);
});

test("least connection: usability is checked at each attempt, as things then stand", () => {
  const group = lc(1, 1, 1);
  const it = leastConnectionChannels(group);
  assert.equal(it.next().value, group.channels[0]);
  group.channels[2].enabled = false;
  assert.equal(it.next().value, group.channels[1]);
  assert.equal(it.next().done, true);
});
