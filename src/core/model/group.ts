import type { Channel } from "./channel.ts";
import type { RoundRobinCycle } from "../selection/schedule/round_robin.ts";
import { GROUP_CELLS } from "./state.ts";

/** How a group picks among its channels: (weighted) round robin, least connection, client hash. */
export type GroupType = "RR" | "LC" | "Hash";

const TYPES: readonly GroupType[] = ["RR", "Hash", "LC"];
const TYPE = 0;
const CURRENT = 1;
// Bumped whenever the group's channel set or a weight changes, so that what
// a thread derives from them (a WRR sequence, a hash table) is rebuilt.
const GENERATION = 2;

/**
 * An ordered list of channels and the way it picks among them. The type and
 * the RR position live in shared cells, so that `hash`/`rr` and the round
 * robin reach every worker.
 *
 * @example
 * ```ts
 * const g = new Group("RR", [new Channel("127.0.0.1", 81)]);
 * g.current; // 0: round robin starts at the first channel
 * ```
 */
export class Group {
  /**
   * The service (`@NAME`) whose failover chain the group is part of; `""`
   * for the default service. Failover never leaves a service.
   */
  service = "";

  constructor(
    /** `undefined` keeps the type already in `cells` (a worker joining a running state). */
    type: GroupType | undefined,
    readonly channels: Channel[] = [],
    /** Where type and position live; a group of its own by default. */
    readonly cells: Int32Array = new Int32Array(new SharedArrayBuffer(GROUP_CELLS * 4)),
  ) {
    if (type !== undefined) this.type = type;
  }

  get type(): GroupType {
    return TYPES[Atomics.load(this.cells, TYPE)] ?? "RR";
  }
  set type(type: GroupType) {
    Atomics.store(this.cells, TYPE, TYPES.indexOf(type));
  }

  /** Changes whenever a channel joins, moves or changes weight: what was derived from them is stale. */
  get generation(): number {
    return Atomics.load(this.cells, GENERATION);
  }

  /**
   * {@link generation} in a plain read, for the check on every pick: a change
   * seen a pick late costs nothing, and whoever sees one re-reads it with
   * {@link generation} before deriving anything from the channels.
   */
  peekGeneration(): number {
    return this.cells[GENERATION];
  }

  /** Tells every thread that the channel set or a weight changed. */
  changed(): void {
    Atomics.add(this.cells, GENERATION, 1);
  }

  /** This thread's smooth-WRR cycle, derived from the weights; stale once {@link generation} moves on. */
  cycle?: RoundRobinCycle;

  /**
   * Round robin position: where the next pick starts looking, in the
   * smooth-WRR cycle of an RR group (with all weights 1, a channel index),
   * among the channels of an LC group (where ties go). A plain read: a pick
   * that acts on it moves it with {@link advance}, which settles a race.
   */
  get current(): number {
    return this.cells[CURRENT];
  }
  set current(index: number) {
    Atomics.store(this.cells, CURRENT, index);
  }

  /**
   * Moves the position from `expected` to `next` only if no other thread
   * moved it since `expected` was read, and returns what it was: `expected`
   * on success. Two workers picking at once would otherwise both take the
   * channel at the same position, and round robin would not be exact.
   *
   * @example
   * ```ts
   * const g = new Group("RR", [a, b]);
   * g.advance(0, 1); // 0: moved, the next pick starts at b
   * g.advance(0, 1); // 1: another pick moved it first; start again from 1
   * ```
   */
  advance(expected: number, next: number): number {
    return Atomics.compareExchange(this.cells, CURRENT, expected, next);
  }
}
