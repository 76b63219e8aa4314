/** A connection the idle timer can watch. */
export interface Idleable {
  /** Set to true by the relay on every chunk: cheaper than reading a clock. */
  active: boolean;
  /** Called once when the connection saw no traffic for the whole timeout. */
  closeIdle(): void;
}

interface Watched {
  idleTicks: number;
}

/**
 * The `-T` idle timeout for all connections with one coarse timer, not a
 * timer per connection or per chunk. The relay only flips a flag per chunk;
 * each tick counts how long a connection has been quiet. A connection is
 * closed after between `timeout` and `timeout + tick` of silence.
 *
 * @example
 * ```ts
 * const idle = new IdleTimer(30_000);
 * const conn = { active: false, closeIdle: () => socket.close() };
 * idle.add(conn); // ... on each chunk: conn.active = true
 * idle.delete(conn);
 * ```
 */
export class IdleTimer {
  readonly tickMs: number;
  private readonly ticksToExpire: number;
  private readonly watched = new Map<Idleable, Watched>();
  private interval: ReturnType<typeof setInterval> | undefined;

  constructor(readonly timeoutMs: number) {
    this.tickMs = Math.min(1000, Math.max(50, Math.floor(timeoutMs / 10)));
    this.ticksToExpire = Math.ceil(timeoutMs / this.tickMs);
  }

  add(conn: Idleable): void {
    this.watched.set(conn, { idleTicks: 0 });
    // The timer runs only while there is something to watch, so an idle
    // balancer does not wake up.
    this.interval ??= setInterval(() => this.tick(), this.tickMs);
  }

  delete(conn: Idleable): void {
    this.watched.delete(conn);
    if (this.watched.size === 0 && this.interval !== undefined) {
      clearInterval(this.interval);
      this.interval = undefined;
    }
  }

  /** One tick: exposed so tests can drive time without waiting. */
  tick(): void {
    for (const [conn, state] of this.watched) {
      if (conn.active) {
        conn.active = false;
        state.idleTicks = 0;
      } else if (++state.idleTicks >= this.ticksToExpire) {
        this.delete(conn);
        conn.closeIdle();
      }
    }
  }
}
