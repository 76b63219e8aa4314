import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { parseCount, parseGroups, parsePort, type ServiceLookup } from "../core/grammar.ts";
import { usageError } from "../core/exit_error.ts";
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
      args: argv,
      allowPositionals: true,
      strict: true,
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
        M: { type: "boolean", short: "M" },
        p: { type: "boolean", short: "p" },
        t: { type: "string", short: "t" },
        T: { type: "string", short: "T" },
        workers: { type: "string", short: "w" },
        "log-file": { type: "string" },
        grace: { type: "string" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
      },
    });
  } catch (err) {
    throw usageError(parseArgsMessage(err));
  }
  const { values: v, positionals } = parsed;
  if (v.help) return { ...DEFAULTS, mode: "help", listenPort: 0, groups: [] };
  if (v.version) return { ...DEFAULTS, mode: "version", listenPort: 0, groups: [] };
  if (v.i && v.c !== undefined) throw usageError("-i and -c exclude each other");
  const mode: Mode = v.i ? "interactive" : v.c !== undefined ? "control" : "serve";

  const [portText, ...channelArgs] = positionals;
  if (portText === undefined) throw usageError("missing port");
  const listenPort = parsePort(portText, lookup, "listen port");
  for (const [flag, value] of [["-b", v.b], ["-B", v.B], ["--log-file", v["log-file"]]] as const) {
    if (value === "") throw usageError(`option ${flag} needs a value`);
  }
  const connectTimeout = v.t === undefined
    ? DEFAULTS.connectTimeout
    : parseCount(v.t, "connect timeout", MAX_TIMEOUT_SEC);
  if (connectTimeout < 1) throw usageError("connect timeout (-t) must be at least 1 second");
  const idleTimeout = v.T === undefined ? DEFAULTS.idleTimeout : parseCount(v.T, "idle timeout", MAX_TIMEOUT_SEC);

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
    workers: v.workers === undefined ? DEFAULTS.workers : parseWorkers(v.workers),
    graceSeconds: v.grace === undefined ? DEFAULTS.graceSeconds : parseCount(v.grace, "grace period", MAX_TIMEOUT_SEC),
    groups: mode === "serve" ? parseGroups(channelArgs, listenPort, lookup) : [],
  };
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
  const missing = /Option '(-\w)[^']*' argument missing/.exec(text);
  if (missing) return `option ${missing[1]} needs a value`;
  const ambiguous = /Option '(-\w)[^']*' argument is ambiguous/.exec(text);
  if (ambiguous) return `option ${ambiguous[1]} needs a value, not another option`;
  return shown(text.split(/\.\s/)[0], 200);
}
