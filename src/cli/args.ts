import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { decodeEscapes } from "../core/config/escapes.ts";
import {
  type GroupSpec,
  parseCount,
  parseGroups,
  parsePort,
  parseSeconds,
  type ServiceLookup,
} from "../core/config/grammar.ts";
import { type HealthSettings, healthSettings, MIN_CHECK_INTERVAL } from "../core/health/health.ts";
import { blaming, ExitError, usageError } from "../core/util/exit_error.ts";
import { addressBytes } from "../core/selection/hash.ts";
import type { AccessSettings } from "../core/access/gate.ts";
import { parsePrefixList, type RuleAction } from "../core/access/rules.ts";
import { parseSniRoute, type SniRoute, sniRouting } from "../core/tls/sni_routes.ts";
import { shown } from "../core/util/shown.ts";
import type { EngineName } from "../core/commands/control.ts";
import { type Config, DEFAULTS, type Mode, UDP_TIMEOUT, type UdpConfig } from "../app/config.ts";
import type { FtpSettings } from "../core/ftp/sessions.ts";
import { plainAddress } from "../core/ftp/addresses.ts";

// Large enough for any real timeout, small enough for setTimeout (2^31 ms).
const MAX_TIMEOUT_SEC = 2_000_000;

/**
 * Parses a balance command line (without the program name), getopt-style:
 * grouped flags (`-fp`), values attached or separate (`-t2`, `-t 2`), options
 * before or among the positionals. Throws an {@link ExitError} (exit 64) for
 * anything wrong.
 *
 * @example
 * ```ts
 * const config = parseCommandLine(["-f", "8080", "127.0.0.1:81", "!", "127.0.0.1:82"], () => undefined);
 * config.groups.length; // 2
 * ```
 */
