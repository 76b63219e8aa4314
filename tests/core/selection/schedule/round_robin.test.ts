import { test } from "../../../support/test.ts";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Balancer, Channel, Group, pickChannels, SharedState } from "../../../../src/core/mod.ts";
import { roundRobinChannels, roundRobinCycle } from "../../../../src/core/selection/schedule/round_robin.ts";

function weighted(...weights: number[]): Group {
  return new Group(
    "RR",
    weights.map((w, i) => {
      const c = new Channel("127.0.0.1", i + 1);
      c.weight = w;
      return c;
    }),
  );
}
/** `count` picks, each claimed and released at once: the channel indices in order. */
function picks(group: Group, count: number): number[] {
  return Array.from({ length: count }, () => {
    const c = roundRobinChannels(group).next().value;
    return c ? group.channels.indexOf(c) : -1;
  });
}

/** nginx's loop as written (ngx_http_upstream_get_peer), one full period. */
function nginx(weights: number[]): number[] {
  const current = weights.map(() => 0);
  const total = weights.reduce((a, b) => a + b, 0);
  const out: number[] = [];
  for (let t = 0; t < total; t++) {
    let best = -1;
    weights.forEach((w, i) => {
      if (w === 0) return;
      current[i] += w;
      if (best < 0 || current[i] > current[best]) best = i;
    });
    current[best] -= total;
    out.push(best);
  }
  return out;
}

test("smooth WRR: weights 5,1,1 interleave: every window of 7 holds 5/1/1, never 5 in a row", () => {
  const group = weighted(5, 1, 1);
  const seq = picks(group, 70);
  assert.deepEqual(seq.slice(0, 7), [0, 0, 1, 0, 2, 0, 0]);
  for (let i = 0; i + 7 <= seq.length; i++) {
    const window = seq.slice(i, i + 7);
    assert.deepEqual([0, 1, 2].map((k) => window.filter((x) => x === k).length), [5, 1, 1], `window at ${i}`);
  }
  const longestRun = seq.reduce((acc, x, i) => {
    const run = i > 0 && seq[i - 1] === x ? acc.run + 1 : 1;
    return { run, max: Math.max(acc.max, run) };
  }, { run: 0, max: 0 }).max;
  assert.ok(longestRun < 5, `run of ${longestRun}`);
});

test("smooth WRR: the sequences of nginx's algorithm for several weight sets", () => {
  for (
    const [weights, expected] of [
      [[5, 1, 1], [0, 0, 1, 0, 2, 0, 0]],
      [[2, 1], [0, 1, 0]],
      [[1, 2, 3], [2, 1, 0, 2, 1, 2]],
      [[3, 0, 1], [0, 0, 2, 0]],
      [[4, 4, 2], [0, 1, 2, 0, 1]],
      [[1, 1, 1, 1], [0, 1, 2, 3]],
    ] as const
  ) {
    assert.deepEqual([...roundRobinCycle(weighted(...weights)).order], expected, `weights ${weights}`);
    assert.deepEqual(picks(weighted(...weights), expected.length), expected, `picks for ${weights}`);
  }
});

test("smooth WRR: the derived cycle is nginx's loop, period divided by the weights' gcd, for any weights", () => {
  fc.assert(
    fc.property(fc.array(fc.nat(256), { minLength: 1, maxLength: 12 }), (weights) => {
      const order = [...roundRobinCycle(weighted(...weights)).order];
      const full = nginx(weights);
      assert.equal(full.length % Math.max(order.length, 1), 0);
      for (let i = 0; i < full.length; i++) assert.equal(order[i % order.length], full[i]);
    }),
    { numRuns: 300 },
  );
});

test("smooth WRR: all weights 1 is plain round robin, position = channel index", () => {
  const group = weighted(1, 1, 1, 1, 1);
  assert.deepEqual(picks(group, 11), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0]);
  assert.equal(group.current, 1);
});

test("smooth WRR: weight 0 takes no new connection; all 0 yields nothing and the next group serves", () => {
  assert.deepEqual(picks(weighted(0, 1, 0, 1), 4), [1, 3, 1, 3]);
  const none = weighted(0, 0);
  const backup = new Group("RR", [new Channel("127.0.0.1", 9)]);
  assert.deepEqual([...pickChannels([none, backup], "x", false)].map((c) => c.port), [9]);
});

test("smooth WRR: a walk yields each usable channel once, though weights repeat it in the cycle", () => {
  const group = weighted(5, 1, 1);
  const [a, b, c] = group.channels;
  assert.deepEqual([...roundRobinChannels(group)], [a, b, c]);
  b.enabled = false;
  assert.deepEqual([...roundRobinChannels(group)], [a, c]);
  a.enabled = false;
  assert.deepEqual([...roundRobinChannels(group)], [c]);
});

test("smooth WRR: interleaved picks in one thread never yield a channel twice to one client", () => {
  const group = weighted(3, 3, 1);
  const first = roundRobinChannels(group);
  const seen = [first.next().value];
  for (let i = 0; i < 5; i++) [...roundRobinChannels(group)];
  for (let r = first.next(); !r.done; r = first.next()) seen.push(r.value);
  assert.equal(new Set(seen).size, seen.length);
  assert.equal(seen.length, 3);
});

test("smooth WRR: a weight change is seen once the group says it changed", () => {
  const group = weighted(1, 1);
  assert.deepEqual(picks(group, 2), [0, 1]);
  group.channels[0].weight = 3;
  assert.deepEqual(picks(group, 2), [0, 1], "derived cycle kept until changed()");
  group.changed();
  group.current = 0;
  assert.deepEqual(picks(group, 8), [0, 0, 1, 0, 0, 0, 1, 0]);
});

test("smooth WRR: exact across threads: two views of one shared state share one sequence", () => {
  const first = Balancer.fromSpecs(
    [{ type: "RR", channels: [5, 1, 1].map((weight, i) => ({ host: "127.0.0.1", port: i + 1, maxc: 0, weight })) }],
    { autodisable: false, hashFailover: false },
  );
  const second = new Balancer([], first.options, undefined, new SharedState(first.state.handle, 0));
  second.adopt(first.layout());
  const seq: number[] = [];
  for (let i = 0; i < 21; i++) {
    const view = i % 3 === 0 ? second : first;
    seq.push(pickChannels(view.groups, "x", false).next().value!.port - 1);
  }
  assert.deepEqual(seq, [0, 0, 1, 0, 2, 0, 0].flatMap((x) => [x]).concat(...Array(2).fill([0, 0, 1, 0, 2, 0, 0])));
});

test("smooth WRR: deriving 1,000 channels of mixed weights is quick", () => {
  const group = weighted(...Array.from({ length: 1000 }, (_, i) => 1 + (i * 37) % 256));
  const t0 = performance.now();
  const cycle = roundRobinCycle(group);
  const ms = performance.now() - t0;
  assert.equal(cycle.order.length, group.channels.reduce((s, c) => s + c.weight, 0));
  assert.ok(ms < 2000, `${ms} ms`);
});
