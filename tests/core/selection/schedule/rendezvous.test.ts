/**
 * Consistent hashing of Hash (`%`) groups: the properties issue 12 asks of
 * it, over random channel sets and client addresses, and golden values so
 * that a change of the hash (which would move every client on upgrade) is
 * caught.
 */
import { test } from "../../../support/test.ts";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Channel, Group, hashChannelIdentity, hashClientAddress, mixHash } from "../../../../src/core/mod.ts";
import { BUCKETS, hashedChannels, Ranking } from "../../../../src/core/selection/schedule/rendezvous.ts";

const RUNS = { numRuns: 40 };

interface Spec {
  address: string;
  port: number;
  weight: number;
}

const groupOf = (specs: readonly Spec[]) =>
  new Group(
    "Hash",
    specs.map((s) => {
      const c = new Channel(s.address, s.port);
      c.weight = s.weight;
      return c;
    }),
  );
const name = (c: Channel | undefined | void) => (c ? `${c.address}:${c.port}` : "none");
/** The channel for a client, given by its address or by its hash. */
const pick = (group: Group, client: string | number, failover = false) =>
  hashedChannels(group, typeof client === "number" ? client : hashClientAddress(client), failover).next().value;
const assignment = (group: Group, clients: readonly number[], failover = false) =>
  clients.map((c) => name(pick(group, c, failover)));

/**
 * The hashes of `count` distinct client addresses, IPv4 and IPv6, from a
 * seed. The hash is deterministic, so a bound that a fair hash meets only on
 * average needs enough of them: 3 % of 10,000 is six standard deviations.
 */
const clientsFrom = (seed: number, count: number) =>
  Array.from({ length: count }, (_, i) => {
    const x = (mixHash(seed, i) + i) >>> 0;
    return i % 4 === 3
      ? `2001:db8::${(x >>> 16).toString(16)}:${i.toString(16)}`
      : `10.${x >>> 24}.${(i >> 8) & 255}.${i & 255}`;
  }).map(hashClientAddress);

// Distinct channels: 1..maxN of them, weights 1..4 (0 sometimes).
const channelSet = (minN: number, maxN: number, zero = false) =>
  fc.uniqueArray(
    fc.record({
      address: fc.oneof(fc.ipV4(), fc.ipV6()),
      port: fc.integer({ min: 1, max: 65535 }),
      weight: fc.integer({ min: zero ? 0 : 1, max: 4 }),
    }),
    { minLength: minN, maxLength: maxN, selector: (s) => `${hashChannelIdentity(s.address, s.port)}` },
  );

test("rendezvous: golden values: the same clients get the same channels in every version", () => {
  // Changing these moves every hashed client of every balancer on upgrade.
  const group = groupOf([1, 2, 3, 4, 5].map((i) => ({ address: `10.0.0.${i}`, port: 80, weight: 1 })));
  const clients = [
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "10.0.0.4",
    "192.168.1.77",
    "172.16.5.9",
    "::1",
    "2001:db8::7",
    "fe80::1",
    "127.1.0.1",
  ];
  assert.deepEqual(clients.map((c) => pick(group, c)!.address), GOLDEN_UNIFORM);
  group.channels[0].weight = 3;
  group.channels[4].weight = 0;
  group.changed();
  assert.deepEqual(clients.map((c) => pick(group, c)!.address), GOLDEN_WEIGHTED);
  assert.deepEqual(
    [hashChannelIdentity("10.0.0.1", 80), hashChannelIdentity("::1", 443), mixHash(0, 0), mixHash(12345, 67890)],
    GOLDEN_HASHES,
  );
});
const GOLDEN_UNIFORM = [2, 2, 2, 2, 3, 2, 2, 2, 1, 1].map((i) => `10.0.0.${i}`);
const GOLDEN_WEIGHTED = [2, 1, 1, 2, 3, 2, 1, 2, 1, 1].map((i) => `10.0.0.${i}`);
const GOLDEN_HASHES = [419308782, 3755983115, 4279838538, 1188011729];

test("rendezvous: an IPv4 client and its IPv4-mapped form get the same channel; so do a channel's two forms", () => {
  const group = groupOf([1, 2, 3, 4, 5, 6, 7].map((i) => ({ address: `10.0.0.${i}`, port: 80, weight: 1 })));
  const mapped = groupOf([1, 2, 3, 4, 5, 6, 7].map((i) => ({ address: `::ffff:10.0.0.${i}`, port: 80, weight: 1 })));
  for (let i = 0; i < 200; i++) {
    const v4 = `172.16.${i}.9`;
    assert.equal(name(pick(group, v4)), name(pick(group, `::ffff:${v4}`)));
    assert.equal(pick(group, v4)!.address, pick(mapped, v4)!.address.slice(7));
  }
});

