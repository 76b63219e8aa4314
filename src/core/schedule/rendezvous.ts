import type { Channel } from "../channel.ts";
import type { Group } from "../group.ts";

/**
 * The channels of a Hash (`%`) group to try for a client whose address
 * hashes to `clientHash`: the one the hash picks; with `failover` (`-H`) the
 * others after it.
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
  const channels = group.channels;
  const n = channels.length;
  const start = clientHash % n;
  for (let step = 0; step < (failover ? n : 1); step++) {
    const channel = channels[(start + step) % n];
    if (channel.isUsable()) yield channel;
  }
}
