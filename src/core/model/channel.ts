import { type ChannelCells, standaloneChannelCells } from "./state.ts";

const C = 0;
const ENABLED = 1;
const MAXC = 2;
// 0 when up: a new channel, and every channel without --check, is up.
const DOWN = 3;
// Stored as given: 0 (drain) to 256. A new channel weighs 1.
const WEIGHT = 4;
const TOTALC = 0;
const SENT = 1;
const RCVD = 2;
const CONNECT_FAILURES = 3;
// Seconds, summed over every connect attempt.
const CONNECT_SECONDS = 4;
// One count per bucket of CONNECT_BUCKETS, then one for longer attempts (not cumulative).
const CONNECT_BUCKET = 5;
// After the buckets: UDP datagrams relayed to and from the channel.
const DATAGRAMS_SENT = 19;
const DATAGRAMS_RCVD = 20;

/**
 * The upper bounds, in seconds, of the connect-time histogram's buckets
 * (`balance_channel_connect_duration_seconds`): 0.5 ms to 10 s.
 *
 * @example
 * ```ts
 * CONNECT_BUCKETS.at(-1); // 10
 * ```
 */
export const CONNECT_BUCKETS: readonly number[] = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];
// The same in milliseconds, which connect() measures: no division per attempt.
const BUCKET_MS = Float64Array.from(CONNECT_BUCKETS, (s) => s * 1000);

/**
 * A channel's counters since the start, summed over every writer, `reset`
 * ignored: what metrics export, since a counter there never goes down.
 */
export interface ChannelCounts {
  /** Connections made (successful connects). */
  connections: number;
  sent: number;
  rcvd: number;
  /** Connect attempts that failed or timed out. */
  connectFailures: number;
  /** Seconds spent in connect attempts, failed ones included. */
  connectSeconds: number;
  /** Attempts per bucket of {@link CONNECT_BUCKETS}, then those above the last bound; not cumulative. */
  connectBuckets: number[];
  /** UDP datagrams relayed to the channel. */
  datagramsSent: number;
  /** UDP datagrams relayed from the channel. */
  datagramsRcvd: number;
}

/**
 * One destination of a group, with the counters `show` prints.
 *
 * The numbers live in {@link ChannelCells} (a SharedArrayBuffer that every
 * worker sees); the address is this object's own, since only the control
 * thread changes it and tells the workers. `c` is claimed with a
 * compare-and-swap, so `maxc` holds across workers. Bytes are counted in this
 * writer's own row: a plain add on the per-chunk path.
 *
 * @example
 * ```ts
 * const ch = new Channel("127.0.0.1", 8080, 10);
 * if (ch.tryClaim()) ch.release();
 * ch.countSent(1460);
 * ```
 */
export class Channel {
  constructor(
    /** Address to connect to (resolved at start, or as given by `create`/`assign`). */
    public address: string,
    public port: number,
    /** Most simultaneous connections, 0 = no limit; `undefined` keeps what `cells` hold. */
    maxc?: number,
    /** `undefined` keeps what `cells` hold. */
    enabled?: boolean,
    /** Where the numbers live; cells of its own, enabled by default, when absent. */
    cells?: ChannelCells,
  ) {
    this.cells = cells ?? standaloneChannelCells();
    if (cells === undefined) {
      enabled ??= true;
      this.weight = 1;
    }
    if (maxc !== undefined) this.maxc = maxc;
    if (enabled !== undefined) this.enabled = enabled;
  }

  /** Where the numbers live. */
  readonly cells: ChannelCells;

  /**
   * The host as the configuration names it (a DNS name, or an address),
   * which `dump` writes so that a start from the dump follows the name
   * again; `undefined` for an address set by `create` or `assign`. Only the
   * control thread's channels carry it: workers connect to {@link address}.
   */
  host?: string;

  /** Current connections, over all workers; changed only by claims and releases. */
  get c(): number {
    return Atomics.load(this.cells.flags, C);
  }

  get enabled(): boolean {
    return Atomics.load(this.cells.flags, ENABLED) === 1;
  }
  set enabled(on: boolean) {
    Atomics.store(this.cells.flags, ENABLED, on ? 1 : 0);
  }

  /**
   * The health state (`--check`), independent of {@link enabled}: only the
   * health checker sets it; every worker sees it.
   */
  get up(): boolean {
    return Atomics.load(this.cells.flags, DOWN) === 0;
  }
  set up(on: boolean) {
    Atomics.store(this.cells.flags, DOWN, on ? 0 : 1);
  }

  /** Share of the group's new connections (`host:port:maxc:weight`): 0 takes none, 1 by default. */
  get weight(): number {
    return Atomics.load(this.cells.flags, WEIGHT);
  }
  set weight(w: number) {
    Atomics.store(this.cells.flags, WEIGHT, w);
  }

  /** Most simultaneous connections; 0 means no limit. */
  get maxc(): number {
    return Atomics.load(this.cells.flags, MAXC);
  }
  set maxc(n: number) {
    Atomics.store(this.cells.flags, MAXC, n);
  }

  /** Connections ever made (counted once connected). Setting it moves the baseline. */
  get totalc(): number {
    return this.counter(TOTALC);
  }
  set totalc(n: number) {
    this.setCounter(TOTALC, n);
  }

