/**
 * The clients `--max-per-client` and `--rate-per-client` count, in one
 * SharedArrayBuffer that every worker thread uses, so that a limit does not
 * multiply by the number of threads. The table is bounded (`--client-table`):
 * when it is full the least recently seen client is forgotten, and starts
 * afresh when it comes back.
 *
 * Layout: a chained hash table with an LRU list, all in typed arrays, under
 * one spin lock held for a few hundred nanoseconds at a time. Entries are
 * numbered from 1, so that 0 means none and a fresh (zeroed) buffer is an
 * empty table: its pages cost nothing until clients arrive.
 *
 * @module
 */

/** A client: an IPv4 address, or the /64 of an IPv6 one. */
export interface ClientKey {
  /** 4 or 6. */
  family: number;
  /** IPv6: the first 32 bits; IPv4: 0. */
  hi: number;
  /** IPv6: the next 32 bits; IPv4: the address. */
  lo: number;
}

/**
 * The client an address belongs to: IPv4 (4 bytes) as itself, IPv6 (16
 * bytes) by its /64.
 *
 * @example
 * ```ts
 * clientKey(new Uint8Array([10, 0, 0, 7])); // { family: 4, hi: 0, lo: 0x0a000007 }
 * ```
 */
export function clientKey(bytes: Uint8Array): ClientKey {
  const word = (at: number) => ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]);
  return bytes.length === 4 ? { family: 4, hi: 0, lo: word(0) } : { family: 6, hi: word(0), lo: word(4) };
}

/**
 * A client as an operator reads it: `10.0.0.7`, or `2001:db8:1:2::/64`.
 *
 * @example
 * ```ts
 * formatClient({ family: 6, hi: 0x20010db8, lo: 0x00010002 }); // "2001:db8:1:2::/64"
 * ```
 */
export function formatClient(key: ClientKey): string {
  if (key.family === 4) return [24, 16, 8, 0].map((s) => (key.lo >>> s) & 0xff).join(".");
  const groups = [key.hi >>> 16, key.hi & 0xffff, key.lo >>> 16, key.lo & 0xffff].map((g) => g.toString(16));
  // The /64's trailing zero groups fold into the "::" that ends it.
  while (groups.length > 0 && groups[groups.length - 1] === "0") groups.pop();
  return `${groups.join(":")}::/64`;
}

/** What a worker needs to open the same table: postMessage-able. */
export interface ClientTableHandle {
  buffer: SharedArrayBuffer;
  capacity: number;
}

/** One client's numbers, as `clients` shows them. */
export interface ClientRow {
  key: ClientKey;
  open: number;
  total: number;
  refused: number;
}

/** Why a client was not let in: its open connections, or its rate. */
export type LimitKind = "concurrent" | "rate";

/** The per-client limits in force; undefined = no such limit. */
export interface ClientLimits {
  maxOpen?: number;
  rate?: { connections: number; seconds: number };
}

// Int32 cells of the header.
const LOCK = 0;
const COUNT = 1;
const HEAD = 2;
const TAIL = 3;
const HEADER = 4;
// Int32 cells per entry.
const FAMILY = 0;
const HI = 1;
const LO = 2;
const OPEN = 3;
const PREV = 4;
const NEXT = 5;
const CHAIN = 6;
const GENERATION = 7;
const INTS = 8;
// Float64 cells per entry.
const TOTAL = 0;
const REFUSED = 1;
const TOKENS = 2;
const STAMP = 3;
const FLOATS = 4;
/** Generations wrap here, so that a slot (generation × entries + entry) stays an exact double. */
const GENERATION_MASK = 0x0fffffff;
/** Spins before a blocked thread sleeps a millisecond: the holder may have been preempted. */
const SPINS = 1000;

function bucketCount(capacity: number): number {
  let n = 16;
  while (n < capacity * 2) n *= 2;
  return n;
}

function layoutOf(capacity: number): { ints: number; buckets: number; floatOffset: number; bytes: number } {
  const buckets = bucketCount(capacity);
  const ints = HEADER + buckets + (capacity + 1) * INTS;
  const floatOffset = Math.ceil((ints * 4) / 8) * 8;
  return { ints, buckets, floatOffset, bytes: floatOffset + (capacity + 1) * FLOATS * 8 };
}

