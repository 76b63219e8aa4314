import type { Balancer } from "../model/balancer.ts";
import { errorText } from "../util/errors.ts";
import type { Channel } from "../model/channel.ts";
import { TimerQueue } from "../util/timer_queue.ts";
import {
  type CheckResult,
  HealthRecord,
  type HealthSettings,
  MIN_CHECK_INTERVAL,
  nextCheckDelay,
  type Transition,
} from "./health.ts";

/** What a probe checks: the channel's address and where it sits (for `--check-exec`'s environment). */
export interface ProbeTarget {
  address: string;
  port: number;
  group: number;
  channel: number;
}

/** One check of one channel; resolves (never rejects) once it has passed or failed. */
export type Probe = (target: ProbeTarget) => Promise<CheckResult>;

/** Where the checker reports: transitions always, each check with `-d`. */
export interface HealthLog {
  info(message: string): void;
  warning(message: string): void;
  trace?: (message: string) => void;
}

/** A channel's health as `show --json` and `health` print it. */
export interface HealthStatus {
  up: boolean;
  passes: number;
  failures: number;
  checkFailures: number;
  lastCheck?: string;
  /** Seconds since the health last changed (since checks began, when it never did). */
  sinceChange: number;
}

interface Entry {
  channel: Channel;
  group: number;
  index: number;
  record: HealthRecord;
  running: boolean;
  /** When the last check started (ms). */
  startedAt: number;
}

/**
 * Runs the health checks of every channel of a balancer: each channel at
 * once when it appears, then at its own pace ({@link nextCheckDelay}),
 * channels spread over the interval. Writes each channel's `up` (seen by
 * every worker) and logs every change. Disabled channels are checked too,
 * so `show` tells whether one is safe to enable.
 *
 * @example
 * ```ts
 * const checker = new HealthChecker(balancer, settings, (t) => tcpProbe(t, options), log);
 * checker.start();
 * balancer.onConnectFailed = (channel, reason) => checker.observeFailure(channel.cells.slot, reason);
 * ```
 */
export class HealthChecker {
  private readonly bySlot = new Map<number, Entry>();
  private readonly queue: TimerQueue<Entry>;
  // Between start and stop: nothing is checked before (a failed connect
  // then must not start timers that outlive a failed start-up) or after.
  private active = false;

  constructor(
    private readonly balancer: Balancer,
    private readonly settings: HealthSettings,
    private readonly probe: Probe,
    private readonly log: HealthLog,
    private readonly now: () => number = Date.now,
    private readonly random: () => number = Math.random,
  ) {
    // Checks due within 25 ms of each other start together: a wakeup of the
    // event loop costs about what a check does (1,000 channels at 1 s: 164
    // µs a check with 5 ms, 125 with 25 or 50), and 25 ms early is a quarter
    // of the fastest pace.
    this.queue = new TimerQueue((entry) => this.run(entry), 25, now);
  }

  /** Checks every channel now, and each one `create` adds once {@link checkNow} names it. */
  start(): void {
    this.active = true;
    this.sync();
  }

  /** Stops every timer; checks under way finish unheard. */
  stop(): void {
    this.active = false;
    this.queue.clear();
  }

  /**
   * Makes `channel` up and checks it at once (after `create`, `enable`,
   * `assign`: `why` says which), unless a check of it is under way.
   */
  checkNow(channel: Channel, why: string): void {
    if (!this.active) return;
    const entry = this.bySlot.get(channel.cells.slot) ?? this.sync(channel.cells.slot);
    if (!entry) return;
    this.apply(entry, entry.record.restart(why, this.now()));
    if (!entry.running) this.runSoon(entry, 0);
  }

  /**
   * A client's connect to the channel in `slot` failed: one failed check
   * (HAProxy's `observe layer4`), and the next check comes at once, though
   * never closer than {@link MIN_CHECK_INTERVAL} to the start of the last
   * one, so that a flood of failing clients is no flood of checks.
   */
  observeFailure(slot: number, reason: string): void {
    if (!this.active) return;
    const entry = this.bySlot.get(slot) ?? this.sync(slot);
    if (!entry) return;
    this.take(entry, { ok: false, reason: `client connect failed: ${reason}` });
    if (!entry.running) this.runSoon(entry, entry.startedAt + MIN_CHECK_INTERVAL * 1000 - this.now());
  }

  /**
   * After a reload: checks the channels that joined at once and forgets
   * those that left (a check under way of one finishes unheard).
   */
  refresh(): void {
    if (!this.active) return;
    const present = new Map<number, { group: number; index: number }>();
    this.balancer.groups.forEach((g, group) =>
      g.channels.forEach((c, index) => present.set(c.cells.slot, { group, index }))
    );
    for (const [slot, entry] of this.bySlot) {
      const at = present.get(slot);
      if (at) {
        Object.assign(entry, at);
        continue;
      }
      this.queue.cancel(entry);
      this.bySlot.delete(slot);
    }
    this.sync();
  }

  /** The health of `channel`, or `undefined` when it is not (yet) checked. */
  status(channel: Channel): HealthStatus | undefined {
    const entry = this.bySlot.get(channel.cells.slot);
    if (!entry) return undefined;
    const { up, passes, failures, checkFailures, lastCheck, changedAt } = entry.record;
    return { up, passes, failures, checkFailures, lastCheck, sinceChange: (this.now() - changedAt) / 1000 };
  }

  // Adds an entry for every channel not checked yet and starts its checks;
  // returns the one in `slot`, if any.
  private sync(slot?: number): Entry | undefined {
    this.balancer.groups.forEach((group, g) =>
      group.channels.forEach((channel, index) => {
        if (this.bySlot.has(channel.cells.slot)) return;
        const entry: Entry = {
          channel,
          group: g,
          index,
          record: new HealthRecord(this.settings, this.now()),
          running: false,
          startedAt: -Infinity,
        };
        channel.up = true;
        this.bySlot.set(channel.cells.slot, entry);
        this.runSoon(entry, 0);
      })
    );
    return slot === undefined ? undefined : this.bySlot.get(slot);
  }

  private runSoon(entry: Entry, delayMs: number): void {
    if (!this.active) return;
    this.queue.schedule(entry, this.now() + Math.max(0, delayMs));
  }

  private async run(entry: Entry): Promise<void> {
    entry.running = true;
    entry.startedAt = this.now();
    const { address, port } = entry.channel;
    let result: CheckResult;
    try {
      result = await this.probe({ address, port, group: entry.group, channel: entry.index });
    } catch (err) {
      result = { ok: false, reason: errorText(err) };
    }
    entry.running = false;
    // Stopped, or the channel left with a reload: the result has no one to tell.
    if (!this.active || this.bySlot.get(entry.channel.cells.slot) !== entry) return;
    this.take(entry, result);
    const delayMs = nextCheckDelay(entry.record, this.settings, this.random) * 1000;
    this.runSoon(entry, entry.startedAt + delayMs - this.now());
  }

  private take(entry: Entry, result: CheckResult): void {
    const transition: Transition | undefined = entry.record.record(result, this.now());
    const where = () => this.balancer.describe(entry.channel);
    const { passes, failures } = entry.record;
    this.log.trace?.(
      `check of ${where()} ${
        result.ok ? "passed" : "failed"
      }: ${result.reason} (${passes} passed, ${failures} failed in a row)`,
    );
    this.apply(entry, transition);
  }

  private apply(entry: Entry, transition: Transition | undefined): void {
    if (!transition) return;
    entry.channel.up = transition.up;
    this.log[transition.level](`${this.balancer.describe(entry.channel)} ${transition.text}`);
  }
}
