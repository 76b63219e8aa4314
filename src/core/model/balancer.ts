import { Channel } from "./channel.ts";
import { errorText } from "../util/errors.ts";
import { Group } from "./group.ts";
import type { GroupSpec } from "../config/grammar.ts";
import { pickChannels } from "../selection/select.ts";
import { SharedState } from "./state.ts";

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

/**
 * What a {@link Balancer} reports without `-d`: failures only (never a
 * successful connection). `key` names the kind and channel, so that the log
 * can throttle repeats of one fault per channel.
 */
export type WarnFn = (message: string, key: string) => void;

/**
 * The parts of a balancer that are not numbers: which channel slot sits where
 * and its address. The control thread sends it to workers after `create` and
 * `assign`; everything else they see through the shared state.
 */
export interface Layout {
  groups: { service: string; channels: { slot: number; address: string; port: number }[] }[];
  /** `-a` and `-H`, which a reload may change. */
  options: SelectionOptions;
}

/** A connection made by {@link Balancer.connect}. */
export interface Connected<T> {
  channel: Channel;
  conn: T;
  /** Milliseconds from the start of {@link Balancer.connect} until connected, failed attempts included. */
  connectMs: number;
}

/**
 * A client {@link Balancer.connect} could not connect: `connect-failed` when
 * every channel tried refused or timed out, `no-channel` when none was
 * usable and none was tried.
 */
export interface NotConnected {
  channel: undefined;
  reason: "connect-failed" | "no-channel";
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
  // A worker's channels by slot, so that a new layout updates them in place:
  // connections in flight keep counting on the same objects.
  private readonly bySlot = new Map<number, Channel>();
  /**
   * Each named service's groups, in order, and the default service's under
   * `""`; empty while there is no named service, when every group is the
   * default service's and {@link groups} is used as it is.
   */
  private services = new Map<string, Group[]>();
  /** Told of failed connects, `-a` disabling a channel and clients left without a channel. */
  warn?: WarnFn;
  /** Told of each failed connect (`--check` counts it as a failed check); never of a success. */
  onConnectFailed?: (channel: Channel, reason: string) => void;

  constructor(
    readonly groups: Group[],
    readonly options: SelectionOptions = { autodisable: false, hashFailover: false },
    private readonly trace?: TraceFn,
    /** Where the numbers live; one writer and room for `create` by default. */
    readonly state: SharedState = SharedState.create({ groups: MAX_GROUPS, channels: MAX_CHANNELS, writers: 1 }),
  ) {}

  /**
   * Builds a balancer from parsed groups whose hosts are already resolved
   * (`resolve` maps a spec's host to the address to connect to), with a new
   * shared state for `writers` workers and room for {@link MAX_CHANNELS}
   * more channels made by `create`.
   */
  static fromSpecs(
    specs: GroupSpec[],
    options: SelectionOptions,
    trace?: TraceFn,
    resolve: (host: string) => string = (host) => host,
    writers = 1,
  ): Balancer {
    const count = specs.reduce((n, g) => n + g.channels.length, 0);
    const state = SharedState.create({ groups: MAX_GROUPS, channels: count + MAX_CHANNELS, writers });
    const balancer = new Balancer([], options, trace, state);
    specs.forEach((spec, g) => {
      const group = balancer.group(g);
      group.type = spec.type;
      group.service = spec.service ?? "";
      for (const c of spec.channels) {
        const channel = balancer.addChannel(g, resolve(c.host), c.port, c.maxc, c.enabled ?? true, c.weight);
        if (channel) channel.host = c.host;
      }
    });
    balancer.servicesChanged();
    return balancer;
  }

  /**
   * The groups' services changed (a reload, a new layout): rebuilds what
   * {@link connect} walks for each.
   */
  servicesChanged(): void {
    const services = new Map<string, Group[]>();
    if (this.groups.some((g) => g.service !== "")) {
      services.set("", []);
      for (const group of this.groups) {
        const list = services.get(group.service) ?? [];
        list.push(group);
        services.set(group.service, list);
      }
    }
    this.services = services;
  }

  /** Whether a service of this name exists (`""`, the default service, always does). */
  hasService(name: string): boolean {
    return name === "" || this.services.has(name);
  }

