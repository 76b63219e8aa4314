/**
 * Channels given by host name follow their name's address (issue 13): the
 * control thread asks DNS again on one timer and moves new connections to
 * the new address; connections already open stay where they are.
 *
 * @module
 */
import type { Balancer } from "../model/balancer.ts";
import { errorText } from "../util/errors.ts";
import type { Channel } from "../model/channel.ts";
import type { GroupSpec } from "../config/grammar.ts";
import { addressBytes } from "../selection/hash.ts";
import { shown } from "../util/shown.ts";
import { TimerQueue } from "../util/timer_queue.ts";

/** What one question to DNS gave: the name's first address, or why there was none. */
export type Resolution = { address: string } | { error: string };

/** Asks DNS for a name; resolves (never rejects) with a {@link Resolution}. */
export type NameResolver = (host: string) => Promise<Resolution>;

/** What a followed name is known to be: its last address, and whether its last lookup failed. */
export interface NameState {
  address: string;
  lost: boolean;
}

/** The next {@link NameState} and what to log about the step, if anything. */
export interface NameStep {
  state: NameState;
  log?: { level: "info" | "warning"; text: string };
}

/**
 * Decides what a lookup means for a followed name (HAProxy's `init-addr
 * last`): a new address replaces the old; a failure keeps the last address
 * and is worth one warning until the name resolves again. `text` follows
 * the channel's name in the log line.
 *
 * @example
 * ```ts
 * followName({ address: "198.18.0.1", lost: false }, { address: "198.18.0.2" });
 * // { state: { address: "198.18.0.2", lost: false },
 * //   log: { level: "info", text: "address changed from 198.18.0.1 to 198.18.0.2" } }
 * followName({ address: "198.18.0.1", lost: false }, { error: "ENOTFOUND" });
 * // { state: { address: "198.18.0.1", lost: true },
 * //   log: { level: "warning", text: "does not resolve (ENOTFOUND); keeping 198.18.0.1" } }
 * ```
 */
export function followName(state: NameState, result: Resolution): NameStep {
  if ("error" in result) {
    if (state.lost) return { state };
    return {
      state: { ...state, lost: true },
      log: { level: "warning", text: `does not resolve (${shown(result.error)}); keeping ${state.address}` },
    };
  }
  const next = { address: result.address, lost: false };
  if (result.address !== state.address) {
    return { state: next, log: { level: "info", text: `address changed from ${state.address} to ${result.address}` } };
  }
  if (state.lost) return { state: next, log: { level: "info", text: `resolves again to ${result.address}` } };
  return { state };
}

/** Where a {@link NameWatch} reports: changes at info, lost names as warnings, each lookup with `-d`. */
export interface NameLog {
  info(message: string): void;
  warning(message: string): void;
  trace?: (message: string) => void;
}

interface Followed extends NameState {
  channel: Channel;
  host: string;
}

/** The one item of the timer queue: every name is asked at once. */
const ROUND = "round";

/**
 * Re-resolves every channel given by host name each `intervalSec` seconds,
 * in the control thread, on one timer for all names (none at all when no
 * channel has a name, or the interval is 0). A new address is written to
 * the channel (new connections go there; open ones keep theirs) and
 * `onChanged` passes it on to the workers. A channel whose address someone
 * else changed (`assign`) no longer follows its name.
 *
 * @example
 * ```ts
 * const watch = new NameWatch(balancer, 30, resolver, log, () => workers?.syncLayout());
 * watch.followSpecs(config.groups);
 * watch.start();
 * ```
 */
export class NameWatch {
  private readonly followed = new Map<Channel, Followed>();
  private readonly queue: TimerQueue<typeof ROUND>;
  private active = false;

  constructor(
    private readonly balancer: Balancer,
    private readonly intervalSec: number,
    private readonly resolve: NameResolver,
    private readonly log: NameLog,
    private readonly onChanged: () => Promise<void> | void = () => {},
    private readonly now: () => number = Date.now,
  ) {
    this.queue = new TimerQueue(() => void this.round(), 0, now);
  }

  /**
   * Follows `host` on `channel` (already at its first address), unless
   * `host` is an address literal, which has nothing to follow.
   */
  follow(channel: Channel, host: string): void {
    if (addressBytes(host)) return;
    this.followed.set(channel, { channel, host, address: channel.address, lost: false });
  }

  /**
   * Follows the names among `specs`, whose channels the balancer made in
   * order ({@link Balancer.fromSpecs}).
   */
  followSpecs(specs: GroupSpec[]): void {
    specs.forEach((spec, g) =>
      spec.channels.forEach((c, n) => {
        const channel = this.balancer.groups[g]?.channels[n];
        if (channel) this.follow(channel, c.host);
      })
    );
  }

  /** Names followed right now. */
  get size(): number {
    return this.followed.size;
  }

  /** Starts the timer: the first lookups one interval from now. */
  start(): void {
    this.active = true;
    this.scheduleFrom(this.now());
  }

  /** Stops the timer; a round under way finishes without effect. */
  stop(): void {
    this.active = false;
    this.queue.clear();
  }

  /**
   * Asks for every followed name once (each distinct name once), applies
   * the answers, tells the workers if an address changed, and schedules
   * the next round one interval after this one began.
   */
  async round(): Promise<void> {
    const began = this.now();
    const hosts = [...new Set([...this.followed.values()].map((f) => f.host))];
    const answers = new Map(
      await Promise.all(
        hosts.map(async (h) => [h, await this.resolve(h).catch((err) => ({ error: errorText(err) }))] as const),
      ),
    );
    if (!this.active) return;
    let changed = false;
    for (const f of this.followed.values()) changed = this.take(f, answers.get(f.host)) || changed;
    if (changed) await this.onChanged();
    this.scheduleFrom(began);
  }

  // Applies one answer to one channel; true when its address changed.
  private take(f: Followed, result: Resolution | undefined): boolean {
    if (!result) return false;
    const where = this.position(f.channel);
    if (where === undefined || f.channel.address !== f.address) {
      this.followed.delete(f.channel);
      this.log.trace?.(
        `${where?.text ?? "a channel"} (${shown(f.host)}) no longer follows its name: its address was set`,
      );
      return false;
    }
    const name = `${where.text} (${shown(f.host)})`;
    this.log.trace?.(`${name} resolved: ${"error" in result ? result.error : result.address}`);
    const { state, log } = followName(f, result);
    f.lost = state.lost;
    if (log) this.log[log.level](`${name} ${log.text}`);
    if (state.address === f.address) return false;
    f.address = f.channel.address = state.address;
    // Hash groups key channels by address.
    this.balancer.groups[where.group].changed();
    return true;
  }

  private position(channel: Channel): { group: number; text: string } | undefined {
    for (const [g, group] of this.balancer.groups.entries()) {
      const n = group.channels.indexOf(channel);
      if (n >= 0) return { group: g, text: `group ${g} channel ${n}` };
    }
    return undefined;
  }

  private scheduleFrom(began: number): void {
    if (!this.active || this.intervalSec <= 0 || this.followed.size === 0) return;
    this.queue.schedule(ROUND, Math.max(began + this.intervalSec * 1000, this.now()));
  }
}