export function parseCommandLine(argv: string[], lookup: ServiceLookup): Config {
  const { values: v, positionals, tokens } = parseArgs({
    args: argv,
    allowPositionals: true,
    // Checked by checkTokens, which knows the word at fault and lets `-T -5` through.
    strict: false,
    tokens: true,
    options: OPTIONS,
  }) as unknown as { values: Values; positionals: string[]; tokens: Token[] };
  checkTokens(tokens);
  // The word of an option's value in force (its last occurrence), and of each positional.
  const optionAt = (name: string) => tokens.findLast((t) => t.kind === "option" && t.name === name)?.index;
  const positionalAt = tokens.filter((t) => t.kind === "positional").map((t) => t.index);
  const given = <T>(name: StringOption, parse: (text: string) => T): T | undefined =>
    v[name] === undefined ? undefined : blaming(optionAt(name), () => parse(v[name]!));

  if (v.help) return { ...DEFAULTS, mode: "help", listenPort: 0, groups: [] };
  if (v.version) return { ...DEFAULTS, mode: "version", listenPort: 0, groups: [] };
  if (v.list) {
    if (positionals.length) {
      throw usageError(`unexpected argument '${shown(positionals[0])}' with --list`).at(positionalAt[0]);
    }
    return { ...DEFAULTS, mode: "list", listenPort: 0, groups: [] };
  }
  if (v.i && v.c !== undefined) throw usageError("-i and -c exclude each other").at(optionAt("c"));
  const mode: Mode = v.i ? "interactive" : v.c !== undefined ? "control" : "serve";

  const [portText, ...channelArgs] = positionals;
  if (portText === undefined) throw usageError("missing port");
  const listenPort = blaming(positionalAt[0], () => parsePort(portText, lookup, "listen port"));
  for (const [name, flag] of [["b", "-b"], ["B", "-B"], ["log-file", "--log-file"], ["syslog", "--syslog"]] as const) {
    if (v[name] === "") throw usageError(`option ${flag} needs a value`).at(optionAt(name));
  }
  const seconds = (text: string, what: string, min: number) =>
    parseCount(text, what, { min, max: MAX_TIMEOUT_SEC, unit: "seconds" });
  const connectTimeout = given("t", (t) => seconds(t, "connect timeout (-t)", 1)) ?? DEFAULTS.connectTimeout;
  const idleTimeout = given("T", (t) => seconds(t, "idle timeout (-T)", 0)) ?? DEFAULTS.idleTimeout;

  if (mode !== "serve") {
    if (channelArgs.length) {
      throw usageError(`unexpected argument '${shown(channelArgs[0])}' with -${v.i ? "i" : "c"}`).at(positionalAt[1]);
    }
    if (v.c?.trim() === "") throw usageError("-c needs a command").at(optionAt("c"));
  }
  const config: Config = {
    mode,
    listenPort,
    bindAddress: v.b,
    sourceAddress: v.B,
    connectTimeout,
    idleTimeout,
    autodisable: v.a ?? false,
    debug: v.d ?? false,
    foreground: v.f ?? false,
    packetDump: v.p ?? false,
    hashFailover: v.H ?? false,
    ipv6: v["6"] ?? false,
    command: v.c,
    logFile: v["log-file"],
    logConnections: v["log-connections"] ?? false,
    syslog: given("syslog", (t) => parseHostPort(t, lookup, "syslog port (--syslog)", SYSLOG_PORT)),
    workers: given("workers", parseWorkers) ?? DEFAULTS.workers,
    graceSeconds: given("grace", (t) => seconds(t, "grace period (--grace)", 0)) ?? DEFAULTS.graceSeconds,
    check: parseCheckOptions(v, connectTimeout, given, optionAt),
    resolveInterval: given(
      "resolve-interval",
      (t) => parseSeconds(t, "resolve interval (--resolve-interval)", 0, MAX_TIMEOUT_SEC),
    ) ?? DEFAULTS.resolveInterval,
    resolver: given("resolver", (t) => parseResolver(t, lookup)),
    metrics: given("metrics", (t) => parseMetricsAddress(t, lookup)),
    proxyProtocol: given("proxy-protocol", parseProxyVersion),
    acceptProxy: v["accept-proxy"] ?? false,
    access: parseAccess(v, tokens, given, optionAt),
    clientTable: given(
      "client-table",
      (t) =>
        parseCount(t, "client table (--client-table)", {
          min: MIN_CLIENT_TABLE,
          max: MAX_CLIENT_TABLE,
          unit: "clients",
        }),
    ) ?? DEFAULTS.clientTable,
    udp: parseUdp(v, given, optionAt),
    engine: given("engine", parseEngine) ?? DEFAULTS.engine,
    groups: mode === "serve"
      ? withLeastConnection(channelGroups(channelArgs, listenPort, lookup, positionalAt), v.L ?? false)
      : [],
    sni: [],
    ftp: parseFtp(v, given, optionAt),
    checkConfig: v["check-config"] ?? false,
    configFiles: [],
    optionWords: optionWords(tokens),
  };
  checkUdpCombinations(config, optionAt);
  return { ...config, ...parseSni(config.groups, tokens, given, optionAt) };
}