  /** The named services, in the order their first group comes. */
  serviceNames(): string[] {
    return [...this.services.keys()].filter((name) => name !== "");
  }

  /**
   * Group `g`, made (empty, RR) with any missing groups before it when it
   * does not exist yet: `group G` may name a group that `create` then fills.
   */
  group(g: number): Group {
    if (this.groups.length <= g) {
      while (this.groups.length <= g) this.groups.push(new Group("RR", [], this.state.groupCells(this.groups.length)));
      // A group made so is the default service's.
      if (this.services.size > 0) this.servicesChanged();
    }
    return this.groups[g];
  }

  /**
   * Adds a channel at the end of group `g` in a free slot of the shared
   * state; `undefined` when the group or the state is full.
   */
  addChannel(
    g: number,
    address: string,
    port: number,
    maxc: number,
    enabled: boolean,
    weight = 1,
  ): Channel | undefined {
    const group = this.group(g);
    if (group.channels.length >= MAX_CHANNELS) return undefined;
    const slot = this.state.allocateChannel();
    if (slot === undefined) return undefined;
    const channel = new Channel(address, port, maxc, enabled, this.state.channelCells(slot));
    channel.weight = weight;
    group.channels.push(channel);
    group.changed();
    return channel;
  }

  /** The layout to send to workers. */
  layout(): Layout {
    return {
      groups: this.groups.map((g) => ({
        service: g.service,
        channels: g.channels.map((c) => ({ slot: c.cells.slot, address: c.address, port: c.port })),
      })),
      options: { ...this.options },
    };
  }

  /**
   * Takes on a layout made by the control thread's balancer over the same
   * shared state (a worker's view): channels and groups appear and go,
   * addresses and options change; the numbers are already shared.
   */
  adopt(layout: Layout): void {
    Object.assign(this.options, layout.options);
    this.groups.length = Math.min(this.groups.length, layout.groups.length);
    layout.groups.forEach((g, gi) => {
      const group = this.groups[gi] ??= new Group(undefined, [], this.state.groupCells(gi));
      group.service = g.service;
      group.channels.length = 0;
      for (const { slot, address, port } of g.channels) {
        let channel = this.bySlot.get(slot);
        if (!channel) {
          channel = new Channel(address, port, undefined, undefined, this.state.channelCells(slot));
          this.bySlot.set(slot, channel);
        }
        channel.address = address;
        channel.port = port;
        group.channels.push(channel);
      }
      // Derived schedules are keyed by the generation, which the control
      // thread may have bumped before this thread saw the new channels.
      group.changed();
    });
    this.servicesChanged();
  }

  /**
   * Connects a client to the first channel that accepts, trying channels in
   * the order of {@link pickChannels}. A channel's `c` is taken before its
   * connect starts and given back if the connect fails; with autodisable it
   * is then disabled. Each attempt's time and outcome is counted on its
   * channel, each client and each one left without a channel in the state.
   * Resolves to {@link NotConnected} when no channel is left: the caller
   * closes the client.
   */
  async connect<T, C = undefined>(
    clientAddress: string,
    dial: (channel: Channel, context: C) => Promise<T>,
    /** Handed to `dial` as it is: a session need not make a closure per client. */
    context?: C,
    /** The service whose groups are tried (`@NAME`); `""`, the default service. */
    service = "",
  ): Promise<Connected<T> | NotConnected> {
    const started = performance.now();
    this.state.countClient();
    // One clock read per attempt: an attempt ends where the next one's time begins.
    let attemptStarted = started;
    let tried = false;
    const groups = this.services.size === 0 ? this.groups : this.services.get(service) ?? [];
    for (const channel of pickChannels(groups, clientAddress, this.options.hashFailover)) {
      // Another worker may have filled or disabled it since it was picked.
      if (!channel.tryClaim()) continue;
      this.state.addOpen(1);
      tried = true;
      try {
        const conn = await dial(channel, context as C);
        const now = performance.now();
        channel.countConnect(now - attemptStarted, true);
        this.trace?.(`${clientAddress}: connected to ${this.describe(channel)}`);
        return { channel, conn, connectMs: now - started };
      } catch (err) {
        const now = performance.now();
        channel.countConnect(now - attemptStarted, false);
        attemptStarted = now;
        channel.unclaim();
        this.state.addOpen(-1);
        this.connectFailed(channel, clientAddress, errorText(err));
      }
    }
    this.trace?.(`${clientAddress}: no channel available, closing client`);
    this.warn?.(`no channel available for ${clientAddress}: client closed`, "no channel");
    this.state.countRejected();
    return { channel: undefined, reason: tried ? "connect-failed" : "no-channel" };
  }

