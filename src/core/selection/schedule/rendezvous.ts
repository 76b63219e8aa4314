/**
 * Consistent hashing for Hash (`%`) groups: weighted rendezvous
 * (highest-random-weight) hashing.
 *
 * Every channel scores every client with `-weight / ln(u)`, `u` in (0, 1)
 * drawn from a hash of the client and of the channel's identity (address
 * and port, never its place in the group); the client goes to the highest
 * score. So a client moves only when its channel leaves or a newcomer
 * outscores it, two balancers listing the same channels in any order agree,
 * and a channel's share of clients is its share of the weights.
 * docs/hashing.md has the measurements and why not Maglev or a ring.
 *
 * The client is first reduced to one of {@link BUCKETS} buckets (the top 16
 * bits of its hash) and the ranking is that of the bucket. The top channel
 * of each bucket is memoised in a per-thread table, filled on first use and
 * replaced by an empty one when the group's generation changes (a channel
 * joins, moves or changes weight): the pick is O(1) amortised, a rebuild is
 * O(n) plus a fresh table, and a bucket costs O(n) once per generation.
 * Even for 3 channels the lookup is cheaper than computing the top
 * (bench/hash_bench.ts).
 * Usability never enters the table: a disabled or full channel keeps its
 * clients' ranking, and with `-H` they walk on down it.
 *
 * @module
 */
import type { Channel } from "../../model/channel.ts";
import type { Group } from "../../model/group.ts";
import { hashChannelIdentity, mixHash } from "../hash.ts";

/**
 * How many rankings there are: clients are reduced to this many buckets.
 *
 * @example
 * ```ts
 * const bucket = hashClientAddress("10.0.0.7") >>> 16; // 0 … BUCKETS - 1
 * ```
 */
export const BUCKETS = 1 << 16;
const BUCKET_SHIFT = 16;

/**
 * The channels of a Hash (`%`) group to try for a client whose address
 * hashes to `clientHash`, in rendezvous order. Without `failover` only the
 * top-ranked channel of the whole group (if it is usable: otherwise the
 * client goes on to the next group); with `failover` (`-H`) every usable
 * channel in rank order. A channel of weight 0 is never chosen.
 *
 * @example
 * ```ts
 * for (const channel of hashedChannels(group, hashClientAddress("10.0.0.7"), false)) if (channel.tryClaim()) break;
 * ```
 */
export function* hashedChannels(
  group: Group,
  clientHash: number,
  failover: boolean,
): Generator<Channel, void, undefined> {
  const ranking = rankingOf(group);
  const bucket = clientHash >>> BUCKET_SHIFT;
  const top = ranking.top(bucket);
  if (top < 0) return;
  if (ranking.channels[top].isUsable()) yield ranking.channels[top];
  if (failover) yield* walk(ranking, bucket, top);
}

// The rare path (the top channel is unusable or refused): the rest of the
// ranking, O(n) per step, keeping nothing but the last rank.
function* walk(ranking: Ranking, bucket: number, top: number): Generator<Channel, void, undefined> {
  let i = top;
  for (let step = 1; step < ranking.channels.length; step++) {
    i = ranking.next(bucket, i);
    if (i < 0) return;
    if (ranking.channels[i].isUsable()) yield ranking.channels[i];
  }
}

// One per group per thread; a new one (never changed in place) for each
// generation, so a walk that outlives a change stays consistent.
const rankings = new WeakMap<Group, Ranking>();

function rankingOf(group: Group): Ranking {
  const cached = rankings.get(group);
  const generation = group.generation;
  if (cached && cached.generation === generation && cached.channels.length === group.channels.length) return cached;
  const fresh = new Ranking(group.channels, generation);
  rankings.set(group, fresh);
  return fresh;
}

/**
 * The rendezvous ranking of one channel set with its weights, as they were
 * at one generation of a group. Exported for tests and benchmarks.
 *
 * @example
 * ```ts
 * const r = new Ranking(group.channels, group.generation);
 * r.channels[r.top(hashClientAddress("10.0.0.7") >>> 16)];
 * ```
 */
export class Ranking {
  /** The group's channels at this generation. */
  readonly channels: readonly Channel[];
  private readonly keys: Uint32Array;
  private readonly weights: Float64Array;
  // All weights equal: the mixed hash orders like the score, no logarithm.
  private readonly uniform: boolean;
  private readonly anyWeight: boolean;
  // Top channel of each bucket plus one; 0 until the bucket is first used.
  private readonly table: Uint16Array | Uint32Array;

