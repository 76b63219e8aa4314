import { appendFileSync } from "node:fs";
import { configure, getConsoleSink, getLogger, getTextFormatter, type LogLevel, type Sink } from "@logtape/logtape";

/** Where log lines go: the terminal, syslog (facility daemon), or a file. */
export type LogTarget = { kind: "stderr" } | { kind: "syslog" } | { kind: "file"; path: string };

const formatter = getTextFormatter({
  timestamp: "date-time-tz",
  format: ({ timestamp, level, message }) => `${timestamp} balance ${level}: ${message}`,
});

async function sinkFor(target: LogTarget): Promise<Sink> {
  switch (target.kind) {
    case "stderr": {
      // stdout belongs to the -p packet dump: every level goes to stderr.
      const levelMap = Object.fromEntries(
        (["trace", "debug", "info", "warning", "error", "fatal"] as LogLevel[]).map((l) => [l, "error"]),
      ) as Record<LogLevel, "error">;
      return getConsoleSink({ levelMap, formatter });
    }
    case "syslog": {
      // Loaded only in the background: it brings sockets and TLS code that
      // a foreground balancer need not keep in memory.
      const { getSyslogSink } = await import("@logtape/syslog");
      return getSyslogSink({ facility: "daemon", appName: "balance" });
    }
    case "file":
      // One synchronous append per line: a background balancer's log is
      // rare lines (start, warnings, -d traces), never per chunk.
      return (record) => appendFileSync(target.path, formatter(record));
  }
}

/**
 * Sets up balance's log and returns its logger: foreground to stderr,
 * background to syslog or the `--log-file`; `-d` adds the debug traces.
 *
 * @example
 * ```ts
 * const log = await setupLog(true, { kind: "stderr" });
 * log.debug("accepted 127.0.0.1:50000");
 * ```
 */
export async function setupLog(debug: boolean, target: LogTarget) {
  await configure({
    reset: true,
    sinks: { out: await sinkFor(target) },
    loggers: [
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["out"] },
      { category: "balance", lowestLevel: debug ? "debug" : "info", sinks: ["out"] },
    ],
  });
  return getLogger("balance");
}
