import type { ProxySettings } from "../proxy/proxy_protocol.ts";
import type { Balancer } from "../model/balancer.ts";
import { formatHostPort, MAX_CHANNELS, MAX_GROUPS } from "../model/balancer.ts";
import type { GroupType } from "../model/group.ts";
import type { Channel } from "../model/channel.ts";
import { MAX_MAXC, MAX_WEIGHT, type ServiceLookup } from "../config/grammar.ts";
import { addressBytes } from "../selection/hash.ts";
import { dumpConfig } from "../config/dump.ts";
import type { HealthStatus } from "../health/health_checker.ts";
import type { ClientGate } from "../access/gate.ts";
import type { AccessRule } from "../access/rules.ts";
import { formatClient } from "../access/client_table.ts";

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
  "clients",
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
  clients: "clients               the 20 clients with the most open connections",
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
  /** `reload`: the application reads its configuration again; what that answers is the answer. */
  reload?: boolean;
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
  /** `--allow`/`--deny` and the per-client limits, for `clients` and `show --json`; absent, none. */
  access?: ClientGate;
  /** The protocols served (`--udp`, `--udp-only`), for `show --json`; absent, TCP alone. */
  protocols?: readonly Protocol[];
  /** The TCP engine running (`--engine`), for `show --json`; absent, the runtime's. */
  engine?: EngineName;
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
  if (word === "") return { output: "", group };
  if (command === undefined) return { output: SYNTAX_ERROR, group, error: true };
  const call: Call = { ctx, group, command, args, numbers: args.map(wholeNumber), hostAddress };
  const refused = refusal(call);
  return refused === undefined ? STEPS[command](call) : fail(call, refused);
}

/** One command line on its way through {@link executeCommand}. */
interface Call {
  ctx: ControlContext;
  /** The current group, as the client sent it. */
  group: number;
  command: CommandName;
  args: string[];
  /** The arguments as whole numbers; `NaN` for one that is not. */
  numbers: number[];
  /** What the host of `create`/`assign` resolved to. */
  hostAddress?: string;
}

const ARG_COUNTS: Record<CommandName, number[]> = {
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
  clients: [0],
};

// Channel numbers and counts are whole decimal numbers: `disable x` is a
// syntax error (balance 3.54 read it as 0 and disabled channel 0).
function wholeNumber(arg: string): number {
  return /^\d{1,10}$/.test(arg) ? Number(arg) : NaN;
}

// Why the command cannot run at all, or `undefined`.
function refusal({ group, command, args }: Call): string | undefined {
  // The current group comes from the client; only `group` may leave a bad one.
  if (!(group < MAX_GROUPS) && command !== "group") return "value out of range";
  if (!ARG_COUNTS[command].includes(args.length)) return SYNTAX_ERROR;
  return undefined;
}

function answer(call: Call, output: string, extra: Partial<CommandResult> = {}): CommandResult {
  return { output, group: call.group, ...extra };
}

function fail(call: Call, output: string): CommandResult {
  return answer(call, output, { error: true });
}

function logChange(call: Call, what: string): void {
  call.ctx.log?.(`control: ${what}`);
}

// A literal address as is; a name only as the caller resolved it.
function addressOf(call: Call, host: string): string | undefined {
  const text = unbracketed(host);
  const address = addressBytes(text) ? text : call.hostAddress;
  return address !== undefined && addressBytes(address) ? address : undefined;
}

const STEPS: Record<CommandName, (call: Call) => CommandResult> = {
  quit: (call) => answer(call, "", { quit: true }),
  kill: (call) => {
    logChange(call, "kill");
    return answer(call, "shutdown complete, exiting.", { kill: true });
  },
  help: (call) => answer(call, COMMANDS.map((c) => HELP[c]).join("\n")),
  dump: (call) => {
    const { options, port } = call.ctx.configuration?.() ?? { options: [], port: 0 };
    return answer(call, dumpConfig(call.ctx.balancer, options, port).trimEnd());
  },
  // Reading files and resolving names is I/O: the application reloads, and answers.
  reload: (call) => answer(call, "", { reload: true }),
  version: (call) =>
    answer(call, `This is balance ${call.ctx.version}\nMAXGROUPS=${MAX_GROUPS}\nMAXCHANNELS=${MAX_CHANNELS}`),
  show: showChannels,
  clients: (call) => answer(call, clientsTable(call.ctx.access)),
  health: (call) => answer(call, healthTable(call.ctx.balancer, call.ctx.health)),
  group: chooseGroup,
  hash: setsGroupType("Hash", "hash"),
  rr: setsGroupType("RR", "round robin"),
  leastconn: setsGroupType("LC", "least connection"),
  create: createChannel,
  "mrtg-bytes": mrtg((channel) => `${channel.rcvd}\n${channel.sent}\nUNKNOWN`),
  "mrtg-conns": mrtg((channel) => `${channel.totalc}\nUNKNOWN\nUNKNOWN`),
  enable: onChannel(setsEnabled(true)),
  disable: onChannel(setsEnabled(false)),
  reset: onChannel(resetCounters),
  maxc: onChannel(setMaxc),
  weight: onChannel(setWeight),
  assign: onChannel(assignAddress),
};