test("rendezvous: two balancers given the same channels in different orders agree on every client", () => {
  const clients = clientsFrom(1, 500);
  fc.assert(
    fc.property(channelSet(1, 40, true), fc.context(), (specs, ctx) => {
      const shuffled = [...specs].sort((a, b) => mixHash(a.port, 7) - mixHash(b.port, 7)).reverse();
      ctx.log(`${specs.length} channels`);
      assert.deepEqual(assignment(groupOf(shuffled), clients), assignment(groupOf(specs), clients));
      assert.deepEqual(assignment(groupOf(shuffled), clients, true), assignment(groupOf(specs), clients, true));
    }),
    RUNS,
  );
});

/** Clients that change channel from `before` to `after`; each must come from or go to `changed`. */
function moves(before: readonly string[], after: readonly string[], changed: Spec): number {
  let moved = 0;
  before.forEach((was, i) => {
    if (was === after[i]) return;
    moved++;
    assert.ok(
      was === `${changed.address}:${changed.port}` || after[i] === `${changed.address}:${changed.port}`,
      "only the changed channel's clients move",
    );
  });
  return moved;
}

test("rendezvous: removing or adding one of n channels moves at most 1/n + 3 % of clients, only from or to it", () => {
  const clients = clientsFrom(2, 10_000);
  fc.assert(
    fc.property(channelSet(2, 30), fc.nat(), fc.boolean(), (weighted, which, uniform) => {
      const specs = uniform ? weighted.map((s) => ({ ...s, weight: 1 })) : weighted;
      const n = specs.length;
      const gone = specs[which % n];
      // With weights, "1/n" is the channel's share of the weights.
      const share = gone.weight / specs.reduce((sum, s) => sum + s.weight, 0);
      const all = assignment(groupOf(specs), clients);
      const rest = assignment(groupOf(specs.filter((s) => s !== gone)), clients);
      const removed = moves(all, rest, gone);
      assert.ok(removed / clients.length <= share + 0.03, `removing 1 of ${n} (share ${share}) moved ${removed}`);
      if (uniform) assert.ok(removed / clients.length <= 1 / n + 0.03);
      assert.equal(moves(rest, all, gone), removed, "adding it back moves the same clients back");
      assert.ok(
        all.every((was, i) => was === rest[i] || was === `${gone.address}:${gone.port}`),
        "all to the newcomer",
      );
    }),
    RUNS,
  );
});

test("rendezvous: disabling one of n: only its clients move, with -H spread by weight (≤ 1.5× fair share), and come back", () => {
  const clients = clientsFrom(3, 40_000);
  fc.assert(
    fc.property(channelSet(4, 6), fc.nat(), (specs, which) => {
      const group = groupOf(specs);
      const off = group.channels[which % specs.length];
      const before = assignment(group, clients);
      off.enabled = false;
      const plain = assignment(group, clients);
      const failover = assignment(group, clients, true);
      const got = new Map<string, number>();
      let moved = 0;
      before.forEach((was, i) => {
        if (was !== name(off)) {
          assert.equal(plain[i], was, "a client of another channel stays");
          return assert.equal(failover[i], was, "a client of another channel stays (-H)");
        }
        assert.equal(plain[i], "none", "without -H: on to the next group");
        moved++;
        got.set(failover[i], (got.get(failover[i]) ?? 0) + 1);
      });
      const others = group.channels.filter((c) => c !== off);
      const total = others.reduce((s, c) => s + c.weight, 0);
      assert.ok(moved / clients.length <= off.weight / (total + off.weight) + 0.03, `${moved} moved`);
      for (const c of others) {
        const fair = moved * c.weight / total;
        const share = got.get(name(c)) ?? 0;
        assert.ok(share <= 1.5 * fair, `${name(c)} got ${share} of ${moved}, fair ${fair}`);
      }
      off.enabled = true;
      assert.deepEqual(assignment(group, clients), before);
      assert.deepEqual(assignment(group, clients, true), before);
    }),
    { numRuns: 20 },
  );
});

