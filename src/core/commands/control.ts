import type { ProxySettings } from "../proxy/proxy_protocol.ts";
import type { Balancer } from "../model/balancer.ts";
import { formatHostPort, MAX_CHANNELS, MAX_GROUPS } from "../model/balancer.ts";
import type { GroupType } from "../model/group.ts";
import type { Channel } from "../model/channel.ts";
import { MAX_MAXC, MAX_WEIGHT, type ServiceLookup } from "../config/grammar.ts";
import { addressBytes } from "../selection/hash.ts";
import { dumpConfig } from "../config/dump.ts";
import type { HealthStatus } from "../health/health_checker.ts";

/**
 * balance's runtime-control commands (`-i`, `-c`), answered word for word as
 * balance 3.54 answered them, since scripts parse those answers.
 *
 * @module
 */

/**
 * The commands, in the order that settles an abbreviation matching several
 * (`d` is `disable`, `m` is `maxc`), as in balance 3.54.
 */
export const COMMANDS = [
  "quit",
  "show",
  "help",
  "kill",
  "disable",
  "group",
  "reset",
  "enable",
  "create",
  "assign",
  "maxc",
  "mrtg-bytes",
  "mrtg-conns",
  "version",
  "hash",
  "rr",
  "health",
  "leastconn",
  "weight",
  "reload",
  "dump",
] as const;

/** One of {@link COMMANDS}. */
export type CommandName = typeof COMMANDS[number];

const HELP: Record<CommandName, string> = {
  quit: "quit                  leave the shell",
  show: "show [--json]         show all channels of all groups",
  help: "help, ?               this list",
  kill: "kill                  stop the balancer",
  disable: "disable N             disable channel N of the current group",
  group: "group G               make G the current group",
  reset: "reset N               zero channel N's totalc, sent and rcvd",
  enable: "enable N              enable channel N of the current group",
  create: "create HOST PORT      add a disabled channel to the current group",
  assign: "assign N HOST PORT    change the address of disabled channel N",
  maxc: "maxc N M              set channel N's maxc to M (0 = no limit)",
  "mrtg-bytes": "mrtg-bytes G N        MRTG: rcvd and sent bytes of channel N of group G",
  "mrtg-conns": "mrtg-conns G N        MRTG: total connections of channel N of group G",
  version: "version               the version and limits",
  hash: "hash                  make the current group a Hash group",
  rr: "rr                    make the current group a round robin group",
  health: "health                health checks of all channels (--check)",
  leastconn: "leastconn             make the current group a least connection group",
  weight: "weight N W            set channel N's weight to W (0-256, 0 = no new connections)",
  reload: "reload                read the configuration file (-F) again and apply it",
  dump: "dump                  the running configuration, as a configuration file",
};

/**
 * Resolves a possibly abbreviated command word (`sh`, `dis`), or `undefined`.
 *
 * @example
 * ```ts
 * resolveCommand("d"); // "disable"
 * resolveCommand("?"); // "help"
 * ```
 */
export function resolveCommand(word: string): CommandName | undefined {
  if (word === "?") return "help";
  if (word === "") return undefined;
  return COMMANDS.find((c) => c.startsWith(word.toLowerCase()));
}

/** What a command did, besides its answer. */
export interface CommandResult {
  /** The answer, without a trailing newline; may be empty. */
  output: string;
  /** The current group after the command (`group G` changes it). */
  group: number;
  /** `quit`: the shell should end. */
  quit?: boolean;
  /** `kill`: the balancer should stop once the answer is out. */
  kill?: boolean;
  /** `create`, `assign`: channels or addresses changed (workers must be told). */
  layoutChanged?: boolean;
  /** The answer is an error (`syntax error`, `no such channel N`, …): `-c` exits 65. */
  error?: boolean;
}

/** What the control commands need from outside the core. */
export interface ControlContext {
  balancer: Balancer;
  /** The version for `version`. */
  version: string;
  /** Service names for `create`/`assign` ports. */
  lookupPort: ServiceLookup;
  /** Told of every change a command makes (`control: channel 1 of group 0 disabled`), for the log. */
  log?: (line: string) => void;
  /** The health checks (`--check`); absent without them. */
  health?: HealthView;
  /** `--proxy-protocol` and `--accept-proxy`, for `show --json`; absent, both off. */
  proxy?: ProxySettings;
  /** For `dump`: the option words in force and the listen port; absent, `dump` writes the channels alone. */
  configuration?: () => { options: readonly string[]; port: number };
}

/** What control sees of the health checks. */
export interface HealthView {
  /** A channel's health; `undefined` when it is not checked (yet). */
  status(channel: Channel): HealthStatus | undefined;
  /** Makes a channel up and checks it at once (after `create`, `enable`, `assign`: `why`). */
  checkNow(channel: Channel, why: string): void;
}

