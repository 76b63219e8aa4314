import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { decodeEscapes } from "../core/escapes.ts";
import {
  type GroupSpec,
  parseCount,
  parseGroups,
  parsePort,
  parseSeconds,
  type ServiceLookup,
} from "../core/grammar.ts";
import { type HealthSettings, healthSettings, MIN_CHECK_INTERVAL } from "../core/health.ts";
import { usageError } from "../core/exit_error.ts";
import { addressBytes } from "../core/hash.ts";
import { shown } from "../core/shown.ts";
import { type Config, DEFAULTS, type Mode } from "./config.ts";

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
  let parsed;
  try {
    parsed = parseArgs({
      args: attachNegativeValues(argv),
      allowPositionals: true,
      strict: true,
      tokens: true,
      options: {
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
        "check-config": { type: "boolean" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
      },
    });
  } catch (err) {
    throw usageError(parseArgsMessage(err));
  }
  const { values: v, positionals, tokens } = parsed;
  if (v.help) return { ...DEFAULTS, mode: "help", listenPort: 0, groups: [] };
  if (v.version) return { ...DEFAULTS, mode: "version", listenPort: 0, groups: [] };
  if (v.list) {
    if (positionals.length) throw usageError(`unexpected argument '${shown(positionals[0])}' with --list`);
    return { ...DEFAULTS, mode: "list", listenPort: 0, groups: [] };
  }
  if (v.i && v.c !== undefined) throw usageError("-i and -c exclude each other");
  const mode: Mode = v.i ? "interactive" : v.c !== undefined ? "control" : "serve";

  const [portText, ...channelArgs] = positionals;
  if (portText === undefined) throw usageError("missing port");
  const listenPort = parsePort(portText, lookup, "listen port");
  for (
    const [flag, value] of [["-b", v.b], ["-B", v.B], ["--log-file", v["log-file"]], ["--syslog", v.syslog]] as const
  ) {
    if (value === "") throw usageError(`option ${flag} needs a value`);
  }
  const seconds = (text: string, what: string, min: number) =>
    parseCount(text, what, { min, max: MAX_TIMEOUT_SEC, unit: "seconds" });
  const connectTimeout = v.t === undefined ? DEFAULTS.connectTimeout : seconds(v.t, "connect timeout (-t)", 1);
  const idleTimeout = v.T === undefined ? DEFAULTS.idleTimeout : seconds(v.T, "idle timeout (-T)", 0);

  if (mode !== "serve") {
    if (channelArgs.length) throw usageError(`unexpected argument '${shown(channelArgs[0])}' with -${v.i ? "i" : "c"}`);
    if (v.c?.trim() === "") throw usageError("-c needs a command");
  }
  return {
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
    syslog: v.syslog === undefined ? undefined : parseHostPort(v.syslog, lookup, "syslog port (--syslog)", SYSLOG_PORT),
    workers: v.workers === undefined ? DEFAULTS.workers : parseWorkers(v.workers),
    graceSeconds: v.grace === undefined ? DEFAULTS.graceSeconds : seconds(v.grace, "grace period (--grace)", 0),
    check: parseCheckOptions(v, connectTimeout),
    resolveInterval: v["resolve-interval"] === undefined
      ? DEFAULTS.resolveInterval
      : parseSeconds(v["resolve-interval"], "resolve interval (--resolve-interval)", 0, MAX_TIMEOUT_SEC),
    resolver: v.resolver === undefined ? undefined : parseResolver(v.resolver, lookup),
    metrics: v.metrics === undefined ? undefined : parseMetricsAddress(v.metrics, lookup),
    proxyProtocol: v["proxy-protocol"] === undefined ? undefined : parseProxyVersion(v["proxy-protocol"]),
    acceptProxy: v["accept-proxy"] ?? false,
    groups: mode === "serve" ? withLeastConnection(parseGroups(channelArgs, listenPort, lookup), v.L ?? false) : [],
    checkConfig: v["check-config"] ?? false,
    configFiles: [],
    optionWords: optionWords(tokens),
  };
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
    last.delete(t.name!);
    const value = t.value === undefined ? [] : [/^$|^#|\s/.test(t.value) ? `"${t.value}"` : t.value];
    last.set(t.name!, [t.rawName!, ...value]);
  }
  return [...last.values()].flat();
}

