import type { Channel } from "./channel.ts";

/** How a group picks among its channels. */
export type GroupType = "RR" | "Hash";

/**
 * An ordered list of channels and the way it picks among them.
 *
 * @example
 * ```ts
 * const g = new Group("RR", [new Channel("127.0.0.1", 81)]);
 * g.current; // 0: round robin starts at the first channel
 * ```
 */
export class Group {
  /** Round robin position: where the next RR pick starts looking. */
  current = 0;

  constructor(public type: GroupType, readonly channels: Channel[] = []) {}
}
