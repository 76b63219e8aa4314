/**
 * `dump`: the running configuration written as a configuration file, so
 * that `balance -c dump 80 > web.conf.new && mv web.conf.new web.conf`
 * keeps what control commands changed and `balance -F web.conf` starts the
 * same balancer, following the same host names.
 *
 * @module
 */
import type { Balancer } from "../model/balancer.ts";
import { formatHostPort } from "../model/balancer.ts";
import type { Channel } from "../model/channel.ts";
import { DISABLED, GROUP_SEPARATORS } from "./grammar.ts";

/**
 * A channel as a command-line word: `host:port:maxc:weight`, and `:dis`
 * when it is disabled. The host is the one configured (a name stays a
 * name, to be resolved and followed again), else the address.
 *
 * @example
 * ```ts
 * channelWord(new Channel("::1", 80, 256)); // "[::1]:80:256:1"
 * ```
 */
export function channelWord(channel: Channel): string {
  const word = `${formatHostPort(channel.host ?? channel.address, channel.port)}:${channel.maxc}:${channel.weight}`;
  return channel.enabled ? word : `${word}:${DISABLED}`;
}

/**
 * The configuration file of a running balancer: `options` (the option words
 * in force, as the caller keeps them), the listen port, then each group's
 * channels, one a line, each group ended by the separator of its type (the
 * last one too, so that its type is said); each named service's groups
 * after its `@NAME` word.
 *
 * @example
 * ```ts
 * dumpConfig(balancer, ["-t", "3"], 80);
 * // "# balance configuration, written by dump\n-t 3\n80\n10.0.0.1:8080:256:3\n!\n"
 * ```
 */
export function dumpConfig(balancer: Balancer, options: readonly string[], listenPort: number): string {
  const lines = ["# balance configuration, written by dump"];
  if (options.length) lines.push(options.join(" "));
  lines.push(String(listenPort));
  // The default service's groups first: a file can only begin with them.
  for (const service of ["", ...balancer.serviceNames()]) {
    const groups = balancer.groups.filter((g) => g.service === service && g.channels.length > 0);
    if (service !== "" && groups.length > 0) lines.push(`@${service}`);
    for (const group of groups) lines.push(...group.channels.map(channelWord), GROUP_SEPARATORS[group.type]);
  }
  return `${lines.join("\n")}\n`;
}
