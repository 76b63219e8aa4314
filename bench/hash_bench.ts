/**
 * Consistent hashing of Hash (`%`) groups (issue 12): the cost of a pick
 * with 3 and 1,000 channels, before (hash mod n, what balance did up to
 * 4.0) and after (weighted rendezvous), and the cost of a table rebuild.
 * `deno bench bench/hash_bench.ts`; docs/hashing.md has the figures.
 */
import { Channel, Group, hashClientAddress } from "../src/core/mod.ts";
import { BUCKETS, hashedChannels, Ranking } from "../src/core/selection/schedule/rendezvous.ts";

const groupOf = (n: number, weighted: boolean) =>
  new Group(
    "Hash",
    Array.from({ length: n }, (_, i) => {
      const c = new Channel(`10.${(i >> 8) & 255}.${i & 255}.1`, 80);
      if (weighted) c.weight = 1 + (i % 3);
      return c;
    }),
  );

// Clients are hashed beforehand: hashClientAddress is the same before and after.
const hashes = Array.from({ length: 1024 }, (_, i) => hashClientAddress(`10.${(i >> 8) & 255}.${i & 255}.7`));
let k = 0;

// The scheduler this replaces, kept here only as the baseline.
function* modN(group: Group, clientHash: number): Generator<Channel, void, undefined> {
  const channel = group.channels[clientHash % group.channels.length];
  if (channel.isUsable()) yield channel;
}

for (const n of [3, 1000]) {
  const group = groupOf(n, false);
  Deno.bench(`before: mod n, ${n} channels`, { group: `pick ${n}` }, () => {
    modN(group, hashes[k++ & 1023]).next();
  });
  // Steady state: every client's bucket already in the table (misses are measured below).
  const warm = (g: Group) => hashes.forEach((h) => hashedChannels(g, h, false).next());
  warm(group);
  Deno.bench(`after: rendezvous, ${n} channels`, { group: `pick ${n}`, baseline: true }, () => {
    hashedChannels(group, hashes[k++ & 1023], false).next();
  });
  const weighted = groupOf(n, true);
  warm(weighted);
  Deno.bench(`after: rendezvous, ${n} channels, weights 1-3`, { group: `pick ${n}` }, () => {
    hashedChannels(weighted, hashes[k++ & 1023], false).next();
  });
  // A connection from a bucket not seen since the last change: the memo
  // table's miss, O(n) once per bucket.
  const cold = new Ranking(groupOf(n, true).channels, 0);
  const coldUniform = new Ranking(groupOf(n, false).channels, 0);
  Deno.bench(`after: rendezvous, ${n} channels, first pick of a bucket`, { group: `pick ${n}` }, () => {
    coldUniform.next(k++ & (BUCKETS - 1), -1);
  });
  Deno.bench(`after: rendezvous, ${n} channels, weights 1-3, first pick of a bucket`, { group: `pick ${n}` }, () => {
    cold.next(k++ & (BUCKETS - 1), -1);
  });
}

const thousand = groupOf(1000, true);
Deno.bench(
  "rebuild for 1,000 channels (a new generation: identities, weights, empty table)",
  { group: "rebuild" },
  () => {
    new Ranking(thousand.channels, 0);
  },
);
Deno.bench("full table for 1,000 channels (every bucket at once; not done)", { group: "rebuild", n: 3 }, () => {
  const r = new Ranking(thousand.channels, 0);
  for (let b = 0; b < BUCKETS; b++) r.top(b);
});