test("rendezvous: a weight-2 channel gets twice the clients of a weight-1 channel (± 15 % over 2,000 addresses)", () => {
  const clients = clientsFrom(5, 2000);
  const group = groupOf([1, 2, 3, 4, 5].map((i) => ({ address: `10.0.0.${i}`, port: 80, weight: i === 1 ? 2 : 1 })));
  const counts = new Map<string, number>();
  for (const c of assignment(group, clients)) counts.set(c, (counts.get(c) ?? 0) + 1);
  const heavy = counts.get("10.0.0.1:80")!;
  for (let i = 2; i <= 5; i++) {
    const ratio = heavy / counts.get(`10.0.0.${i}:80`)!;
    assert.ok(ratio > 1.7 && ratio < 2.3, `${[...counts]}`);
  }
});

test("rendezvous: weights over random channel sets: each channel's share is its share of the weights", () => {
  const clients = clientsFrom(6, 20000);
  fc.assert(
    fc.property(channelSet(2, 6, true), (specs) => {
      const total = specs.reduce((s, c) => s + c.weight, 0);
      fc.pre(total > 0);
      const counts = new Map<string, number>();
      for (const c of assignment(groupOf(specs), clients)) counts.set(c, (counts.get(c) ?? 0) + 1);
      for (const s of specs) {
        const got = counts.get(`${s.address}:${s.port}`) ?? 0;
        const fair = clients.length * s.weight / total;
        if (s.weight === 0) assert.equal(got, 0, "weight 0 takes no client");
        else assert.ok(Math.abs(got - fair) <= 0.15 * fair, `${got} for fair ${fair}`);
      }
    }),
    { numRuns: 15 },
  );
});

test("rendezvous: every weight 0: no channel, not even with -H", () => {
  const group = groupOf([{ address: "10.0.0.1", port: 80, weight: 0 }, { address: "10.0.0.2", port: 80, weight: 0 }]);
  assert.equal(pick(group, "10.0.0.9"), undefined);
  assert.equal(pick(group, "10.0.0.9", true), undefined);
});

test("rendezvous: with -H the walk is the whole ranking by score, skipping unusable channels", () => {
  fc.assert(
    fc.property(channelSet(1, 24, true), fc.integer({ min: 0, max: BUCKETS - 1 }), (specs, bucket) => {
      const group = groupOf(specs);
      const ranking = new Ranking(group.channels, group.generation);
      const walk = [...hashedChannels(group, bucket << 16, true)];
      const positive = group.channels.filter((c) => c.weight > 0);
      assert.equal(walk.length, positive.length);
      const scores = walk.map((c) => ranking.score(bucket, group.channels.indexOf(c)));
      for (let i = 1; i < scores.length; i++) assert.ok(scores[i - 1] >= scores[i]);
      if (walk.length > 1) {
        walk[0].maxc = 1;
        walk[0].tryClaim();
        assert.deepEqual([...hashedChannels(group, bucket << 16, true)], walk.slice(1));
      }
    }),
    RUNS,
  );
});

test("rendezvous: the memo table of a large group gives what the direct computation gives, for every bucket", () => {
  const group = groupOf(
    Array.from({ length: 40 }, (_, i) => ({ address: `10.1.0.${i}`, port: 80, weight: 1 + (i % 3) })),
  );
  const table = new Ranking(group.channels, 0);
  for (let b = 0; b < BUCKETS; b++) assert.equal(table.top(b), table.next(b, -1));
  for (let b = 0; b < BUCKETS; b += 97) assert.equal(table.top(b), table.next(b, -1), "memoised");
});

test("rendezvous: a weight change reaches the picks once the group's generation moves", () => {
  const clients = clientsFrom(7, 400);
  const group = groupOf([1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((i) => ({ address: `10.0.0.${i}`, port: 80, weight: 1 })));
  const before = assignment(group, clients);
  group.channels[2].weight = 0;
  group.changed();
  const after = assignment(group, clients);
  assert.ok(!after.includes("10.0.0.3:80"));
  before.forEach((was, i) => was !== "10.0.0.3:80" && assert.equal(after[i], was));
});

test("rendezvous: scores are -weight/ln(u) (our logarithm agrees with Math.log)", () => {
  const group = groupOf([{ address: "10.0.0.1", port: 80, weight: 3 }, { address: "10.0.0.2", port: 80, weight: 1 }]);
  const ranking = new Ranking(group.channels, 0);
  for (let b = 0; b < BUCKETS; b += 13) {
    const u = (mixHash(b, hashChannelIdentity("10.0.0.1", 80)) + 0.5) / 2 ** 32;
    const expected = -3 / Math.log(u);
    assert.ok(Math.abs(ranking.score(b, 0) - expected) <= 1e-14 * expected, `${b}`);
  }
});
