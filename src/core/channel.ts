/**
 * One destination of a group, with the counters `show` prints.
 *
 * Counters live on the channel itself so that the relay updates them with a
 * plain field increment: no lookup on the per-chunk path.
 *
 * @example
 * ```ts
 * const ch = new Channel("127.0.0.1", 8080, 10);
 * if (ch.isUsable()) ch.claim();
 * ch.release();
 * ```
 */
export class Channel {
  /** Current connections. */
  c = 0;
  /** Connections ever made (a failed connect is taken back). */
  totalc = 0;
  /** Bytes sent to this channel. */
  sent = 0;
  /** Bytes received from this channel. */
  rcvd = 0;

  constructor(
    /** Address to connect to (resolved at start, or as given by `create`/`assign`). */
    public address: string,
    public port: number,
    /** Most simultaneous connections; 0 means no limit. */
    public maxc = 0,
    public enabled = true,
  ) {}

  /** Enabled and below its maxc: the test every selection step applies. */
  isUsable(): boolean {
    return this.enabled && (this.maxc === 0 || this.c < this.maxc);
  }

  /** Count a new connection before connecting, so concurrent picks see it. */
  claim(): void {
    this.c++;
    this.totalc++;
  }

  /** Take back a claim whose connect failed: it never was a connection. */
  unclaim(): void {
    this.c--;
    this.totalc--;
  }

  /** A connection to this channel has ended. */
  release(): void {
    this.c--;
  }
}