  /** Bytes sent to this channel. */
  get sent(): number {
    return this.counter(SENT);
  }
  set sent(n: number) {
    this.setCounter(SENT, n);
  }

  /** Bytes received from this channel. */
  get rcvd(): number {
    return this.counter(RCVD);
  }
  set rcvd(n: number) {
    this.setCounter(RCVD, n);
  }

  /**
   * Enabled, up and below its maxc: the test every selection step applies. Plain
   * reads, not Atomics: this only filters candidates (a stale answer costs a
   * wasted look), {@link tryClaim} decides.
   */
  isUsable(): boolean {
    const flags = this.cells.flags;
    const maxc = flags[MAXC];
    return flags[ENABLED] === 1 && flags[DOWN] === 0 && (maxc === 0 || flags[C] < maxc);
  }

  /**
   * `c` if the channel is usable and takes new connections (weight above 0),
   * else -1: least connection's look at every channel of its group, in plain
   * reads for the same reason as {@link isUsable}.
   */
  usableLoad(): number {
    const flags = this.cells.flags;
    const c = flags[C];
    const maxc = flags[MAXC];
    return flags[ENABLED] === 1 && flags[DOWN] === 0 && flags[WEIGHT] !== 0 && (maxc === 0 || c < maxc) ? c : -1;
  }

  /** {@link weight} in a plain read, for the same look as {@link usableLoad}. */
  peekWeight(): number {
    return this.cells.flags[WEIGHT];
  }

  /**
   * Takes a place (`c`) before connecting, so concurrent picks (in this
   * worker or another) see it; `false` when the channel is disabled, down
   * or full. Health is a plain read: it changes at the pace of checks, and a
   * claim a moment after a channel went down only costs that one connect.
   */
  tryClaim(): boolean {
    const flags = this.cells.flags;
    if (flags[DOWN] !== 0) return false;
    for (;;) {
      if (!this.enabled) return false;
      const c = Atomics.load(flags, C);
      const maxc = Atomics.load(flags, MAXC);
      if (maxc !== 0 && c >= maxc) return false;
      if (Atomics.compareExchange(flags, C, c, c + 1) === c) return true;
    }
  }

  /**
   * A claimed connect has ended after `ms`: counts the attempt in the
   * connect-time histogram, and the connection (`totalc`) or the failure.
   * Counted only now, so that no counter ever goes back (a metric must not).
   */
  countConnect(ms: number, connected: boolean): void {
    const mine = this.cells.mine;
    let i = 0;
    while (i < BUCKET_MS.length && ms > BUCKET_MS[i]) i++;
    mine[CONNECT_BUCKET + i]++;
    mine[CONNECT_SECONDS] += ms / 1000;
    mine[connected ? TOTALC : CONNECT_FAILURES]++;
  }

  /** Takes back a claim whose connect failed: it never was a connection. */
  unclaim(): void {
    Atomics.sub(this.cells.flags, C, 1);
  }

  /** A connection to this channel has ended. */
  release(): void {
    Atomics.sub(this.cells.flags, C, 1);
  }

  /** Bytes relayed to the channel. */
  countSent(n: number): void {
    this.cells.mine[SENT] += n;
  }

  /** Bytes relayed from the channel. */
  countRcvd(n: number): void {
    this.cells.mine[RCVD] += n;
  }

  /** A datagram of `n` bytes relayed to the channel. */
  countDatagramSent(n: number): void {
    const mine = this.cells.mine;
    mine[SENT] += n;
    mine[DATAGRAMS_SENT]++;
  }

  /** A datagram of `n` bytes relayed from the channel. */
  countDatagramRcvd(n: number): void {
    const mine = this.cells.mine;
    mine[RCVD] += n;
    mine[DATAGRAMS_RCVD]++;
  }

  /** A connection it had taken was refused after all (an ICMP port unreachable to a UDP session). */
  countRefused(): void {
    this.cells.mine[CONNECT_FAILURES]++;
  }

  /** The counters since the start, for metrics (see {@link ChannelCounts}). */
  counts(): ChannelCounts {
    const raw = new Float64Array(DATAGRAMS_RCVD + 1);
    for (const row of this.cells.rows) {
      for (let i = 0; i < raw.length; i++) raw[i] += row[i];
    }
    return {
      connections: raw[TOTALC],
      sent: raw[SENT],
      rcvd: raw[RCVD],
      connectFailures: raw[CONNECT_FAILURES],
      connectSeconds: raw[CONNECT_SECONDS],
      connectBuckets: Array.from(raw.subarray(CONNECT_BUCKET, CONNECT_BUCKET + BUCKET_MS.length + 1)),
      datagramsSent: raw[DATAGRAMS_SENT],
      datagramsRcvd: raw[DATAGRAMS_RCVD],
    };
  }

  private counter(i: number): number {
    let sum = -this.cells.baseline[i];
    for (const row of this.cells.rows) sum += row[i];
    return sum;
  }

  private setCounter(i: number, n: number): void {
    this.cells.baseline[i] = this.counter(i) + this.cells.baseline[i] - n;
  }
}
