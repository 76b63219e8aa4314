/**
 * The numbers of a balancer — channel status and health, `c`, `maxc`, counters, group
 * types and RR positions, the open-connection total — kept in one
 * SharedArrayBuffer, so that every worker thread sees and changes one state,
 * as balance 3.54's processes shared one table in shared memory.
 *
 * Layout: Int32 cells shared by all threads (changed with Atomics; selection
 * only filters with plain reads, the claim decides), and one row of Float64
 * counters per writer: each worker adds to its own row, so the per-chunk path
 * needs no atomic operation and no lock. A counter's value is the sum of the
 * rows minus a baseline row that `reset` moves. Rows are read without Atomics
 * (none exist for Float64); an aligned 8-byte read does not tear on the
 * 64-bit machines we ship for, and a counter a chunk behind is still right.
 *
 * @module
 */

/** Int32 cells of the whole balancer. */
const OPEN = 0;
const CHANNELS_USED = 1;
const HEADER_CELLS = 2;

/** Int32 cells per group: its type (0 RR, 1 Hash, 2 LC), RR position, generation (indexed in group.ts). */
export const GROUP_CELLS = 3;
/**
 * Int32 cells per channel: c, enabled (0/1), maxc, down (0 = up or not
 * checked, 1 = a health check found it down), weight (indexed in channel.ts).
 */
const CHANNEL_CELLS = 5;
/**
 * Float64 counters per channel and writer: totalc, sent, rcvd, connect
 * failures, the connect-time sum and histogram buckets, datagrams sent and
 * received (indexed in channel.ts).
 */
const CHANNEL_COUNTERS = 21;
/**
 * Float64 counters of the whole balancer per writer: clients, clients
 * rejected, clients refused for their PROXY header, clients denied by a
 * rule, clients refused by a per-client limit (concurrent, rate), clients
 * refused for their TLS ClientHello (`--sni`); UDP sessions opened and
 * closed, and datagrams dropped by reason (`--udp`); FTP data connections
 * refused for coming from the wrong address (`--ftp`).
 */
const CLIENTS = 0;
const REJECTED = 1;
const PROXY_REFUSED = 2;
const DENIED = 3;
const LIMITED_CONCURRENT = 4;
const LIMITED_RATE = 5;
const SNI_REFUSED = 6;
const UDP_OPENED = 7;
const UDP_CLOSED = 8;
const UDP_DROPPED = 9;
const FTP_DATA_REFUSED = 12;
const GLOBAL_COUNTERS = 13;

/**
 * Why a datagram from a client was dropped: a session beyond
 * `--udp-max-sessions` or the descriptors (or beyond what one session holds
 * while its channel is opened), no channel for its session, or larger than a
 * datagram may be once a PROXY header is put in front.
 *
 * @example
 * ```ts
 * const reason: DropReason = "over-cap";
 * ```
 */
export type DropReason = "over-cap" | "no-channel" | "too-large";

/** Every {@link DropReason}, in the order the counters keep them. */
export const DROP_REASONS: readonly DropReason[] = ["over-cap", "no-channel", "too-large"];

/** The cells of one channel, wherever they live. */
export interface ChannelCells {
  /** Its place in the state: what the layout sent to workers names. */
  slot: number;
  /** c, enabled, maxc, down, weight. */
  flags: Int32Array;
  /** This writer's counters (totalc, sent, rcvd, connect failures and times). */
  mine: Float64Array;
  /** Every writer's counters, summed for reading. */
  rows: Float64Array[];
  /** Subtracted from the sum: moved by `reset` and by setting a counter. */
  baseline: Float64Array;
}

/** What a worker needs to open the same state: postMessage-able. */
export interface StateHandle {
  buffer: SharedArrayBuffer;
  groups: number;
  channels: number;
  writers: number;
}