  /**
   * A channel refused a UDP session it had been given (an ICMP port
   * unreachable came back): a failed connect, for passive health and `-a`
   * alike. The caller ends the session, which releases the channel.
   *
   * @example
   * ```ts
   * balancer.refusedAfterConnect(session.channel!, "127.0.0.1", "port unreachable");
   * ```
   */
  refusedAfterConnect(channel: Channel, clientAddress: string, reason: string): void {
    channel.countRefused();
    this.connectFailed(channel, clientAddress, reason);
  }

  // A connect to `channel` failed: -a disables it, the health checker and
  // the log hear of it.
  private connectFailed(channel: Channel, clientAddress: string, reason: string): void {
    // Another client may have disabled it already: say so once.
    const disabling = this.options.autodisable && channel.enabled;
    if (this.options.autodisable) channel.enabled = false;
    this.trace?.(
      `${clientAddress}: connect to ${this.describe(channel)} failed: ${reason}` +
        (this.options.autodisable ? ", channel disabled" : ""),
    );
    this.onConnectFailed?.(channel, reason);
    if (this.warn) {
      const where = this.describe(channel);
      this.warn(`connect to ${where} failed: ${reason}`, `connect failed ${where}`);
      if (disabling) this.warn(`${where} disabled (-a): its connect failed`, `disabled ${where}`);
    }
  }

  /**
   * `--accept-proxy`: the client at `address`:`port` sent no valid PROXY
   * header (`reason` says how). Counts it and warns, throttled as one kind;
   * the caller closes it. It never reached {@link connect}.
   *
   * @example
   * ```ts
   * balancer.refuseProxyHeader("127.0.0.1", 50000, "PROXY v2: wrong signature");
   * ```
   */
  refuseProxyHeader(address: string, port: number, reason: string): void {
    this.state.countProxyRefused();
    this.warn?.(`PROXY header refused from ${formatHostPort(address, port)}: ${reason}`, "PROXY header refused");
  }

  /**
   * `--ftp`: counts and reports (throttled) a connection to a data listener
   * from `address`:`port` when only `expected` may connect there; the caller
   * closes it, and the listener keeps waiting for the right one.
   *
   * @example
   * ```ts
   * balancer.refuseFtpData("192.0.2.9", 40000, "198.18.0.7");
   * ```
   */
  refuseFtpData(address: string, port: number, expected: string): void {
    this.state.countFtpDataRefused();
    this.warn?.(
      `FTP data connection refused from ${formatHostPort(address, port)}: only ${expected} may connect there`,
      "FTP data connection refused",
    );
  }

  /**
   * `--sni`: counts and reports (throttled) a client closed for its
   * ClientHello: malformed, over 16 KiB, or not whole within `-t`.
   *
   * @example
   * ```ts
   * balancer.refuseClientHello("127.0.0.1", 50000, "ClientHello larger than 16 KiB");
   * ```
   */
  refuseClientHello(address: string, port: number, reason: string): void {
    this.state.countSniRefused();
    this.warn?.(`TLS ClientHello refused from ${formatHostPort(address, port)}: ${reason}`, "ClientHello refused");
  }

  /** Connections open or being connected right now, over all channels and workers. */
  openConnections(): number {
    return this.state.open;
  }

  /**
   * A connection made by {@link connect} has ended: uncounts it on its
   * channel and in the total that admission checks on every accept.
   */
  release(channel: Channel): void {
    channel.release();
    this.state.addOpen(-1);
  }

  /** `group G channel N (address:port)`, after `@NAME` in a named service: as traces and logs name a channel. */
  describe(channel: Channel): string {
    const g = this.groups.findIndex((group) => group.channels.includes(channel));
    const n = this.groups[g]?.channels.indexOf(channel);
    const service = this.groups[g]?.service ? `@${this.groups[g].service} ` : "";
    return `${service}group ${g} channel ${n} (${formatHostPort(channel.address, channel.port)})`;
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