function showChannels(call: Call): CommandResult {
  const { args, ctx } = call;
  if (args.length === 1 && args[0] !== "--json") return fail(call, SYNTAX_ERROR);
  return answer(
    call,
    args.length
      ? JSON.stringify(showJson(ctx.balancer, ctx.health, ctx.proxy, ctx.access, ctx.protocols, ctx.engine))
      : showTable(ctx.balancer),
  );
}

function chooseGroup(call: Call): CommandResult {
  const g = call.numbers[0];
  if (Number.isNaN(g)) return fail(call, SYNTAX_ERROR);
  if (g >= MAX_GROUPS) return fail(call, "value out of range");
  return { output: "", group: g };
}

// `hash`, `rr`, `leastconn`: the type each sets and how its answer names it.
function setsGroupType(type: GroupType, name: string): (call: Call) => CommandResult {
  return (call) => {
    call.ctx.balancer.group(call.group).type = type;
    const done = `group ${call.group} set to ${name}`;
    logChange(call, done);
    return answer(call, done);
  };
}

function createChannel(call: Call): CommandResult {
  const { ctx, group, args: [host, portText] } = call;
  const address = addressOf(call, host);
  const port = parsePortArg(portText, ctx.lookupPort);
  if (address === undefined || port === undefined) return fail(call, "invalid address");
  const created = ctx.balancer.addChannel(group, address, port, 0, false);
  if (!created) return fail(call, "no channel slots available");
  const n = ctx.balancer.groups[group].channels.indexOf(created);
  logChange(call, `channel ${n} of group ${group} created for ${formatHostPort(address, port)} (disabled)`);
  ctx.health?.checkNow(created, "created");
  return answer(call, "channel created", { layoutChanged: true });
}

// `mrtg-bytes G N`, `mrtg-conns G N`: MRTG's four lines, the label last.
function mrtg(figures: (channel: Channel) => string): (call: Call) => CommandResult {
  return (call) => {
    const [g, n] = call.numbers;
    if (Number.isNaN(g) || Number.isNaN(n)) return fail(call, SYNTAX_ERROR);
    const channel = call.ctx.balancer.groups[g]?.channels[n];
    if (!channel) return fail(call, `no such channel ${n}`);
    return answer(call, `${figures(channel)}\ngroup ${g} channel ${n}`);
  };
}

/** A command on channel N of the current group, once N names one. */
type ChannelStep = (call: Call, channel: Channel, n: number, which: string) => CommandResult;

function onChannel(step: ChannelStep): (call: Call) => CommandResult {
  return (call) => {
    const n = call.numbers[0];
    if (Number.isNaN(n)) return fail(call, SYNTAX_ERROR);
    const channel = call.ctx.balancer.groups[call.group]?.channels[n];
    if (!channel) return fail(call, `no such channel ${n}`);
    return step(call, channel, n, `channel ${n} of group ${call.group}`);
  };
}

function setsEnabled(enable: boolean): ChannelStep {
  const verb = enable ? "enabled" : "disabled";
  return (call, channel, n, which) => {
    if (channel.enabled === enable) return answer(call, `channel ${n} already ${verb}`);
    channel.enabled = enable;
    logChange(call, `${which} ${verb}`);
    if (enable) call.ctx.health?.checkNow(channel, "enabled");
    return answer(call, `channel ${n} ${verb}`);
  };
}

function resetCounters(call: Call, channel: Channel, n: number, which: string): CommandResult {
  channel.totalc = 0;
  channel.sent = 0;
  channel.rcvd = 0;
  logChange(call, `${which} counters reset`);
  return answer(call, `channel ${n} counters reset`);
}

function setMaxc(call: Call, channel: Channel, n: number, which: string): CommandResult {
  const m = call.numbers[1];
  if (Number.isNaN(m) || m > MAX_MAXC) return fail(call, SYNTAX_ERROR);
  channel.maxc = m;
  logChange(call, `maxc of ${which} changed to ${m}`);
  return answer(call, `maxc of channel ${n} changed to ${m}`);
}

