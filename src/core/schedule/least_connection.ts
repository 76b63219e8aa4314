import type { Channel } from "../channel.ts";
import type { Group } from "../group.ts";
import { roundRobinChannels } from "./round_robin.ts";

/**
 * The channels of a least-connection group to try for one client.
 *
 * @example
 * ```ts
 * for (const channel of leastConnectionChannels(group)) if (channel.tryClaim()) break;
 * ```
 */
export function* leastConnectionChannels(group: Group): Generator<Channel, void, undefined> {
  // Placeholder until least connection exists: round robin.
  yield* roundRobinChannels(group);
}
