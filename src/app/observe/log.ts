import { closeSync, openSync, writeSync } from "node:fs";
import process from "node:process";
import {
  configure,
  dispose,
  getConsoleSink,
  getLogger,
  getTextFormatter,
  type LogLevel,
  type LogRecord,
  type Sink,
} from "@logtape/logtape";
import { ExitError } from "../../core/util/exit_error.ts";
import { shown } from "../../core/util/shown.ts";
import { EX_CANTCREAT } from "../../core/util/sysexits.ts";
import { syslogLine } from "../../core/observe/syslog.ts";
import { Throttle, warningKey } from "../../core/observe/throttle.ts";
import type { DatagramSender } from "../../adapter/types.ts";
import type { Config } from "../config.ts";

/**
 * Where log lines go: the terminal, the local syslog socket (facility
 * daemon), a syslog server over UDP (`--syslog`), or a file.
 */
export type LogTarget =
  | { kind: "stderr" }
  | { kind: "syslog"; socket: string }
  | { kind: "remote"; host: string; port: number }
  | { kind: "file"; path: string };

/** Names another local syslog socket than the system's (the logging test's rsyslog). */
export const SYSLOG_SOCKET_ENV = "BALANCE_SYSLOG_SOCKET";

/**
 * Where a balancer logs: in the foreground (`-f`) and under systemd (whose
 * journal reads stderr) on stderr, otherwise in the local syslog.
 * `--log-file` and `--syslog` add their target, and in the background
 * replace the default one. A background balancer on Windows, which has no
 * syslog, has none: its stderr would be the starting process's, gone.
 *
 * @example
 * ```ts
 * logTargets({ ...config, foreground: false }, {}, "linux"); // [{ kind: "syslog", socket: "/dev/log" }]
 * ```
 */
export function logTargets(
  config: Pick<Config, "foreground" | "logFile" | "syslog">,
  env: Record<string, string | undefined> = process.env,
  platform: string = process.platform,
): LogTarget[] {
  const asked: LogTarget[] = [];
  if (config.logFile !== undefined) asked.push({ kind: "file", path: config.logFile });
  if (config.syslog) asked.push({ kind: "remote", ...config.syslog });
  if (config.foreground) return [{ kind: "stderr" }, ...asked];
  if (asked.length) return asked;
  if (underSystemd(env)) return [{ kind: "stderr" }];
  if (platform === "win32") return [];
  const socket = env[SYSLOG_SOCKET_ENV] || (platform === "darwin" ? "/var/run/syslog" : "/dev/log");
  return [{ kind: "syslog", socket }];
}

/**
 * The one line a background start prints when the balancer it leaves behind
 * will have no log: `targets` (see {@link logTargets}) are none, or a local
 * syslog socket that cannot be connected to (missing, or nobody reads it).
 * Asked before detaching, so that the terminal hears it; undefined when the
 * log has somewhere to go.
 *
 * @example
 * ```ts
 * discardedLog([{ kind: "syslog", socket: "/dev/log" }], adapter.openSyslogSocket);
 * // "no syslog at /dev/log: the background balancer's log is discarded; use --log-file FILE or --syslog HOST[:PORT]"
 * ```
 */
export function discardedLog(
  targets: LogTarget[],
  openSyslogSocket: (path: string) => DatagramSender,
): string | undefined {
  const discarded = "the background balancer's log is discarded; use --log-file FILE or --syslog HOST[:PORT]";
  if (targets.length === 0) return `Windows has no syslog: ${discarded}`;
  for (const target of targets) {
    if (target.kind !== "syslog") continue;
    try {
      openSyslogSocket(target.socket).close();
    } catch {
      return `no syslog at ${shown(target.socket)}: ${discarded}`;
    }
  }
  return undefined;
}

/**
 * Whether systemd started this process (its journal reads stderr).
 *
 * @example
 * ```ts
 * underSystemd({ INVOCATION_ID: "4f0c…" }); // true
 * ```
 */
export function underSystemd(env: Record<string, string | undefined> = process.env): boolean {
  return Boolean(env.INVOCATION_ID || env.JOURNAL_STREAM);
}

/**
 * balance's log. `throttled` is for faults that can repeat without end
 * (connect failures, accept errors): at most one line per `key` per 10 s,
 * the next one saying how many were held back.
 */
export interface Log {
  debug(message: string): void;
  info(message: string): void;
  warning(message: string): void;
  throttled(message: string, key?: string): void;
  /**
   * Many info lines at once (`--log-connections`, thousands a second): one
   * write per target, past LogTape's work per record, which would cost
   * more than the lines.
   */
  infoLines(messages: string[]): void;
  /** Opens the log file again at its path (SIGUSR1, after logrotate renamed it); false: there is none. */
  reopen(): boolean;
  /** Sends what is still queued (a remote syslog); call before exiting. */
  close(): Promise<void>;
}

const CATEGORY = ["balance"];

/** One line per kind of fault and channel per this interval. */
export const THROTTLE_MS = 10_000;

// LogTape reads `{name}` in a message as a placeholder; balance's messages
// carry outside text (host names, control lines) that must stay as it is.
function literal(message: string): string {
  return message.replaceAll("{", "{{").replaceAll("}", "}}");
}

