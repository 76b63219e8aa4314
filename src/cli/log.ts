import { configureSync, getConsoleSink, getLogger, getTextFormatter, type LogLevel } from "@logtape/logtape";

/**
 * balance's log: one line per message on stderr, `-d` adding the traces.
 * (Background mode, issue 4, adds the syslog sink.)
 *
 * @example
 * ```ts
 * const log = setupLog(true);
 * log.debug("accepted 127.0.0.1:50000");
 * ```
 */
export function setupLog(debug: boolean) {
  const toStderr = Object.fromEntries(
    (["trace", "debug", "info", "warning", "error", "fatal"] as LogLevel[]).map((l) => [l, "error"]),
  ) as Record<LogLevel, "error">;
  configureSync({
    reset: true,
    sinks: {
      // stdout belongs to the -p packet dump: every level goes to stderr.
      stderr: getConsoleSink({
        levelMap: toStderr,
        formatter: getTextFormatter({
          timestamp: "date-time-tz",
          category: () => "",
          format: ({ timestamp, level, message }) => `${timestamp} balance ${level}: ${message}`,
        }),
      }),
    },
    loggers: [
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
      { category: "balance", lowestLevel: debug ? "debug" : "info", sinks: ["stderr"] },
    ],
  });
  return getLogger("balance");
}