/**
 * The shared client table. A client in it is found by {@link ClientKey};
 * an admitted connection holds a slot, which {@link release} gives back
 * unless its client has been forgotten since.
 *
 * @example
 * ```ts
 * const table = ClientTable.create(65536);
 * const slot = table.admit(clientKey(bytes), { maxOpen: 10 }, Date.now());
 * if (typeof slot === "number") table.release(slot);
 * ```
 */
export class ClientTable {
  private readonly ints: Int32Array;
  private readonly floats: Float64Array;
  private readonly buckets: number;
  private readonly capacity: number;

  /** A new empty table of `capacity` clients. */
  static create(capacity: number): ClientTable {
    return new ClientTable({ buffer: new SharedArrayBuffer(layoutOf(capacity).bytes), capacity });
  }

  constructor(readonly handle: ClientTableHandle) {
    const layout = layoutOf(handle.capacity);
    this.capacity = handle.capacity;
    this.buckets = layout.buckets;
    this.ints = new Int32Array(handle.buffer, 0, layout.ints);
    this.floats = new Float64Array(handle.buffer, layout.floatOffset, (handle.capacity + 1) * FLOATS);
  }

  /** Clients in the table now. */
  get size(): number {
    return Atomics.load(this.ints, COUNT);
  }

  /**
   * A new connection from `key` at `now` (ms): a slot to {@link release}
   * when it ends, or the limit that refuses it (then counted as refused).
   */
  admit(key: ClientKey, limits: ClientLimits, now: number): number | LimitKind {
    this.lock();
    try {
      const e = this.touch(key, now);
      const { ints, floats } = this;
      const at = e * FLOATS;
      if (limits.maxOpen !== undefined && ints[this.cell(e, OPEN)] >= limits.maxOpen) {
        floats[at + REFUSED]++;
        return "concurrent";
      }
      const rate = limits.rate;
      if (rate) {
        const perMs = rate.connections / (rate.seconds * 1000);
        const elapsed = Math.max(0, now - floats[at + STAMP]);
        const tokens = Math.min(rate.connections, floats[at + TOKENS] + elapsed * perMs);
        floats[at + STAMP] = now;
        if (tokens < 1) {
          floats[at + TOKENS] = tokens;
          floats[at + REFUSED]++;
          return "rate";
        }
        floats[at + TOKENS] = tokens - 1;
      }
      ints[this.cell(e, OPEN)]++;
      floats[at + TOTAL]++;
      return ints[this.cell(e, GENERATION)] * (this.capacity + 1) + e;
    } finally {
      this.unlock();
    }
  }

  /** A connection from `key` was refused before any limit (a rule): counted as refused. */
  refuse(key: ClientKey, now: number): void {
    this.lock();
    try {
      this.floats[this.touch(key, now) * FLOATS + REFUSED]++;
    } finally {
      this.unlock();
    }
  }

  /** The connection that {@link admit} gave `slot` has ended. */
  release(slot: number): void {
    const entries = this.capacity + 1;
    const e = slot % entries;
    this.lock();
    try {
      // A client forgotten meanwhile starts afresh: its new entry owes nothing.
      if (this.ints[this.cell(e, GENERATION)] === (slot - e) / entries) this.ints[this.cell(e, OPEN)]--;
    } finally {
      this.unlock();
    }
  }

  /** The `n` clients with the most open connections (then the most in total). */
  top(n: number): ClientRow[] {
    const rows: ClientRow[] = [];
    this.lock();
    try {
      const { ints, floats } = this;
      const count = ints[COUNT];
      for (let e = 1; e <= count; e++) {
        rows.push({
          key: { family: ints[this.cell(e, FAMILY)], hi: ints[this.cell(e, HI)], lo: ints[this.cell(e, LO)] },
          open: ints[this.cell(e, OPEN)],
          total: floats[e * FLOATS + TOTAL],
          refused: floats[e * FLOATS + REFUSED],
        });
      }
    } finally {
      this.unlock();
    }
    return rows.sort((a, b) => b.open - a.open || b.total - a.total || b.refused - a.refused).slice(0, n);
  }

