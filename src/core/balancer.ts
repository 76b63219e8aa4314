import { Channel } from "./channel.ts";
import { Group } from "./group.ts";
import type { GroupSpec } from "./grammar.ts";
import { pickChannels } from "./select.ts";

/** Most groups per balancer (balance 3.54 allowed 16). */
export const MAX_GROUPS = 64;
/** Most channels per group, including those added by `create` (3.54: 16). */
export const MAX_CHANNELS = 1024;

/** Options of the selection procedure, with balance's defaults made explicit. */
export interface SelectionOptions {
  /** `-a`: disable a channel whose connect fails, until enabled by hand. */
  autodisable: boolean;
  /** `-H`: in a Hash group, fall back to the other channels. */
  hashFailover: boolean;
}

/** What a {@link Balancer} reports as it decides (for `-d`). */
export type TraceFn = (message: string) => void;

/** A connection made by {@link Balancer.connect}. */
export interface Connected<T> {
  channel: Channel;
  conn: T;
}

/**
 * The whole balancing state: groups, channels and their counters, and the
 * connect-with-failover procedure. Runtime-free: the adapter supplies `dial`.
 *
 * @example
 * ```ts
 * const balancer = new Balancer([new Group("RR", [new Channel("127.0.0.1", 81)])]);
 * const connected = await balancer.connect("10.0.0.7", (ch) => dialTcp(ch.address, ch.port));
 * if (connected) relay(client, connected.conn).finally(() => balancer.release(connected.channel));
 * ```
 */
export class Balancer {
  // Kept as a running total so that admission on every accept is O(1).
  private open = 0;

  constructor(
    readonly groups: Group[],
    readonly options: SelectionOptions = { autodisable: false, hashFailover: false },
    private readonly trace?: TraceFn,
  ) {}

  /**
   * Builds a balancer from parsed groups whose hosts are already resolved
   * (`resolve` maps a spec's host to the address to connect to).
   */
  static fromSpecs(
    specs: GroupSpec[],
    options: SelectionOptions,
    trace?: TraceFn,
    resolve: (host: string) => string = (host) => host,
  ): Balancer {
    const groups = specs.map((g) =>
      new Group(g.type, g.channels.map((c) => new Channel(resolve(c.host), c.port, c.maxc)))
    );
    return new Balancer(groups, options, trace);
  }

  /**
   * Connects a client to the first channel that accepts, trying channels in
   * the order of {@link pickChannels}. A channel is counted (`c`, `totalc`)
   * before its connect starts and uncounted if the connect fails; with
   * autodisable it is then disabled. Resolves to `undefined` when no channel
   * is left: the caller closes the client.
   */
  async connect<T>(clientAddress: string, dial: (channel: Channel) => Promise<T>): Promise<Connected<T> | undefined> {
    for (const channel of pickChannels(this.groups, clientAddress, this.options.hashFailover)) {
      channel.claim();
      this.open++;
      try {
        const conn = await dial(channel);
        this.trace?.(`${clientAddress}: connected to ${this.describe(channel)}`);
        return { channel, conn };
      } catch (err) {
        channel.unclaim();
        this.open--;
        if (this.options.autodisable) channel.enabled = false;
        this.trace?.(
          `${clientAddress}: connect to ${this.describe(channel)} failed: ${errorText(err)}` +
            (this.options.autodisable ? ", channel disabled" : ""),
        );
      }
    }
    this.trace?.(`${clientAddress}: no channel available, closing client`);
    return undefined;
  }

  /** Connections open or being connected right now, over all channels. */
  openConnections(): number {
    return this.open;
  }

  /**
   * A connection made by {@link connect} has ended: uncounts it on its
   * channel and in the total that admission checks on every accept.
   */
  release(channel: Channel): void {
    channel.release();
    this.open--;
  }

  /** `group G channel N (address:port)`, as traces name a channel. */
  describe(channel: Channel): string {
    const g = this.groups.findIndex((group) => group.channels.includes(channel));
    const n = this.groups[g]?.channels.indexOf(channel);
    return `group ${g} channel ${n} (${formatHostPort(channel.address, channel.port)})`;
  }
}

/**
 * `host:port`, with IPv6 addresses in brackets.
 *
 * @example
 * ```ts
 * formatHostPort("::1", 80); // "[::1]:80"
 * ```
 */
export function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The message of an error, or its text when it is not an Error. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