/**
 * One balancer's numbers in a SharedArrayBuffer, seen by one writer. The
 * control thread holds writer 0's view too but never counts: it reads, and
 * moves baselines.
 *
 * @example
 * ```ts
 * const state = SharedState.create({ groups: 64, channels: 1024, writers: 2 });
 * const inWorker = new SharedState(state.handle, 1); // after postMessage(state.handle)
 * inWorker.channelCells(0).mine[1] += 1460; // worker 1 counts bytes sent
 * ```
 */
export class SharedState {
  readonly ints: Int32Array;
  readonly counters: Float64Array;
  // This writer's balancer-wide counters, and every writer's.
  private readonly mine: Float64Array;
  private readonly rows: Float64Array[];

  /** A new zeroed state for `channels` channels and `writers` writers; this view is writer 0. */
  static create(size: { groups: number; channels: number; writers: number }): SharedState {
    const { counterOffset, counterCount } = layoutOf(size);
    return new SharedState({ ...size, buffer: new SharedArrayBuffer(counterOffset + counterCount * 8) }, 0);
  }

  constructor(readonly handle: StateHandle, readonly writer: number) {
    const { intCount, counterOffset, counterCount } = layoutOf(handle);
    this.ints = new Int32Array(handle.buffer, 0, intCount);
    this.counters = new Float64Array(handle.buffer, counterOffset, counterCount);
    this.rows = Array.from({ length: handle.writers }, (_, w) => {
      const from = w * rowLength(handle.channels);
      return this.counters.subarray(from, from + GLOBAL_COUNTERS);
    });
    this.mine = this.rows[writer];
  }

  /** Counts a client that reached the balancer's connect. */
  countClient(): void {
    this.mine[CLIENTS]++;
  }

  /** Counts a client closed because no channel took it. */
  countRejected(): void {
    this.mine[REJECTED]++;
  }

  /** Counts a client closed for a missing or malformed PROXY header (`--accept-proxy`). */
  countProxyRefused(): void {
    this.mine[PROXY_REFUSED]++;
  }

  /** Counts a client closed by `--deny` (or not matching `--proxy-from`). */
  countDenied(): void {
    this.mine[DENIED]++;
  }

  /** Counts a client closed by `--max-per-client` (`concurrent`) or `--rate-per-client` (`rate`). */
  countLimited(limit: "concurrent" | "rate"): void {
    this.mine[limit === "concurrent" ? LIMITED_CONCURRENT : LIMITED_RATE]++;
  }

  /** Counts a client closed for a malformed, oversized or late ClientHello (`--sni`). */
  countSniRefused(): void {
    this.mine[SNI_REFUSED]++;
  }

  /** Counts a UDP session opened (`opened`) or ended. */
  countUdpSession(opened: boolean): void {
    this.mine[opened ? UDP_OPENED : UDP_CLOSED]++;
  }

  /** UDP sessions open now, all writers together. */
  get udpSessions(): number {
    return this.sum(UDP_OPENED) - this.sum(UDP_CLOSED);
  }

  /** Counts `n` client datagrams dropped for `reason`. */
  countUdpDropped(reason: DropReason, n = 1): void {
    this.mine[UDP_DROPPED + DROP_REASONS.indexOf(reason)] += n;
  }

  /** Datagrams ever counted by {@link countUdpDropped} for `reason`, all writers together. */
  udpDropped(reason: DropReason): number {
    return this.sum(UDP_DROPPED + DROP_REASONS.indexOf(reason));
  }

  /** Counts a connection to an FTP data listener from another address than the one expected (`--ftp`). */
  countFtpDataRefused(): void {
    this.mine[FTP_DATA_REFUSED]++;
  }

  /** Connections ever counted by {@link countFtpDataRefused}, all writers together; never reset. */
  get ftpDataRefused(): number {
    return this.sum(FTP_DATA_REFUSED);
  }

  /** Clients ever counted by {@link countSniRefused}, all writers together; never reset. */
  get sniRefused(): number {
    return this.sum(SNI_REFUSED);
  }