const OPTIONS = {
  "6": { type: "boolean", short: "6" },
  a: { type: "boolean", short: "a" },
  b: { type: "string", short: "b" },
  B: { type: "string", short: "B" },
  c: { type: "string", short: "c" },
  d: { type: "boolean", short: "d" },
  f: { type: "boolean", short: "f" },
  H: { type: "boolean", short: "H" },
  i: { type: "boolean", short: "i" },
  L: { type: "boolean", short: "L" },
  M: { type: "boolean", short: "M" },
  p: { type: "boolean", short: "p" },
  t: { type: "string", short: "t" },
  T: { type: "string", short: "T" },
  workers: { type: "string", short: "w" },
  "log-file": { type: "string" },
  "log-connections": { type: "boolean" },
  syslog: { type: "string" },
  grace: { type: "string" },
  list: { type: "boolean" },
  check: { type: "boolean" },
  "check-interval": { type: "string" },
  "check-timeout": { type: "string" },
  rise: { type: "string" },
  fall: { type: "string" },
  "check-send": { type: "string" },
  "check-expect": { type: "string" },
  "check-exec": { type: "string" },
  "resolve-interval": { type: "string" },
  resolver: { type: "string" },
  metrics: { type: "string" },
  "proxy-protocol": { type: "string" },
  "accept-proxy": { type: "boolean" },
  allow: { type: "string", multiple: true },
  deny: { type: "string", multiple: true },
  "proxy-from": { type: "string" },
  "max-per-client": { type: "string" },
  "rate-per-client": { type: "string" },
  "client-table": { type: "string" },
  sni: { type: "string", multiple: true },
  "sni-default": { type: "string" },
  udp: { type: "boolean" },
  "udp-only": { type: "boolean" },
  "udp-timeout": { type: "string" },
  "udp-responses": { type: "string" },
  "udp-max-sessions": { type: "string" },
  ftp: { type: "boolean" },
  "ftp-address": { type: "string" },
  "ftp-data-ports": { type: "string" },
  engine: { type: "string" },
  "check-config": { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

type Option = keyof typeof OPTIONS;
type StringOption = Exclude<
  { [K in Option]: typeof OPTIONS[K]["type"] extends "string" ? K : never }[Option],
  RepeatedOption
>;
/** Options that may be given many times, each occurrence kept in order. */
type RepeatedOption = "allow" | "deny" | "sni";
const REPEATED = new Set<string>(["allow", "deny", "sni"]);
type Values =
  & { [K in Option]?: typeof OPTIONS[K]["type"] extends "string" ? string : boolean }
  & { allow?: string[]; deny?: string[]; sni?: string[] };
type Token = { kind: string; index: number; name?: string; rawName?: string; value?: string; inlineValue?: boolean };

// Options whose value is a number: `-T -5` is a value to report as invalid, not an option `-5`.
const NUMBER_OPTIONS = new Set([
  "t",
  "T",
  "workers",
  "grace",
  "check-interval",
  "check-timeout",
  "rise",
  "fall",
  "resolve-interval",
  "max-per-client",
  "rate-per-client",
  "client-table",
  "udp-timeout",
  "udp-responses",
  "udp-max-sessions",
]);

// What strict parsing would refuse, blamed on the word at fault.
function checkTokens(tokens: Token[]): void {
  for (const t of tokens) {
    if (t.kind !== "option") continue;
    const option = OPTIONS[t.name as Option] as { type: string } | undefined;
    const fail = (why: string) => usageError(why).at(t.index);
    if (!option) throw fail(`unknown option '${shown(t.rawName!)}'`);
    if (option.type === "boolean" && t.value !== undefined) throw fail(`option ${t.rawName} takes no value`);
    if (option.type !== "string") continue;
    if (t.value === undefined) throw fail(`option ${t.rawName} needs a value`);
    if (!t.inlineValue && /^-./.test(t.value) && !(NUMBER_OPTIONS.has(t.name!) && /^-\d/.test(t.value))) {
      throw fail(`option ${t.rawName} needs a value, not another option`);
    }
  }
}

// The groups of the channel words, an error blamed on its word on the whole command line.
function channelGroups(args: string[], listenPort: number, lookup: ServiceLookup, positionalAt: number[]): GroupSpec[] {
  try {
    return parseGroups(args, listenPort, lookup);
  } catch (err) {
    // parseGroups blames a word of `args`, which are the positionals after the port.
    throw err instanceof ExitError ? err.at(positionalAt[err.word === undefined ? 0 : err.word + 1]) : err;
  }
}

// Options that say how this process runs, not what it serves; `-L` is
// written out as the groups' types.
const NOT_DUMPED = new Set(["f", "d", "L", "check-config", "c", "i"]);

// The options of a parsed command line as words a configuration file can
// hold, each once, as its last occurrence (the one in force): a value with
// spaces, or one a `#` would turn into a comment, in double quotes.
function optionWords(tokens: { kind: string; name?: string; rawName?: string; value?: string }[]): string[] {
  const last = new Map<string, string[]>();
  for (const t of tokens) {
    if (t.kind !== "option" || NOT_DUMPED.has(t.name!)) continue;
    const key = REPEATED.has(t.name!) ? `${t.name} ${last.size}` : t.name!;
    last.delete(key);
    const value = t.value === undefined ? [] : [/^$|^#|\s/.test(t.value) ? `"${t.value}"` : t.value];
    last.set(key, [t.rawName!, ...value]);
  }
  return [...last.values()].flat();
}

// `-L`: every RR group picks by least connection; Hash groups stay as they are.
function withLeastConnection(groups: GroupSpec[], on: boolean): GroupSpec[] {
  return on ? groups.map((g) => (g.type === "RR" ? { ...g, type: "LC" } : g)) : groups;
}

/** Most consecutive checks `--rise`/`--fall` may ask for. */
const MAX_RISE_FALL = 1000;

// `--check` and its options, which mean nothing without it.
function parseCheckOptions(
  v: Values,
  connectTimeout: number,
  given: <T>(name: StringOption, parse: (text: string) => T) => T | undefined,
  optionAt: (name: string) => number | undefined,
): HealthSettings | undefined {
  if (!v.check) {
    const stray = CHECK_OPTIONS.find((o) => v[o] !== undefined);
    if (stray) throw usageError(`option --${stray} needs --check`).at(optionAt(stray));
    return undefined;
  }
  const interval = (o: "check-interval" | "check-timeout") =>
    given(o, (t) => parseSeconds(t, `${o.replace("-", " ")} (--${o})`, MIN_CHECK_INTERVAL, MAX_TIMEOUT_SEC));
  const count = (o: "rise" | "fall") =>
    given(o, (t) => parseCount(t, `${o} (--${o})`, { min: 1, max: MAX_RISE_FALL, unit: "checks" }));
  const bytes = (o: "check-send" | "check-expect") =>
    given(o, (t) => {
      if (t === "") throw usageError(`option --${o} needs a value`);
      return decodeEscapes(t, `--${o}`);
    });
  const exec = given("check-exec", (t) => {
    const words = t.split(" ").filter((w) => w !== "");
    if (words.length === 0) throw usageError("option --check-exec needs a command");
    return words;
  });
  const settings = {
    interval: interval("check-interval"),
    timeout: interval("check-timeout"),
    rise: count("rise"),
    fall: count("fall"),
    send: bytes("check-send"),
    expect: bytes("check-expect"),
    exec,
  };
  // Options left out take their defaults, not `undefined`.
  const defined = Object.fromEntries(Object.entries(settings).filter(([, value]) => value !== undefined));
  return healthSettings(defined, connectTimeout);
}

const CHECK_OPTIONS = [
  "check-interval",
  "check-timeout",
  "rise",
  "fall",
  "check-send",
  "check-expect",
  "check-exec",
] as const;

/** The port of `--syslog HOST` without one: syslog over UDP. */
const SYSLOG_PORT = 514;

// `HOST[:PORT]` (`--syslog`, `--resolver`): a name, an IPv4 address, or an
// IPv6 one (in brackets when a port follows).
function parseHostPort(
  text: string,
  lookup: ServiceLookup,
  what: string,
  defaultPort: number,
): { host: string; port: number } {
  const match = /^\[([^\]]+)\](?::(.+))?$/.exec(text) ?? /^([^:]+)(?::(.+))?$/.exec(text);
  if (!match) return { host: text, port: defaultPort };
  const [, host, port] = match;
  return { host, port: port === undefined ? defaultPort : parsePort(port, lookup, what) };
}

/** The port of `--resolver ADDR` without one: DNS. */
const DNS_PORT = 53;

// `--resolver ADDR[:PORT]`: an address, since a name would need a resolver.
function parseResolver(text: string, lookup: ServiceLookup): { host: string; port: number } {
  const server = parseHostPort(text, lookup, "resolver port (--resolver)", DNS_PORT);
  if (!addressBytes(server.host)) {
    throw usageError(`invalid resolver (--resolver) '${shown(text)}': must be an IP address, with :PORT if not 53`);
  }
  return server;
}

/** Where `--metrics PORT` listens without an address: this host only. */
const METRICS_HOST = "127.0.0.1";

// `--metrics [ADDR:]PORT`: unlike HOST[:PORT], the port is what may not be left out.
function parseMetricsAddress(text: string, lookup: ServiceLookup): { host: string; port: number } {
  const match = /^\[([^\]]+)\]:(.*)$/.exec(text) ?? /^([^:]*):([^:]*)$/.exec(text);
  const [host, port] = match ? [match[1], match[2]] : [METRICS_HOST, text];
  if (host === "" || port === "") {
    throw usageError(`invalid metrics address (--metrics) '${shown(text)}': must be [ADDR:]PORT`);
  }
  return { host, port: parsePort(port, lookup, "metrics port (--metrics)") };
}

// `--proxy-protocol v1|v2`, as HAProxy's send-proxy and send-proxy-v2.
function parseProxyVersion(text: string): 1 | 2 {
  if (text === "v1") return 1;
  if (text === "v2") return 2;
  throw usageError(`invalid PROXY protocol version (--proxy-protocol) '${shown(text)}': must be v1 or v2`);
}

// `--engine native|runtime`: whether native can run here is decided at start, not here.
function parseEngine(text: string): EngineName {
  if (text === "native" || text === "runtime") return text;
  throw usageError(`invalid engine (--engine) '${shown(text)}': must be native or runtime`);
}

/** `--client-table` bounds: a few clients at least; 16 Mi entries is about 1.3 GB. */
const MIN_CLIENT_TABLE = 16;
const MAX_CLIENT_TABLE = 16_777_216;
/** `--max-per-client` and `--rate-per-client` N at most. */
const MAX_PER_CLIENT = 1_000_000;
/** `--rate-per-client N/SEC`: SEC at most a day. */
const MAX_RATE_SECONDS = 86_400;

// `--allow`/`--deny` in the order given (each SPEC checked, blamed on its
// word), `--proxy-from` and the per-client limits.
function parseAccess(
  v: Values,
  tokens: Token[],
  given: <T>(name: StringOption, parse: (text: string) => T) => T | undefined,
  optionAt: (name: string) => number | undefined,
): AccessSettings {
  const rules = tokens.filter((t) => t.kind === "option" && (t.name === "allow" || t.name === "deny")).map((t) => {
    const action = t.name as RuleAction;
    blaming(t.index, () => parsePrefixList(t.value ?? "", `--${action}`));
    return { action, spec: t.value! };
  });
  const proxyFrom = given("proxy-from", (t) => {
    parsePrefixList(t, "--proxy-from");
    return t;
  });
  if (proxyFrom !== undefined && !v["accept-proxy"]) {
    throw usageError("option --proxy-from needs --accept-proxy").at(optionAt("proxy-from"));
  }
  const count = (text: string, what: string) => parseCount(text, what, { min: 1, max: MAX_PER_CLIENT });
  const maxPerClient = given("max-per-client", (t) => count(t, "connections per client (--max-per-client)"));
  const ratePerClient = given("rate-per-client", (t) => {
    const [n, seconds, extra] = t.split("/");
    if (extra !== undefined) {
      throw usageError(`invalid rate per client (--rate-per-client) '${shown(t)}': must be N or N/SEC`);
    }
    return {
      connections: count(n, "rate per client (--rate-per-client)"),
      seconds: seconds === undefined
        ? 1
        : parseCount(seconds, "rate period (--rate-per-client)", { min: 1, max: MAX_RATE_SECONDS, unit: "seconds" }),
    };
  });
  return { rules, proxyFrom, maxPerClient, ratePerClient };
}

// `--sni PATTERN=@NAME` and `--sni-default @NAME`, each naming a service the
// channel words declare.
function parseSni(
  groups: GroupSpec[],
  tokens: Token[],
  given: <T>(name: StringOption, parse: (text: string) => T) => T | undefined,
  optionAt: (name: string) => number | undefined,
): { sni: SniRoute[]; sniDefault?: string } {
  const services = new Set(groups.map((g) => g.service).filter((s) => s !== undefined));
  const known = (name: string, where: string) => {
    if (!services.has(name)) {
      throw usageError(`unknown service '@${shown(name)}' in ${where}: no channel word declares it`);
    }
    return name;
  };
  const sni = tokens.filter((t) => t.kind === "option" && t.name === "sni").map((t) =>
    blaming(t.index, () => {
      const route = parseSniRoute(t.value ?? "");
      known(route.service, `--sni '${shown(t.value!)}'`);
      return route;
    })
  );
  sniRouting(sni, ""); // a pattern given twice is an error
  const sniDefault = given("sni-default", (t) => {
    if (!t.startsWith("@")) throw usageError(`invalid --sni-default '${shown(t)}': must be @NAME`);
    return known(t.slice(1), "--sni-default");
  });
  if (sniDefault !== undefined && sni.length === 0) {
    throw usageError("option --sni-default needs --sni").at(optionAt("sni-default"));
  }
  return sniDefault === undefined ? { sni } : { sni, sniDefault };
}

/** `--udp-responses` and `--udp-max-sessions` at most. */
const MAX_UDP_COUNT = 1_000_000;

// `--udp` or `--udp-only`, and the options that mean nothing without one.
function parseUdp(
  v: Values,
  given: <T>(name: StringOption, parse: (text: string) => T) => T | undefined,
  optionAt: (name: string) => number | undefined,
): UdpConfig | undefined {
  if (v.udp && v["udp-only"]) throw usageError("--udp and --udp-only exclude each other").at(optionAt("udp-only"));
  if (!v.udp && !v["udp-only"]) {
    const stray = UDP_OPTIONS.find((o) => v[o] !== undefined);
    if (stray) throw usageError(`option --${stray} needs --udp or --udp-only`).at(optionAt(stray));
    return undefined;
  }
  const count = (text: string, what: string, min: number) => parseCount(text, what, { min, max: MAX_UDP_COUNT });
  const maxSessions = given("udp-max-sessions", (t) => count(t, "UDP sessions (--udp-max-sessions)", 1));
  return {
    only: v["udp-only"] ?? false,
    timeout: given(
      "udp-timeout",
      (t) => parseCount(t, "UDP timeout (--udp-timeout)", { min: 1, max: MAX_TIMEOUT_SEC, unit: "seconds" }),
    ) ?? UDP_TIMEOUT,
    responses: given("udp-responses", (t) => count(t, "UDP responses (--udp-responses)", 0)) ?? 0,
    ...(maxSessions === undefined ? {} : { maxSessions }),
  };
}

const UDP_OPTIONS = ["udp-timeout", "udp-responses", "udp-max-sessions"] as const;

// What UDP cannot do: a v1 header is a line of a stream; with no TCP, nothing
// sends a PROXY header or a ClientHello, and a check must be a datagram.
function checkUdpCombinations(config: Config, optionAt: (name: string) => number | undefined): void {
  const { udp } = config;
  if (!udp) return;
  if (config.proxyProtocol === 1) {
    throw usageError("--proxy-protocol v1 cannot go with UDP: datagrams carry v2 headers only")
      .at(optionAt("proxy-protocol"));
  }
  if (!udp.only) return;
  if (config.acceptProxy) {
    throw usageError("--accept-proxy reads TCP streams: it cannot go with --udp-only").at(optionAt("accept-proxy"));
  }
  if (optionAt("sni") !== undefined) {
    throw usageError("--sni reads TLS over TCP: it cannot go with --udp-only").at(optionAt("sni"));
  }
  if (config.check && !config.check.send && !config.check.exec) {
    throw usageError(
      "--check with --udp-only needs --check-send (a datagram) or --check-exec: a UDP channel has no connect to check",
    )
      .at(optionAt("check"));
  }
}

// `--ftp` and its options, which mean nothing without it. An FTP server
// speaks first, so nothing can be read ahead of the connect (`--sni`).
function parseFtp(
  v: Values,
  given: <T>(name: StringOption, parse: (text: string) => T) => T | undefined,
  optionAt: (name: string) => number | undefined,
): FtpSettings | undefined {
  if (!v.ftp) {
    const stray = (["ftp-address", "ftp-data-ports"] as const).find((o) => v[o] !== undefined);
    if (stray) throw usageError(`option --${stray} needs --ftp`).at(optionAt(stray));
    return undefined;
  }
  if (v.sni?.length) {
    throw usageError("--ftp and --sni exclude each other: an FTP server speaks first").at(optionAt("ftp"));
  }
  const address = given("ftp-address", (t) => {
    // Announced in 227 replies, which carry only IPv4.
    if (addressBytes(t)?.length !== 4) {
      throw usageError(`invalid FTP address (--ftp-address) '${shown(t)}': must be an IPv4 address`);
    }
    return plainAddress(t);
  });
  const ports = given("ftp-data-ports", (t) => {
    const m = /^(\d{1,5})-(\d{1,5})$/.exec(t);
    const [lo, hi] = m ? [Number(m[1]), Number(m[2])] : [0, 0];
    if (!(lo >= 1 && lo <= hi && hi <= 65535)) {
      throw usageError(`invalid data ports (--ftp-data-ports) '${shown(t)}': must be LO-HI, 1 <= LO <= HI <= 65535`);
    }
    return { lo, hi };
  });
  return { ...(address && { address }), ...(ports && { ports }) };
}

/** More threads than this only add contention on any machine we know of. */
export const MAX_WORKERS = 64;

// `auto` is one worker per core the runtime may use.
function parseWorkers(text: string): number {
  if (text === "auto") return Math.min(availableParallelism(), MAX_WORKERS);
  const n = /^\d{1,3}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= MAX_WORKERS)) {
    throw usageError(`invalid workers (-w) '${shown(text)}': must be 1-${MAX_WORKERS} or auto`);
  }
  return n;
}