const SYNTAX_ERROR = "syntax error";

// The group-type commands: the type each sets and how its answer names it.
const GROUP_TYPES: Record<"hash" | "rr" | "leastconn", [GroupType, string]> = {
  hash: ["Hash", "hash"],
  rr: ["RR", "round robin"],
  leastconn: ["LC", "least connection"],
};

/**
 * The host word of a `create` or `assign` line, brackets removed
 * (`[fd00::1]` is `fd00::1`), or `undefined` for any other line. Resolving
 * a name is I/O, which the core leaves to its caller: it resolves this host
 * and hands the address to {@link executeCommand}.
 *
 * @example
 * ```ts
 * commandHost("create web1 80"); // "web1"
 * commandHost("as 2 [::1] 80"); // "::1"
 * commandHost("show"); // undefined
 * ```
 */
export function commandHost(line: string): string | undefined {
  const { command, args } = splitCommand(line);
  const host = command === "create" && args.length === 2
    ? args[0]
    : command === "assign" && args.length === 3
    ? args[1]
    : undefined;
  return host === undefined ? undefined : unbracketed(host);
}

function splitCommand(line: string): { word: string; command?: CommandName; args: string[] } {
  const [word = "", ...args] = line.trim().split(/\s+/);
  return { word, command: resolveCommand(word), args };
}