function setWeight(call: Call, channel: Channel, n: number, which: string): CommandResult {
  const w = call.numbers[1];
  if (Number.isNaN(w)) return fail(call, SYNTAX_ERROR);
  if (w > MAX_WEIGHT) return fail(call, "value out of range");
  channel.weight = w;
  // After the store: a thread that sees the new generation sees the new weight.
  call.ctx.balancer.group(call.group).changed();
  logChange(call, `weight of ${which} changed to ${w}`);
  return answer(call, `weight of channel ${n} changed to ${w}`);
}

function assignAddress(call: Call, channel: Channel, _n: number, which: string): CommandResult {
  if (channel.enabled) return fail(call, "channel must be disabled to assign new address");
  const address = addressOf(call, call.args[1]);
  const port = parsePortArg(call.args[2], call.ctx.lookupPort);
  if (address === undefined || port === undefined) return fail(call, "invalid address");
  channel.address = address;
  channel.host = undefined;
  channel.port = port;
  call.ctx.balancer.group(call.group).changed();
  logChange(call, `${which} reassigned to ${formatHostPort(address, port)}`);
  call.ctx.health?.checkNow(channel, "reassigned");
  return answer(call, "channel reassigned", { layoutChanged: true });
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
  /** The service (`@NAME`) of the channel's group; `""` for the default service. */
  service: string;
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
  /** Who may connect (`--allow`, `--deny`, `--proxy-from`, per-client limits); the same for every channel. */
  access: AccessStatus;
  /** The protocols the port serves (`--udp`: both, `--udp-only`: UDP); the same for every channel. */
  protocols: readonly Protocol[];
  /** The TCP engine running (`--engine`); the same for every channel. */
  engine: EngineName;
}

/**
 * What moves a TCP connection's bytes: the runtime's sockets, or balance's
 * own epoll loop on Linux system calls (`--engine native`).
 *
 * @example
 * ```ts
 * const engine: EngineName = "native";
 * ```
 */
export type EngineName = "native" | "runtime";

/**
 * A protocol a port is served on.
 *
 * @example
 * ```ts
 * const protocols: Protocol[] = ["tcp", "udp"]; // --udp
 * ```
 */
export type Protocol = "tcp" | "udp";

/**
 * The access rules and per-client limits in force, as `show --json` and
 * `/status` carry them; `null` for what is not set.
 *
 * @example
 * ```ts
 * const access: AccessStatus = { rules: [{ action: "deny", spec: "all" }], proxyFrom: null,
 *   maxPerClient: 10, ratePerClient: null, clientTable: 65536 };
 * ```
 */
export interface AccessStatus {
  rules: AccessRule[];
  proxyFrom: string | null;
  maxPerClient: number | null;
  ratePerClient: { connections: number; seconds: number } | null;
  clientTable: number;
}

const NO_ACCESS: AccessStatus = {
  rules: [],
  proxyFrom: null,
  maxPerClient: null,
  ratePerClient: null,
  clientTable: 0,
};

function accessStatus(gate: ClientGate | undefined): AccessStatus {
  if (!gate) return NO_ACCESS;
  const { rules, proxyFrom, maxPerClient, ratePerClient } = gate.settings;
  return {
    rules,
    proxyFrom: proxyFrom ?? null,
    maxPerClient: maxPerClient ?? null,
    ratePerClient: ratePerClient ?? null,
    clientTable: gate.table.handle.capacity,
  };
}

/** How many clients `clients` lists. */
const CLIENTS_SHOWN = 20;

// `clients`: a table as `show` writes one, the busiest client first.
function clientsTable(gate: ClientGate | undefined): string {
  if (!gate?.active) {
    return "clients are not tracked: no --allow, --deny, --max-per-client or --rate-per-client in force";
  }
  const rows = gate.top(CLIENTS_SHOWN).map((r) => [formatClient(r.key), r.open, r.total, r.refused].map(String));
  const width = Math.max(6, ...rows.map((r) => r[0].length));
  const line = (cells: string[]) => [cells[0].padEnd(width), ...cells.slice(1).map((c) => c.padStart(10))].join(" ");
  return [line(["client", "open", "total", "refused"]), ...rows.map(line)].join("\n");
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
export function showJson(
  balancer: Balancer,
  health?: HealthView,
  proxy?: ProxySettings,
  gate?: ClientGate,
  protocols: readonly Protocol[] = ["tcp"],
  engine: EngineName = "runtime",
): ChannelStatus[] {
  const proxyProtocol = proxy?.send ? (`v${proxy.send}` as const) : "none";
  const acceptProxy = proxy?.accept ?? false;
  const access = accessStatus(gate);
  return balancer.groups.flatMap((g, gi) =>
    g.channels.map((c, ci) => ({
      service: g.service,
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
      access,
      protocols,
      engine,
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
