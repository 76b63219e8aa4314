import type { Channel } from "../../model/channel.ts";
import type { Group } from "../../model/group.ts";

/**
 * The channels of a least-connection group to try for one client: the
 * usable channel with the fewest connections for its weight (lowest
 * `c / weight`; weight 0 takes none), ties going in round-robin order from
 * the group's position, which moves past the pick (an idle group
 * alternates). If that one is not taken, the next best, as things then
 * stand, each channel once.
 *
 * One O(n) scan per attempt. The channels already tried are remembered only
 * from a second attempt on: the common pick allocates nothing.
 *
 * @example
 * ```ts
 * for (const channel of leastConnectionChannels(group)) if (channel.tryClaim()) break;
 * ```
 */
export function* leastConnectionChannels(group: Group): Generator<Channel, void, undefined> {
  const channels = group.channels;
  const n = channels.length;
  const start = group.current % n;
  let tried: Uint8Array | undefined;
  let last = -1;
  for (let attempt = 0; attempt < n; attempt++) {
    if (last >= 0) (tried ??= new Uint8Array(n))[last] = 1;
    let best = -1;
    let bestC = 0;
    let bestW = 1;
    for (let step = 0; step < n; step++) {
      const index = start + step < n ? start + step : start + step - n;
      // undefined: a reload shrank the group while this client's connect was pending.
      const c = channels[index]?.usableLoad() ?? -1;
      if (c < 0 || tried?.[index] === 1) continue;
      const w = channels[index].peekWeight();
      // c/w < bestC/bestW without a division; strict, so the first in
      // round-robin order keeps a tie.
      if (best < 0 || c * bestW < bestC * w) {
        best = index;
        bestC = c;
        bestW = w;
      }
    }
    if (best < 0) return;
    group.current = best + 1 === n ? 0 : best + 1;
    last = best;
    yield channels[best];
  }
}