const formatter = getTextFormatter({
  timestamp: "date-time-tz",
  format: ({ timestamp, level, message }) => `${timestamp} balance ${level}: ${message}`,
});

// stdout belongs to the -p packet dump: every level goes to stderr.
function stderrSink(): Sink {
  const levelMap = Object.fromEntries(
    (["trace", "debug", "info", "warning", "error", "fatal"] as LogLevel[]).map((l) => [l, "error"]),
  ) as Record<LogLevel, "error">;
  return getConsoleSink({ levelMap, formatter });
}

/** Writes many records at once; a sink that cannot (a datagram per line) takes them one by one. */
type BulkSink = (records: LogRecord[]) => void;

// The records' lines in one text, for one write.
const joined = (records: LogRecord[]) => records.map(formatter).join("");

// One console.error call: the console sink's, with all the lines.
const stderrBulk: BulkSink = (records) => console.error(joined(records).slice(0, -1));

const oneByOne = (sink: Sink): BulkSink => (records) => records.forEach(sink);

/** A file sink whose descriptor can be opened anew at the same path. */
function fileSink(path: string): { sink: Sink; bulk: BulkSink; reopen(): void } {
  const open = () => {
    try {
      return openSync(path, "a", 0o640);
    } catch (err) {
      throw new ExitError(`cannot open log file '${shown(path)}': ${(err as Error).message}`, EX_CANTCREAT);
    }
  };
  let fd = open();
  return {
    // One synchronous write per line: written when the call returns, and a
    // background balancer's log is rare lines, never one per chunk.
    sink: (record) => writeSync(fd, formatter(record)),
    bulk: (records) => writeSync(fd, joined(records)),
    reopen() {
      const fresh = open();
      closeSync(fd);
      fd = fresh;
    },
  };
}

/**
 * Sets up balance's log on `targets` (see {@link logTargets}); `-d` adds the
 * debug traces. Throws an {@link ExitError} (exit 73) when the log file
 * cannot be opened. Lines for a local syslog socket that cannot be reached
 * are dropped: only a detached balancer logs there, whose stderr nobody
 * reads, and the start said so (see {@link discardedLog}).
 *
 * @example
 * ```ts
 * const log = await setupLog(true, [{ kind: "stderr" }], adapter.openSyslogSocket);
 * log.debug("accepted 127.0.0.1:50000");
 * ```
 */
export async function setupLog(
  debug: boolean,
  targets: LogTarget[],
  openSyslogSocket: (path: string) => DatagramSender,
): Promise<Log> {
  const sinks: Record<string, Sink> = {};
  const bulks: BulkSink[] = [];
  const files: { reopen(): void }[] = [];
  for (const [i, target] of targets.entries()) {
    const name = `${target.kind}${i}`;
    switch (target.kind) {
      case "stderr":
        sinks[name] = stderrSink();
        bulks.push(stderrBulk);
        break;
      case "file": {
        const file = fileSink(target.path);
        files.push(file);
        sinks[name] = file.sink;
        bulks.push(file.bulk);
        break;
      }
      case "syslog": {
        let socket: DatagramSender;
        try {
          socket = openSyslogSocket(target.socket);
        } catch {
          break;
        }
        sinks[name] = (record) => {
          const message = record.message.map(String).join("");
          socket.send(syslogLine(record.level, message, process.pid, new Date(record.timestamp)));
        };
        bulks.push(oneByOne(sinks[name]));
        break;
      }
      case "remote": {
        // Loaded only when asked for: it brings sockets and TLS code.
        const { getSyslogSink } = await import("@logtape/syslog");
        sinks[name] = getSyslogSink({
          hostname: target.host,
          port: target.port,
          facility: "daemon",
          appName: "balance",
        });
        bulks.push(oneByOne(sinks[name]));
        break;
      }
    }
  }
  await configure({
    reset: true,
    sinks,
    loggers: [
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: Object.keys(sinks) },
      { category: "balance", lowestLevel: debug ? "debug" : "info", sinks: Object.keys(sinks) },
    ],
  });
  const logger = getLogger("balance");
  const throttles = new Map<string, Throttle>();
  return {
    debug: (message) => logger.debug(literal(message)),
    info: (message) => logger.info(literal(message)),
    infoLines(messages) {
      const timestamp = Date.now();
      const records = messages.map((message): LogRecord => ({
        category: CATEGORY,
        level: "info",
        timestamp,
        message: [message],
        rawMessage: message,
        properties: {},
      }));
      for (const bulk of bulks) {
        try {
          bulk(records);
        } catch { /* as in LogTape: a target that fails does not stop the others, nor the balancer */ }
      }
    },
    warning: (message) => logger.warning(literal(message)),
    throttled(message, key = warningKey(message)) {
      let throttle = throttles.get(key);
      if (!throttle) throttles.set(key, throttle = new Throttle(THROTTLE_MS));
      const held = throttle.pass();
      if (held !== undefined) {
        logger.warning(literal(held ? `${message} (${held} more since the last report)` : message));
      }
    },
    reopen() {
      files.forEach((f) => f.reopen());
      return files.length > 0;
    },
    close: () => dispose(),
  };
}