  constructor(channels: readonly Channel[], readonly generation: number) {
    this.channels = channels.slice();
    const n = channels.length;
    this.keys = new Uint32Array(n);
    this.weights = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      this.keys[i] = hashChannelIdentity(channels[i].address, channels[i].port);
      this.weights[i] = channels[i].weight;
    }
    const positive = this.weights.filter((w) => w > 0);
    this.anyWeight = positive.length > 0;
    this.uniform = positive.every((w) => w === positive[0]);
    this.table = n < 0xffff ? new Uint16Array(BUCKETS) : new Uint32Array(BUCKETS);
  }

  /** The index of the top channel for `bucket`, whatever its usability; -1 when every weight is 0. */
  top(bucket: number): number {
    if (!this.anyWeight) return -1;
    const table = this.table;
    const memo = table[bucket];
    if (memo !== 0) return memo - 1;
    const i = this.next(bucket, -1);
    table[bucket] = i + 1;
    return i;
  }

  /**
   * The index of the channel ranked right after channel `after` for
   * `bucket` (the first when `after` is -1); -1 past the last. Ties of
   * score (a 2^-32 chance) go to the higher identity, then to the lower
   * index (the same backend listed twice).
   */
  next(bucket: number, after: number): number {
    const n = this.channels.length;
    const afterScore = after < 0 ? Infinity : this.score(bucket, after);
    const afterKey = after < 0 ? 0 : this.keys[after];
    let best = -1;
    let bestScore = -1;
    let bestKey = 0;
    for (let i = 0; i < n; i++) {
      const w = this.weights[i];
      if (w === 0) continue;
      const h = mixHash(bucket, this.keys[i]);
      // -ln u > 1 - u: a channel whose bound cannot reach the best so far
      // needs no logarithm, and with many channels that is nearly all.
      if (!this.uniform && w * BOUND_MARGIN / ((TWO32 - h - 0.5) / TWO32) < bestScore) continue;
      const s = this.weighed(h, w);
      const k = this.keys[i];
      const below = s < afterScore || (s === afterScore && (k < afterKey || (k === afterKey && i > after)));
      if (!below) continue;
      if (s > bestScore || (s === bestScore && k > bestKey)) {
        best = i;
        bestScore = s;
        bestKey = k;
      }
    }
    return best;
  }

  /** Channel `i`'s score for `bucket`: higher wins. */
  score(bucket: number, i: number): number {
    return this.weighed(mixHash(bucket, this.keys[i]), this.weights[i]);
  }

  private weighed(h: number, weight: number): number {
    return this.uniform ? h : weight / minusLn(h);
  }
}

// 2^k for k = 0…32, by doubling: exact.
const POW2 = Array.from({ length: 33 }, (_, k) => k).map((k) => {
  let p = 1;
  for (let j = 0; j < k; j++) p *= 2;
  return p;
});
const TWO32 = POW2[32];
// Rounding of the bound and of minusLn is far below this.
const BOUND_MARGIN = 1 + 1e-9;
const LN2 = 0.6931471805599453;
const SQRT_HALF = 0.7071067811865476;

/**
 * -ln(u) for u = (h + 0.5) / 2^32, in (0, 1). ECMAScript lets Math.log
 * differ in its last bit between engines and platforms, which could reorder
 * two nearly equal scores and so move a client between balancers; this uses
 * only + − × ÷, which IEEE 754 rounds the same everywhere.
 */
function minusLn(h: number): number {
  // u = m · 2^e with m in [√½, √2): ln u = e·ln 2 + 2·atanh((m − 1)/(m + 1)).
  const k = Math.clz32(h);
  let m = (h + 0.5) * POW2[k] / TWO32;
  let e = -k;
  if (m < SQRT_HALF) {
    m *= 2;
    e -= 1;
  }
  const s = (m - 1) / (m + 1);
  const z = s * s;
  // atanh series to s^25: |s| ≤ 0.172, so the rest is below 2^-60 of it.
  const series = 1 + z * (1 / 3 + z * (1 / 5 + z * (1 / 7 + z * (1 / 9 + z * (1 / 11 + z * (1 / 13 +
                            z * (1 / 15 + z * (1 / 17 + z * (1 / 19 + z * (1 / 21 + z * (1 / 23 + z / 25)))))))))));
  return -(e * LN2 + 2 * s * series);
}