  /** Clients ever counted by {@link countClient}, all writers together; never reset. */
  get clients(): number {
    return this.sum(CLIENTS);
  }

  /** Clients ever counted by {@link countRejected}, all writers together; never reset. */
  get rejected(): number {
    return this.sum(REJECTED);
  }

  /** Clients ever counted by {@link countProxyRefused}, all writers together; never reset. */
  get proxyRefused(): number {
    return this.sum(PROXY_REFUSED);
  }

  /** Clients ever counted by {@link countDenied}, all writers together; never reset. */
  get denied(): number {
    return this.sum(DENIED);
  }

  /** Clients ever counted by {@link countLimited}, by limit, all writers together; never reset. */
  limited(limit: "concurrent" | "rate"): number {
    return this.sum(limit === "concurrent" ? LIMITED_CONCURRENT : LIMITED_RATE);
  }

  private sum(i: number): number {
    let sum = 0;
    for (const row of this.rows) sum += row[i];
    return sum;
  }

  /** The running total of connections open or being connected, all writers together. */
  get open(): number {
    return Atomics.load(this.ints, OPEN);
  }

  /** Adds `n` (±1) to the open total. */
  addOpen(n: number): void {
    Atomics.add(this.ints, OPEN, n);
  }

  /** The cells of group `g` (type, RR position). */
  groupCells(g: number): Int32Array {
    if (g >= this.handle.groups) throw new RangeError(`group ${g} beyond the state's ${this.handle.groups}`);
    const at = HEADER_CELLS + g * GROUP_CELLS;
    return this.ints.subarray(at, at + GROUP_CELLS);
  }

  /** Channel slots not taken yet. */
  get freeChannels(): number {
    return this.handle.channels - Atomics.load(this.ints, CHANNELS_USED);
  }

  /** Takes the next free channel slot, or `undefined` when all are used. */
  allocateChannel(): number | undefined {
    const slot = Atomics.add(this.ints, CHANNELS_USED, 1);
    if (slot < this.handle.channels) return slot;
    Atomics.sub(this.ints, CHANNELS_USED, 1);
    return undefined;
  }

  /** The cells of the channel in `slot`, as this writer sees them. */
  channelCells(slot: number): ChannelCells {
    const { groups, channels, writers } = this.handle;
    const at = HEADER_CELLS + groups * GROUP_CELLS + slot * CHANNEL_CELLS;
    const row = (w: number) => {
      const from = w * rowLength(channels) + GLOBAL_COUNTERS + slot * CHANNEL_COUNTERS;
      return this.counters.subarray(from, from + CHANNEL_COUNTERS);
    };
    const rows = Array.from({ length: writers }, (_, w) => row(w));
    return {
      slot,
      flags: this.ints.subarray(at, at + CHANNEL_CELLS),
      mine: rows[this.writer],
      rows,
      baseline: row(writers),
    };
  }
}

// Int32 cells first, then the Float64 rows (writers, then the baseline),
// 8-byte aligned. A row: the balancer-wide counters, then each channel's.
function layoutOf(size: { groups: number; channels: number; writers: number }) {
  const intCount = HEADER_CELLS + size.groups * GROUP_CELLS + size.channels * CHANNEL_CELLS;
  return {
    intCount,
    counterOffset: Math.ceil(intCount / 2) * 8,
    counterCount: (size.writers + 1) * rowLength(size.channels),
  };
}

function rowLength(channels: number): number {
  return GLOBAL_COUNTERS + channels * CHANNEL_COUNTERS;
}

/**
 * Cells for a channel that belongs to no shared state (a channel made on its
 * own, as tests and `new Channel(...)` do): one writer, all zero.
 *
 * @example
 * ```ts
 * const cells = standaloneChannelCells();
 * cells.rows.length; // 1
 * ```
 */
export function standaloneChannelCells(): ChannelCells {
  return SharedState.create({ groups: 0, channels: 1, writers: 1 }).channelCells(0);
}