function unbracketed(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

/**
 * Runs one control command line against the balancer, with `group` as the
 * current group, and returns the answer. Never throws on any input: garbage
 * answers `syntax error` and changes nothing. `hostAddress` is the address
 * the {@link commandHost} of a `create`/`assign` resolved to (none: the host
 * must be an address itself). Every change is told to `ctx.log`.
 *
 * @example
 * ```ts
 * executeCommand(ctx, 0, "dis 1").output; // "channel 1 disabled"
 * executeCommand(ctx, 0, "create web1 80", "10.0.0.7").output; // "channel created"
 * ```
 */
export function executeCommand(
  ctx: ControlContext,
  group: number,
  line: string,
  hostAddress?: string,
): CommandResult {
  const { word, command, args } = splitCommand(line);
  const answer = (output: string, extra: Partial<CommandResult> = {}) => ({ output, group, ...extra });
  const fail = (output: string) => answer(output, { error: true });
  const changed = (what: string) => ctx.log?.(`control: ${what}`);
  if (word === "") return answer("");
  if (command === undefined) return fail(SYNTAX_ERROR);
  // The current group comes from the client; only `group` may leave a bad one.
  if (!(group < MAX_GROUPS) && command !== "group") return fail("value out of range");
  const { balancer } = ctx;
  const groups = balancer.groups;
  const current = groups[group];
  const argCount: Record<CommandName, number[]> = {
    quit: [0],
    show: [0, 1],
    help: [0],
    kill: [0],
    disable: [1],
    group: [1],
    reset: [1],
    enable: [1],
    create: [2],
    assign: [3],
    maxc: [2],
    "mrtg-bytes": [2],
    "mrtg-conns": [2],
    version: [0],
    hash: [0],
    rr: [0],
    health: [0],
    leastconn: [0],
    weight: [2],
    reload: [0],
    dump: [0],
  };
  if (!argCount[command].includes(args.length)) return fail(SYNTAX_ERROR);
  // Channel numbers and counts are whole decimal numbers: `disable x` is a
  // syntax error (balance 3.54 read it as 0 and disabled channel 0).
  const numbers = args.map((a) => (/^\d{1,10}$/.test(a) ? Number(a) : NaN));
  const channelAt = (n: number): Channel | undefined => current?.channels[n];
  // A literal address as is; a name only as the caller resolved it.
  const addressOf = (host: string): string | undefined => {
    const text = unbracketed(host);
    const address = addressBytes(text) ? text : hostAddress;
    return address !== undefined && addressBytes(address) ? address : undefined;
  };

  switch (command) {
    case "quit":
      return answer("", { quit: true });
    case "kill":
      changed("kill");
      return answer("shutdown complete, exiting.", { kill: true });
    case "help":
      return answer(COMMANDS.map((c) => HELP[c]).join("\n"));
    case "dump": {
      const { options, port } = ctx.configuration?.() ?? { options: [], port: 0 };
      return answer(dumpConfig(balancer, options, port).trimEnd());
    }
    case "reload":
      // The control server does a reload itself (it reads files and resolves names).
      return fail("reload is not available here");
    case "version":
      return answer(`This is balance ${ctx.version}\nMAXGROUPS=${MAX_GROUPS}\nMAXCHANNELS=${MAX_CHANNELS}`);
    case "show":
      if (args.length === 1 && args[0] !== "--json") return fail(SYNTAX_ERROR);
      return answer(args.length ? JSON.stringify(showJson(balancer, ctx.health, ctx.proxy)) : showTable(balancer));
    case "health":
      return answer(healthTable(balancer, ctx.health));
    case "group": {
      const g = numbers[0];
      if (Number.isNaN(g)) return fail(SYNTAX_ERROR);
      if (g >= MAX_GROUPS) return fail("value out of range");
      return { output: "", group: g };
    }
    case "hash":
    case "rr":
    case "leastconn": {
      const [type, name] = GROUP_TYPES[command];
      balancer.group(group).type = type;
      const done = `group ${group} set to ${name}`;
      changed(done);
      return answer(done);
    }
    case "create": {
      const [host, portText] = args;
      const address = addressOf(host);
      const port = parsePortArg(portText, ctx.lookupPort);
      if (address === undefined || port === undefined) return fail("invalid address");
      const created = balancer.addChannel(group, address, port, 0, false);
      if (!created) return fail("no channel slots available");
      const n = balancer.groups[group].channels.indexOf(created);
      changed(`channel ${n} of group ${group} created for ${formatHostPort(address, port)} (disabled)`);
      ctx.health?.checkNow(created, "created");
      return answer("channel created", { layoutChanged: true });
    }
    case "mrtg-bytes":
    case "mrtg-conns": {
      const [g, n] = numbers;
      if (Number.isNaN(g) || Number.isNaN(n)) return fail(SYNTAX_ERROR);
      const channel = groups[g]?.channels[n];
      if (!channel) return fail(`no such channel ${n}`);
      const label = `group ${g} channel ${n}`;
      return answer(
        command === "mrtg-bytes"
          ? `${channel.rcvd}\n${channel.sent}\nUNKNOWN\n${label}`
          : `${channel.totalc}\nUNKNOWN\nUNKNOWN\n${label}`,
      );
    }
  }

  // The rest act on channel N of the current group.
  const n = numbers[0];
  if (Number.isNaN(n)) return fail(SYNTAX_ERROR);
  const channel = channelAt(n);
  if (!channel) return fail(`no such channel ${n}`);
  const which = `channel ${n} of group ${group}`;
  switch (command) {
    case "enable":
    case "disable": {
      const enable = command === "enable";
      const verb = enable ? "enabled" : "disabled";
      if (channel.enabled === enable) return answer(`channel ${n} already ${verb}`);
      channel.enabled = enable;
      changed(`${which} ${verb}`);
      if (enable) ctx.health?.checkNow(channel, "enabled");
      return answer(`channel ${n} ${verb}`);
    }
    case "reset":
      channel.totalc = 0;
      channel.sent = 0;
      channel.rcvd = 0;
      changed(`${which} counters reset`);
      return answer(`channel ${n} counters reset`);
    case "maxc": {
      const m = numbers[1];
      if (Number.isNaN(m) || m > MAX_MAXC) return fail(SYNTAX_ERROR);
      channel.maxc = m;
      changed(`maxc of ${which} changed to ${m}`);
      return answer(`maxc of channel ${n} changed to ${m}`);
    }
    case "weight": {
      const w = numbers[1];
      if (Number.isNaN(w)) return fail(SYNTAX_ERROR);
      if (w > MAX_WEIGHT) return fail("value out of range");
      channel.weight = w;
      // After the store: a thread that sees the new generation sees the new weight.
      balancer.group(group).changed();
      changed(`weight of ${which} changed to ${w}`);
      return answer(`weight of channel ${n} changed to ${w}`);
    }
    case "assign": {
      if (channel.enabled) return fail("channel must be disabled to assign new address");
      const address = addressOf(args[1]);
      const port = parsePortArg(args[2], ctx.lookupPort);
      if (address === undefined || port === undefined) return fail("invalid address");
      channel.address = address;
      channel.host = undefined;
      channel.port = port;
      balancer.group(group).changed();
      changed(`${which} reassigned to ${formatHostPort(address, port)}`);
      ctx.health?.checkNow(channel, "reassigned");
      return answer("channel reassigned", { layoutChanged: true });
    }
  }
  return fail(SYNTAX_ERROR);
}

function parsePortArg(text: string, lookup: ServiceLookup): number | undefined {
  if (/^\d{1,5}$/.test(text)) {
    const n = Number(text);
    return n >= 1 && n <= 65535 ? n : undefined;
  }
  return lookup(text);
}

/** One row of `show --json`. */
export interface ChannelStatus {
  group: number;
  type: GroupType;
  channel: number;
  enabled: boolean;
  address: string;
  port: number;
  c: number;
  totalc: number;
  maxc: number;
  /** Share of new connections, 0-256 (`host:port:maxc:weight`, `weight N W`). */
  weight: number;
  sent: number;
  rcvd: number;
  /** `none` without `--check` (or before the channel's checks began). */
  health: "up" | "down" | "none";
  /** Failed checks in all, passive observations included. */
  checkFailures: number;
  /** The last check's result as text; `null` before the first. */
  lastCheck: string | null;
  /** `--proxy-protocol`: the PROXY header the channel gets, or `none`; the same for every channel. */
  proxyProtocol: "v1" | "v2" | "none";
  /** `--accept-proxy`: clients must send a PROXY header; the same for every channel. */
  acceptProxy: boolean;
}

/**
 * All channels as data, for `show --json`, with their health when checked.
 *
 * @example
 * ```ts
 * showJson(balancer)[0].enabled; // true
 * showJson(balancer, checker)[0].health; // "up"
 * ```
 */
export function showJson(balancer: Balancer, health?: HealthView, proxy?: ProxySettings): ChannelStatus[] {
  const proxyProtocol = proxy?.send ? (`v${proxy.send}` as const) : "none";
  const acceptProxy = proxy?.accept ?? false;
  return balancer.groups.flatMap((g, gi) =>
    g.channels.map((c, ci) => ({
      group: gi,
      type: g.type,
      channel: ci,
      enabled: c.enabled,
      address: c.address,
      port: c.port,
      c: c.c,
      totalc: c.totalc,
      maxc: c.maxc,
      weight: c.weight,
      sent: c.sent,
      rcvd: c.rcvd,
      ...healthFields(health?.status(c)),
      proxyProtocol,
      acceptProxy,
    }))
  );
}

function healthFields(status: HealthStatus | undefined): Pick<ChannelStatus, "health" | "checkFailures" | "lastCheck"> {
  if (!status) return { health: "none", checkFailures: 0, lastCheck: null };
  return {
    health: status.up ? "up" : "down",
    checkFailures: status.checkFailures,
    lastCheck: status.lastCheck ?? null,
  };
}

/**
 * The `health` table: per channel its health, consecutive passed and failed
 * checks, seconds since its health last changed and the last result; `none`
 * and dashes for a channel not checked (without `--check`).
 *
 * @example
 * ```ts
 * healthTable(balancer, checker).split("\n")[0];
 * // "GRP  # ip-address        port health passed failed   since last check"
 * ```
 */
export function healthTable(balancer: Balancer, health?: HealthView): string {
  const channels = balancer.groups.flatMap((g, gi) => g.channels.map((c, ci) => ({ gi, ci, c })));
  const width = Math.max(15, ...channels.map(({ c }) => c.address.length));
  const rows = [`GRP  # ${"ip-address".padEnd(width)}  port health passed failed   since last check`];
  for (const { gi, ci, c } of channels) {
    const s = health?.status(c);
    rows.push(
      [
        String(gi).padStart(3),
        String(ci).padStart(2),
        c.address.padEnd(width),
        String(c.port).padStart(5),
        (s ? (s.up ? "up" : "down") : "none").padEnd(6),
        (s ? String(s.passes) : "-").padStart(6),
        (s ? String(s.failures) : "-").padStart(6),
        (s ? s.sinceChange.toFixed(1) : "-").padStart(7),
        s?.lastCheck ?? "-",
      ].join(" "),
    );
  }
  return rows.join("\n");
}

/**
 * The `show` table with balance 3.54's columns: one header line, then one
 * whitespace-separated row per channel.
 *
 * @example
 * ```ts
 * showTable(balancer).split("\n")[0];
 * // "GRP Type  # S   ip-address       port     c totalc  maxc         sent         rcvd"
 * ```
 */
export function showTable(balancer: Balancer): string {
  const channels = showJson(balancer);
  // As wide as the longest address (IPv6 ones are), so columns stay aligned.
  const width = Math.max(15, ...channels.map((s) => s.address.length));
  const rows = [
    `GRP Type  # S   ${"ip-address".padEnd(width)}  port     c totalc  maxc ${"sent".padStart(12)} ${
      "rcvd".padStart(12)
    }`,
  ];
  for (const s of channels) {
    rows.push(
      [
        String(s.group).padStart(3),
        s.type.padEnd(4),
        String(s.channel).padStart(2),
        s.enabled ? "ENA" : "dis",
        s.address.padEnd(width),
        String(s.port).padStart(5),
        String(s.c).padStart(5),
        String(s.totalc).padStart(6),
        String(s.maxc).padStart(5),
        String(s.sent).padStart(12),
        String(s.rcvd).padStart(12),
      ].join(" "),
    );
  }
  return rows.join("\n");
}