// `-L`: every RR group picks by least connection; Hash groups stay as they are.
function withLeastConnection(groups: GroupSpec[], on: boolean): GroupSpec[] {
  return on ? groups.map((g) => (g.type === "RR" ? { ...g, type: "LC" } : g)) : groups;
}

// Options whose value is a number, and the flags that may come before one
// of them in a group (`-ft`).
const NUMBER_OPTION =
  /^(-[6adfpHLMi]*[tTw]|--(workers|grace|check-interval|check-timeout|rise|fall|resolve-interval))$/;

/**
 * `-T -5`: a negative number after an option that takes a number is that
 * option's (invalid) value, to be reported as such, not an unknown option
 * `-5`. Attached (`-T-5`, `--grace=-5`), parseArgs hands it over as a value.
 */
function attachNegativeValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const [arg, next] = [argv[i], argv[i + 1]];
    if (arg === "--") return [...out, ...argv.slice(i)];
    if (NUMBER_OPTION.test(arg) && next !== undefined && /^-\d/.test(next)) {
      out.push(arg.startsWith("--") ? `${arg}=${next}` : `${arg}${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

/** Most consecutive checks `--rise`/`--fall` may ask for. */
const MAX_RISE_FALL = 1000;

// `--check` and its options, which mean nothing without it.
function parseCheckOptions(
  v: Partial<Record<CheckOption, string>> & { check?: boolean },
  connectTimeout: number,
): HealthSettings | undefined {
  if (!v.check) {
    const stray = CHECK_OPTIONS.find((o) => v[o] !== undefined);
    if (stray) throw usageError(`option --${stray} needs --check`);
    return undefined;
  }
  const interval = (o: "check-interval" | "check-timeout") =>
    v[o] === undefined
      ? undefined
      : parseSeconds(v[o], `${o.replace("-", " ")} (--${o})`, MIN_CHECK_INTERVAL, MAX_TIMEOUT_SEC);
  const count = (o: "rise" | "fall") =>
    v[o] === undefined ? undefined : parseCount(v[o], `${o} (--${o})`, { min: 1, max: MAX_RISE_FALL, unit: "checks" });
  const bytes = (o: "check-send" | "check-expect") => {
    if (v[o] === undefined) return undefined;
    if (v[o] === "") throw usageError(`option --${o} needs a value`);
    return decodeEscapes(v[o], `--${o}`);
  };
  const exec = v["check-exec"]?.split(" ").filter((w) => w !== "");
  if (exec?.length === 0) throw usageError("option --check-exec needs a command");
  const given = {
    interval: interval("check-interval"),
    timeout: interval("check-timeout"),
    rise: count("rise"),
    fall: count("fall"),
    send: bytes("check-send"),
    expect: bytes("check-expect"),
    exec,
  };
  // Options left out take their defaults, not `undefined`.
  const defined = Object.fromEntries(Object.entries(given).filter(([, value]) => value !== undefined));
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
type CheckOption = typeof CHECK_OPTIONS[number];

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

// node's messages mention its own API ("To specify a positional argument…");
// keep only the part a balance user needs.
function parseArgsMessage(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const unknown = /Unknown option '([^']*)'/.exec(text);
  if (unknown) return `unknown option '${shown(unknown[1])}'`;
  const missing = /Option '(-\w|--[\w-]+)[^']*' argument missing/.exec(text);
  if (missing) return `option ${missing[1]} needs a value`;
  const ambiguous = /Option '(-\w|--[\w-]+)[^']*' argument is ambiguous/.exec(text);
  if (ambiguous) return `option ${ambiguous[1]} needs a value, not another option`;
  return shown(text.split(/\.\s/)[0], 200);
}
