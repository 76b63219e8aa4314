import type { Channel } from "../../model/channel.ts";
import type { Group } from "../../model/group.ts";

/**
 * One period of a group's smooth weighted round robin, as one thread
 * derived it from the channels' weights at `generation`.
 *
 * Every thread derives the same cycle from the same shared weights, and the
 * group's shared position indexes it: that keeps the interleaving exact
 * however many workers pick. Weight-0 channels are absent from it.
 *
 * @example
 * ```ts
 * const cycle = roundRobinCycle(group); // weights 5,1,1: order [0, 0, 1, 0, 2, 0, 0]
 * ```
 */
export interface RoundRobinCycle {
  /** The group generation it was derived at. */
  readonly generation: number;
  /** Channel indices, in the order smooth WRR picks them. */
  readonly order: Uint16Array;
  /**
   * Per position, how many steps back the same channel last occurs (the
   * cycle's length when only once): a walk skips a channel it has already
   * met, with no per-pick state to allocate or share between interleaved picks.
   */
  readonly gaps: Int32Array;
  /** How many channels the cycle holds: a walk that met them all is over. */
  readonly distinct: number;
  /** The cycle is every channel once, in order (all weights alike and above 0). */
  readonly inOrder: boolean;
}

/**
 * The channels of an RR group to try for one client: from the group's
 * current position in its smooth-WRR cycle, each usable channel in turn,
 * each channel once; picking one moves the position past it. With all
 * weights 1 the cycle is the channels in order: plain round robin.
 *
 * @example
 * ```ts
 * for (const channel of roundRobinChannels(group)) if (channel.tryClaim()) break;
 * ```
 */
export function roundRobinChannels(group: Group): Generator<Channel, void, undefined> {
  // Inlined roundRobinCycle: this runs for every client.
  let cycle = group.cycle;
  if (cycle === undefined || cycle.generation !== group.peekGeneration()) cycle = roundRobinCycle(group);
  // The default (all weights alike) walks the channels without the cycle,
  // as cheaply as before weights existed.
  return cycle.inOrder ? inOrderChannels(group) : weightedChannels(group, cycle);
}

// Both walks claim a position with a compare-and-swap before they offer
// its channel. When another thread moved the position first, a walk that has
// offered nothing yet starts again from where that thread left it, so
// concurrent picks never take the same turn; once a channel was offered (and
// found full), the walk goes on without moving a position it no longer owns.

function* inOrderChannels(group: Group): Generator<Channel, void, undefined> {
  const channels = group.channels;
  const n = channels.length;
  let expected = group.current;
  let start = expected % n;
  let offered = false;
  for (let step = 0; step < n; step++) {
    const index = start + step < n ? start + step : start + step - n;
    // undefined: a reload shrank the group while this client's connect was pending.
    const channel = channels[index];
    if (!channel?.isUsable()) continue;
    const next = index + 1 === n ? 0 : index + 1;
    const found = group.advance(expected, next);
    if (found !== expected && !offered) {
      expected = found;
      start = found % n;
      step = -1;
      continue;
    }
    expected = next;
    offered = true;
    yield channel;
  }
}

function* weightedChannels(group: Group, cycle: RoundRobinCycle): Generator<Channel, void, undefined> {
  const { order, gaps, distinct } = cycle;
  const channels = group.channels;
  const len = order.length;
  if (len === 0) return;
  let expected = group.current;
  let start = expected % len;
  let offered = false;
  let met = 0;
  for (let step = 0; step < len && met < distinct; step++) {
    const at = start + step < len ? start + step : start + step - len;
    if (gaps[at] <= step) continue;
    met++;
    const channel = channels[order[at]];
    if (!channel?.isUsable()) continue;
    const next = at + 1 === len ? 0 : at + 1;
    const found = group.advance(expected, next);
    if (found !== expected && !offered) {
      expected = found;
      start = found % len;
      step = -1;
      met = 0;
      continue;
    }
    expected = next;
    offered = true;
    yield channel;
  }
}

/**
 * This thread's smooth-WRR cycle of `group`, derived again only when the
 * group's generation (channel set, weights) has changed.
 *
 * @example
 * ```ts
 * // group: channels of weights 5, 1, 1
 * roundRobinCycle(group).order; // Uint16Array [0, 0, 1, 0, 2, 0, 0]
 * ```
 */
export function roundRobinCycle(group: Group): RoundRobinCycle {
  const generation = group.generation;
  const cached = group.cycle;
  if (cached !== undefined && cached.generation === generation) return cached;
  return group.cycle = deriveCycle(group.channels, generation);
}

/**
 * nginx's smooth weighted round robin, one period: at step t every
 * channel's score is t·w − S·picks (S the total weight), the highest score
 * wins, the lower index on a tie. Channels of equal weight take their turns
 * in index order, so each step compares one candidate per distinct weight,
 * not every channel. Weights are divided by their gcd first: the sequence is
 * the same, its period shorter.
 */
function deriveCycle(channels: readonly Channel[], generation: number): RoundRobinCycle {
  const byWeight = new Map<number, number[]>();
  let divisor = 0;
  let distinct = 0;
  channels.forEach((channel, index) => {
    const w = channel.weight;
    if (w <= 0) return;
    distinct++;
    divisor = gcd(divisor, w);
    const members = byWeight.get(w);
    if (members) members.push(index);
    else byWeight.set(w, [index]);
  });
  const classes = [...byWeight].map(([w, members]) => ({ w: w / divisor, members, turn: 0, rounds: 0 }));
  const total = classes.reduce((sum, k) => sum + k.w * k.members.length, 0);
  const order = new Uint16Array(total);
  for (let t = 1; t <= total; t++) {
    let best = classes[0];
    let bestScore = -Infinity;
    for (const k of classes) {
      const score = t * k.w - total * k.rounds;
      if (score > bestScore || (score === bestScore && k.members[k.turn] < best.members[best.turn])) {
        best = k;
        bestScore = score;
      }
    }
    order[t - 1] = best.members[best.turn];
    if (++best.turn === best.members.length) {
      best.turn = 0;
      best.rounds++;
    }
  }
  const inOrder = total === channels.length && order.every((index, at) => index === at);
  return { generation, order, gaps: gapsOf(order, channels.length), distinct, inOrder };
}

// Two passes over the cycle, so that a channel's first occurrence sees its
// last one, a cycle earlier.
function gapsOf(order: Uint16Array, channelCount: number): Int32Array {
  const len = order.length;
  const gaps = new Int32Array(len);
  const last = new Int32Array(channelCount).fill(-1);
  for (let p = 0; p < 2 * len; p++) {
    const index = order[p % len];
    if (p >= len) gaps[p - len] = p - last[index];
    last[index] = p;
  }
  return gaps;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}
