/**
 * Reload: a running balancer takes a new set of groups (from its
 * configuration file, read again) without a restart and without losing a
 * connection. Pure: resolving names and telling the workers are the
 * caller's.
 *
 * @module
 */
import type { Balancer } from "../model/balancer.ts";
import type { Channel } from "../model/channel.ts";
import type { GroupType } from "../model/group.ts";

/** A channel of the new configuration, its host resolved. */
export interface ResolvedChannel {
  address: string;
  /** The host as the file names it, which `dump` writes (see {@link Channel.host}). */
  host?: string;
  port: number;
  maxc: number;
  weight: number;
  enabled: boolean;
}

/** A group of the new configuration. */
export interface ResolvedGroup {
  type: GroupType;
  channels: ResolvedChannel[];
  /** `@NAME`; absent, the default service. */
  service?: string;
}

/** What a reload did, for the log and `reload`'s answer. */
export interface ReloadSummary {
  kept: number;
  added: number;
  /** Channels taking no new connections; their open ones finish normally. */
  removed: number;
  /** Channels that were gone and whose last connection is still open. */
  draining: Channel[];
}

/**
 * Makes `balancer`'s groups those of `groups`:
 * - a channel in the same group with the same address and port as before is
 *   kept: its counters, open connections and administrative state stay;
 *   host name, maxc and weight come from the new configuration;
 * - a new channel joins enabled (or as the file says);
 * - a channel that is gone leaves its group, so it takes no new connection;
 *   its open connections keep their channel and finish normally;
 * - each group takes the new type and order of channels; groups beyond the
 *   new count go.
 *
 * Returns `undefined` without changing anything when the shared state has
 * no slot left for the new channels.
 *
 * @example
 * ```ts
 * const summary = reloadGroups(balancer, [{ type: "RR", channels: [{ address: "10.0.0.1", port: 80, maxc: 0, weight: 1, enabled: true }] }]);
 * summary?.added; // 1 when 10.0.0.1:80 was not in group 0 before
 * ```
 */
export function reloadGroups(balancer: Balancer, groups: readonly ResolvedGroup[]): ReloadSummary | undefined {
  const key = (address: string, port: number) => `${address} ${port}`;
  const newCount = groups.reduce(
    (n, group, g) => {
      const before = new Set(balancer.groups[g]?.channels.map((c) => key(c.address, c.port)));
      return n + group.channels.filter((c) => !before.has(key(c.address, c.port))).length;
    },
    0,
  );
  if (newCount > balancer.state.freeChannels) return undefined;
  const summary: ReloadSummary = { kept: 0, added: 0, removed: 0, draining: [] };
  const groupCount = Math.max(groups.length, balancer.groups.length);
  for (let g = 0; g < groupCount; g++) {
    const spec: ResolvedGroup = groups[g] ?? { type: "RR", channels: [] };
    const group = balancer.group(g);
    // A list per address: a group may name the same one more than once.
    const old = new Map<string, Channel[]>();
    for (const c of group.channels) old.set(key(c.address, c.port), [...(old.get(key(c.address, c.port)) ?? []), c]);
    const channels: Channel[] = [];
    for (const c of spec.channels) {
      let channel = old.get(key(c.address, c.port))?.shift();
      if (channel) {
        summary.kept++;
      } else {
        channel = balancer.addChannel(g, c.address, c.port, c.maxc, c.enabled, c.weight)!;
        summary.added++;
      }
      channel.host = c.host;
      channel.maxc = c.maxc;
      channel.weight = c.weight;
      channels.push(channel);
    }
    for (const gone of [...old.values()].flat()) {
      summary.removed++;
      if (gone.c > 0) summary.draining.push(gone);
    }
    group.channels.splice(0, group.channels.length, ...channels);
    group.type = spec.type;
    group.service = spec.service ?? "";
    group.current = 0;
    group.changed();
  }
  balancer.groups.length = groups.length;
  balancer.servicesChanged();
  return summary;
}
