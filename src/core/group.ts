import type { Channel } from "./channel.ts";
import { GROUP_CELLS } from "./state.ts";

/** How a group picks among its channels. */
export type GroupType = "RR" | "Hash";

const TYPE = 0;
const CURRENT = 1;

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
    return Atomics.load(this.cells, TYPE) === 1 ? "Hash" : "RR";
  }
  set type(type: GroupType) {
    Atomics.store(this.cells, TYPE, type === "Hash" ? 1 : 0);
  }

  /**
   * Round robin position: where the next RR pick starts looking. Plain
   * reads and writes: two threads picking at once may start at the same
   * channel, which the claim settles; no lock on every connection for that.
   */
  get current(): number {
    return this.cells[CURRENT];
  }
  set current(index: number) {
    this.cells[CURRENT] = index;
  }
}
