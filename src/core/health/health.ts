/**
 * Health checks (`--check`): the settings with their defaults made explicit,
 * the per-channel state machine (rise/fall, HAProxy's semantics) and the
 * pace of checks. Pure: times and randomness come from the caller.
 *
 * @module
 */

/** What `--check` and its options ask for; times in seconds. */
export interface HealthSettings {
  /** `--check-interval`: between two checks of a channel whose state is settled. */
  interval: number;
  /** `--check-timeout`: a check not passed by then has failed. */
  timeout: number;
  /** `--rise`: consecutive passes that make a down channel up. */
  rise: number;
  /** `--fall`: consecutive failures that make an up channel down. */
  fall: number;
  /** `--check-send`: bytes sent after connecting. */
  send?: Uint8Array;
  /** `--check-expect`: the check passes once these bytes arrive. */
  expect?: Uint8Array;
  /** `--check-exec`: program and arguments run instead of connecting. */
  exec?: string[];
}

/** HAProxy's `inter`, `rise` and `fall` defaults. */
export const HEALTH_DEFAULTS = { interval: 2, rise: 2, fall: 3 } as const;

/** The shortest interval, and the floor of the fast pace. */
export const MIN_CHECK_INTERVAL = 0.1;

/**
 * Settings from what a command line gave, defaults filled in: the timeout is
 * the interval, at most the connect timeout (`-t`).
 *
 * @example
 * ```ts
 * healthSettings({}, 5); // { interval: 2, timeout: 2, rise: 2, fall: 3 }
 * healthSettings({ interval: 10 }, 5).timeout; // 5
 * ```
 */
export function healthSettings(given: Partial<HealthSettings>, connectTimeout: number): HealthSettings {
  const interval = given.interval ?? HEALTH_DEFAULTS.interval;
  return {
    rise: HEALTH_DEFAULTS.rise,
    fall: HEALTH_DEFAULTS.fall,
    ...given,
    interval,
    timeout: given.timeout ?? Math.min(interval, connectTimeout),
  };
}

/**
 * The pace while a transition is under way (HAProxy's `fastinter`): a
 * quarter of the interval, at least {@link MIN_CHECK_INTERVAL}.
 *
 * @example
 * ```ts
 * fastInterval({ interval: 2 }); // 0.5
 * ```
 */
export function fastInterval(settings: Pick<HealthSettings, "interval">): number {
  return Math.max(MIN_CHECK_INTERVAL, settings.interval / 4);
}

/** The outcome of one check; `reason` says what happened, for the log and `health`. */
export interface CheckResult {
  ok: boolean;
  reason: string;
}

/** A change of health, with what to log (after the channel's name). */
export interface Transition {
  up: boolean;
  level: "info" | "warning";
  /** `is DOWN: connect timed out (3 of 3 checks failed)`. */
  text: string;
}

/**
 * The health of one channel: up at start, down after `fall` consecutive
 * failed checks, up again after `rise` consecutive passes.
 *
 * @example
 * ```ts
 * const h = new HealthRecord({ rise: 2, fall: 1 }, Date.now());
 * h.record({ ok: false, reason: "connection refused" }, Date.now())?.text;
 * // "is DOWN: connection refused (1 of 1 checks failed)"
 * ```
 */
export class HealthRecord {
  up = true;
  /** Consecutive passes (0 after a failure). */
  passes = 0;
  /** Consecutive failures (0 after a pass). */
  failures = 0;
  /** Every failed check, passive observations included. */
  checkFailures = 0;
  /** Checks recorded so far. */
  checks = 0;
  /** The last result as text, `undefined` before the first. */
  lastCheck?: string;

  constructor(
    private readonly settings: Pick<HealthSettings, "rise" | "fall">,
    /** When the health last changed (ms): the start until it does. */
    public changedAt: number,
  ) {}

  /**
   * Starts afresh as up (HAProxy's "start OK but check immediately" when a
   * server leaves maintenance): after `enable` or `assign`, what the checks
   * said of the channel before no longer holds. Tells the transition, if it was down.
   */
  restart(why: string, now: number): Transition | undefined {
    this.passes = 0;
    this.failures = 0;
    if (this.up) return undefined;
    this.up = true;
    this.changedAt = now;
    return { up: true, level: "info", text: `is UP: ${why}, checked at once` };
  }

  /** A transition is under way: an up channel has failed, or a down one passed. */
  get transitioning(): boolean {
    return this.up ? this.failures > 0 : this.passes > 0;
  }

  /** Takes one check's result at time `now` (ms); tells the transition it completes, if any. */
  record(result: CheckResult, now: number): Transition | undefined {
    this.checks++;
    this.lastCheck = `${result.ok ? "passed" : "failed"}: ${result.reason}`;
    if (result.ok) {
      this.passes++;
      this.failures = 0;
    } else {
      this.failures++;
      this.passes = 0;
      this.checkFailures++;
    }
    const { rise, fall } = this.settings;
    if (this.up && this.failures >= fall) {
      this.up = false;
      this.changedAt = now;
      return { up: false, level: "warning", text: `is DOWN: ${result.reason} (${fall} of ${fall} checks failed)` };
    }
    if (!this.up && this.passes >= rise) {
      this.up = true;
      this.changedAt = now;
      return { up: true, level: "info", text: `is UP: ${result.reason} (${rise} of ${rise} checks passed)` };
    }
    return undefined;
  }
}

/** Part of a delay taken off at random, so that channels drift apart instead of checking in lockstep. */
const JITTER = 0.1;

/**
 * Seconds from the start of one check to the start of the next: the
 * interval when settled, the fast pace during a transition, less up to 10 %
 * at random (never more, so detection stays within `fall × interval +
 * timeout`). After a channel's first check the delay falls anywhere from a
 * quarter of it to all of it: channels checked together at start part ways
 * at once.
 *
 * @example
 * ```ts
 * nextCheckDelay(record, settings, Math.random); // e.g. 1.93
 * ```
 */
export function nextCheckDelay(
  record: HealthRecord,
  settings: Pick<HealthSettings, "interval">,
  random: () => number,
): number {
  const base = record.transitioning ? fastInterval(settings) : settings.interval;
  if (record.checks <= 1) return base * (0.25 + 0.75 * random());
  return base * (1 - JITTER * random());
}
