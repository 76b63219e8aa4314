import type { Channel } from "../channel.ts";
import type { Group } from "../group.ts";

/**
 * The channels of an RR group to try for one client: from the group's
 * current position, each usable channel in turn; picking one moves the
 * position past it. The walk wraps around and stops where it started.
 *
 * @example
 * ```ts
 * for (const channel of roundRobinChannels(group)) if (channel.tryClaim()) break;
 * ```
 */
export function* roundRobinChannels(group: Group): Generator<Channel, void, undefined> {
  const channels = group.channels;
  const n = channels.length;
  const start = group.current % n;
  for (let step = 0; step < n; step++) {
    const index = (start + step) % n;
    const channel = channels[index];
    if (channel.isUsable()) {
      group.current = (index + 1) % n;
      yield channel;
    }
  }
}