  private cell(entry: number, field: number): number {
    return HEADER + this.buckets + entry * INTS + field;
  }

  private hash(key: ClientKey): number {
    let h = Math.imul(key.lo ^ Math.imul(key.hi, 0x9e3779b1) ^ key.family, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    return (h ^ (h >>> 16)) & (this.buckets - 1);
  }

  // Finds or adds `key`'s entry (forgetting the least recently seen client
  // when full) and makes it the most recently seen. Under the lock.
  private touch(key: ClientKey, now: number): number {
    const ints = this.ints;
    const bucket = HEADER + this.hash(key);
    for (let e = ints[bucket]; e !== 0; e = ints[this.cell(e, CHAIN)]) {
      if (
        ints[this.cell(e, LO)] === key.lo && ints[this.cell(e, HI)] === key.hi &&
        ints[this.cell(e, FAMILY)] === key.family
      ) {
        this.unlinkRecent(e);
        this.pushRecent(e);
        return e;
      }
    }
    let e: number;
    if (ints[COUNT] < this.capacity) {
      e = ++ints[COUNT];
    } else {
      e = ints[TAIL];
      this.unlinkRecent(e);
      this.unlinkChain(e);
      ints[this.cell(e, GENERATION)] = (ints[this.cell(e, GENERATION)] + 1) & GENERATION_MASK;
    }
    ints[this.cell(e, FAMILY)] = key.family;
    ints[this.cell(e, HI)] = key.hi;
    ints[this.cell(e, LO)] = key.lo;
    ints[this.cell(e, OPEN)] = 0;
    ints[this.cell(e, CHAIN)] = ints[bucket];
    ints[bucket] = e;
    const at = e * FLOATS;
    this.floats[at + TOTAL] = 0;
    this.floats[at + REFUSED] = 0;
    // A new client's bucket is full: Infinity refills to the burst.
    this.floats[at + TOKENS] = Infinity;
    this.floats[at + STAMP] = now;
    this.pushRecent(e);
    return e;
  }

  private unlinkChain(e: number): void {
    const ints = this.ints;
    const key = { family: ints[this.cell(e, FAMILY)], hi: ints[this.cell(e, HI)], lo: ints[this.cell(e, LO)] };
    let at = HEADER + this.hash(key);
    while (ints[at] !== e) at = this.cell(ints[at], CHAIN);
    ints[at] = ints[this.cell(e, CHAIN)];
  }

  private unlinkRecent(e: number): void {
    const ints = this.ints;
    const prev = ints[this.cell(e, PREV)];
    const next = ints[this.cell(e, NEXT)];
    if (prev !== 0) ints[this.cell(prev, NEXT)] = next;
    else if (ints[HEAD] === e) ints[HEAD] = next;
    if (next !== 0) ints[this.cell(next, PREV)] = prev;
    else if (ints[TAIL] === e) ints[TAIL] = prev;
    ints[this.cell(e, PREV)] = 0;
    ints[this.cell(e, NEXT)] = 0;
  }

  private pushRecent(e: number): void {
    const ints = this.ints;
    const head = ints[HEAD];
    ints[this.cell(e, NEXT)] = head;
    ints[this.cell(e, PREV)] = 0;
    if (head !== 0) ints[this.cell(head, PREV)] = e;
    ints[HEAD] = e;
    if (ints[TAIL] === 0) ints[TAIL] = e;
  }

  private lock(): void {
    const ints = this.ints;
    for (let spins = 0; Atomics.compareExchange(ints, LOCK, 0, 1) !== 0; spins++) {
      if (spins >= SPINS) {
        spins = 0;
        try {
          Atomics.wait(ints, LOCK, 1, 1);
        } catch { /* a thread that may not block spins on */ }
      }
    }
  }

  private unlock(): void {
    Atomics.store(this.ints, LOCK, 0);
    // Waiters sleep at most a millisecond; no notify needed on this path.
  }
}
