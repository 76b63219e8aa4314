import type { Channel } from "../model/channel.ts";
import type { Group } from "../model/group.ts";
import { hashClientAddress } from "./hash.ts";
import { leastConnectionChannels } from "./schedule/least_connection.ts";
import { hashedChannels } from "./schedule/rendezvous.ts";
import { roundRobinChannels } from "./schedule/round_robin.ts";

/**
 * The channels to try for one client, in order: the selection procedure of
 * balance, top to bottom. Each channel is checked for usability (enabled,
 * below maxc) only when its turn comes, so a failed connect, an autodisable or
 * a control command between two attempts is seen by the next one.
 *
 * - Groups are tried from group 0 on.
 * - RR group: from the group's current position in its smooth weighted
 *   round robin cycle, each usable channel in turn, each once; picking one
 *   moves the current position past it. The walk wraps around and stops
 *   where it started. With all weights 1, plain round robin.
 * - LC group: the usable channel with the lowest `c / weight`, ties in
 *   round-robin order; then the next best.
 * - Hash group: the top of the client's weighted rendezvous ranking
 *   (schedule/rendezvous.ts); with `hashFailover` (`-H`) the rest of it, in rank order.
 *
 * @example
 * ```ts
 * for (const channel of pickChannels(groups, "10.0.0.7", false)) {
 *   if (await tryConnect(channel)) break;
 * }
 * ```
 */
export function* pickChannels(
  groups: readonly Group[],
  clientAddress: string,
  hashFailover: boolean,
): Generator<Channel, void, undefined> {
  let clientHash: number | undefined;
  for (const group of groups) {
    if (group.channels.length === 0) continue;
    switch (group.type) {
      case "RR":
        yield* roundRobinChannels(group);
        break;
      case "LC":
        yield* leastConnectionChannels(group);
        break;
      case "Hash":
        clientHash ??= hashClientAddress(clientAddress);
        yield* hashedChannels(group, clientHash, hashFailover);
    }
  }
}
