/**
 * Reload (SIGHUP, the `reload` control command): reads the configuration
 * file again and applies the difference to the running balancer, without
 * closing the listener or any connection. A configuration that does not
 * parse, names a host that does not resolve, or changes what needs a
 * restart is refused and changes nothing.
 *
 * @module
 */
import type { Balancer } from "../core/model/balancer.ts";
import { ExitError } from "../core/util/exit_error.ts";
import { reloadGroups, type ResolvedGroup } from "../core/config/reload.ts";
import type { Config } from "./config.ts";

/** What `reload` answers: `reloaded`, or why not (then nothing changed). */
export interface ReloadAnswer {
  output: string;
  error?: boolean;
}

/**
 * The settings a reload may change besides the channels and groups; the
 * others ({@link restartOnlyChanges}) need a restart.
 */
const LIVE: ReadonlySet<keyof Config> = new Set<keyof Config>([
  "groups",
  "connectTimeout",
  "autodisable",
  "hashFailover",
  "graceSeconds",
  "access",
  "sni",
  "sniDefault",
  "optionWords",
  "configFiles",
]);

// How a setting is written on the command line, for messages.
const FLAGS: Partial<Record<keyof Config, string>> = {
  listenPort: "the listen port",
  bindAddress: "-b",
  sourceAddress: "-B",
  ipv6: "-6",
  workers: "-w",
  idleTimeout: "-T",
  debug: "-d",
  foreground: "-f",
  packetDump: "-p",
  logFile: "--log-file",
  logConnections: "--log-connections",
  syslog: "--syslog",
  check: "--check and its options",
  resolveInterval: "--resolve-interval",
  resolver: "--resolver",
  metrics: "--metrics",
  proxyProtocol: "--proxy-protocol",
  acceptProxy: "--accept-proxy",
  clientTable: "--client-table",
  udp: "--udp, --udp-only and their options",
  ftp: "--ftp and its options",
  engine: "--engine",
};

/**
 * The settings that differ between `running` and `next` and that only a
 * restart can change, as the command line writes them.
 *
 * @example
 * ```ts
 * restartOnlyChanges(running, { ...running, workers: 4, connectTimeout: 9 }); // ["-w"]
 * ```
 */
export function restartOnlyChanges(running: Config, next: Config): string[] {
  const keys = new Set([...Object.keys(running), ...Object.keys(next)] as (keyof Config)[]);
  return [...keys]
    .filter((key) => !LIVE.has(key) && JSON.stringify(running[key]) !== JSON.stringify(next[key]))
    .map((key) => FLAGS[key] ?? key);
}

/** What a reload works with; each part is the caller's I/O. */
export interface ReloadContext {
  balancer: Balancer;
  /** The configuration running now. */
  running(): Config;
  /** Reads the command line and its files again; throws an {@link ExitError} for what is wrong. */
  reread(): Config;
  /** Resolves every channel host of `config`; throws an {@link ExitError} for one that does not resolve. */
  resolve(config: Config): Promise<Map<string, string>>;
  /** Makes `config` the running one: its live settings (connect timeout, -a, -H, --grace) take effect. */
  applySettings(config: Config): void;
  /** After the groups changed: health checks and worker threads follow. */
  layoutChanged(): Promise<void>;
  log: { info(message: string): void; warning(message: string): void };
}

/**
 * Reloads once: reads, checks, resolves, applies, logs. Never throws: every
 * failure is the answer, logged at warning, and leaves the running
 * configuration untouched.
 *
 * @example
 * ```ts
 * const { output, error } = await reload(ctx); // "reloaded"
 * ```
 */
export async function reload(ctx: ReloadContext): Promise<ReloadAnswer> {
  const refuse = (why: string): ReloadAnswer => {
    ctx.log.warning(`reload failed, the running configuration stays: ${why}`);
    return { output: `reload failed: ${why}`, error: true };
  };
  const running = ctx.running();
  if (running.configFiles.length === 0) {
    return { output: "nothing to reload: balance was started without -F", error: true };
  }
  let next: Config;
  let addresses: Map<string, string>;
  try {
    next = ctx.reread();
    const restart = restartOnlyChanges(running, next);
    if (restart.length) return refuse(`${restart.join(", ")} cannot change without a restart`);
    addresses = await ctx.resolve(next);
  } catch (err) {
    if (err instanceof ExitError) return refuse(err.message);
    throw err;
  }
  const groups: ResolvedGroup[] = next.groups.map((g) => ({
    type: g.type,
    service: g.service,
    channels: g.channels.map((c) => ({
      address: addresses.get(c.host)!,
      host: c.host,
      port: c.port,
      maxc: c.maxc,
      weight: c.weight ?? 1,
      enabled: c.enabled ?? true,
    })),
  }));
  const summary = reloadGroups(ctx.balancer, groups);
  if (!summary) return refuse("no channel slots left for the new channels (restart to reclaim them)");
  ctx.applySettings(next);
  await ctx.layoutChanged();
  const draining = summary.draining.length ? ` (${summary.draining.length} with connections open, finishing)` : "";
  ctx.log.info(
    `reloaded ${next.configFiles.join(", ")}: ${summary.kept} channel(s) kept, ${summary.added} added, ` +
      `${summary.removed} removed${draining}`,
  );
  return { output: "reloaded" };
}
