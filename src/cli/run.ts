import { readFileSync } from "node:fs";
import process from "node:process";
import { ExitError } from "../core/util/exit_error.ts";
import { shown } from "../core/util/shown.ts";
import { parseServices, type ServiceLookup } from "../core/config/grammar.ts";
import { EX_NOINPUT, EX_OK, EX_SOFTWARE, EX_USAGE } from "../core/util/sysexits.ts";
import { expandConfigFiles, located } from "../core/config/config_file.ts";
import type { Adapter } from "../adapter/types.ts";
import { controlAddress, findControlAddress } from "../control/address.ts";
import { runControlCommand, runControlShell } from "../control/client.ts";
import { findInstances, formatInstances } from "../control/instances.ts";
import { parseCommandLine } from "./args.ts";
import { DETACHED_ENV, startInBackground } from "./background.ts";
import { discardedLog, logTargets } from "../app/observe/log.ts";
import { resolveConfig, serveUntilStopped } from "../app/serve.ts";
import type { Config } from "../app/config.ts";
import { TRY_HELP, USAGE } from "./usage.ts";
import { versionLine } from "../app/version.ts";

/**
 * Runs balance with a command line on the given adapter and resolves to the
 * exit code. No arguments print the usage (exit 64). Every failure becomes
 * one line on stderr (a command-line mistake adds {@link TRY_HELP}) and a sysexits code;
 * a stack trace appears only for a bug (exit 70), and then only with `-d`.
 *
 * @example
 * ```ts
 * const adapter = await import("../adapter/deno/mod.ts");
 * // in the entry module, next to worker.ts:
 * process.exitCode = await run(process.argv.slice(2), adapter, new URL("./worker.ts", import.meta.url));
 * ```
 */
export async function run(argv: string[], adapter: Adapter, workerUrl: URL): Promise<number> {
  if (argv.length === 0) {
    process.stderr.write(`${USAGE}\n`);
    return EX_USAGE;
  }
  try {
    const lookupPort = readServices();
    // Read again, from the same words, by every reload; a mistake in a file is named by its FILE:LINE.
    const read = (): Config => {
      const { argv: words, files, origins } = expandConfigFiles(argv, readConfigFile);
      try {
        return { ...parseCommandLine(words, lookupPort), configFiles: files };
      } catch (err) {
        throw located(err, origins);
      }
    };
    const config = read();
    const control = () => controlAddress(config.listenPort, config.bindAddress);
    switch (config.mode) {
      case "help":
        process.stdout.write(`${USAGE}\n`);
        return EX_OK;
      case "version":
        process.stdout.write(`${versionLine()}\n`);
        return EX_OK;
      case "control":
        return await runControlCommand(
          findControlAddress(config.listenPort, config.bindAddress),
          config.listenPort,
          config.command!,
        );
      case "interactive":
        return await runControlShell(findControlAddress(config.listenPort, config.bindAddress), config.listenPort);
      case "list":
        process.stdout.write(`${formatInstances(await findInstances())}\n`);
        return EX_OK;
      case "serve":
        if (config.checkConfig) {
          await resolveConfig(config);
          return EX_OK;
        }
        if (config.foreground) {
          return await serveUntilStopped(config, adapter, workerUrl, lookupPort, read);
        }
        if (process.env[DETACHED_ENV] === "1") {
          // The detached copy: nobody reads stderr once the parent has gone.
          process.stderr.on("error", () => {});
          return await serveUntilStopped(config, adapter, workerUrl, lookupPort, read);
        }
        return await startInBackground(
          adapter.selfCommand(),
          argv,
          control(),
          discardedLog(logTargets(config), adapter.openSyslogSocket),
        );
    }
  } catch (err) {
    if (err instanceof ExitError) {
      process.stderr.write(`balance: ${err.message}\n`);
      if (err.tryHelp) process.stderr.write(`${TRY_HELP}\n`);
      return err.exitCode;
    }
    process.stderr.write(`balance: internal error: ${err instanceof Error ? err.message : String(err)}\n`);
    if (argv.some((a) => /^-[^-]*d/.test(a))) console.error(err);
    return EX_SOFTWARE;
  }
}

/**
 * A configuration file's text, or exit 66 with one line saying why not.
 *
 * @example
 * ```ts
 * readConfigFile("/etc/balance/web.conf");
 * ```
 */
export function readConfigFile(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as { code?: string }).code;
    const why = code === "ENOENT"
      ? "no such file"
      : code === "EACCES"
      ? "permission denied"
      : code === "EISDIR"
      ? "is a directory"
      : String(err);
    throw new ExitError(`cannot read configuration file '${shown(path)}': ${why}`, EX_NOINPUT);
  }
}

// Service names as the system knows them; without a services file only
// numeric ports work, which is still a usable balancer.
function readServices(): ServiceLookup {
  const files = process.platform === "win32"
    ? [`${process.env.SystemRoot ?? "C:\\Windows"}\\System32\\drivers\\etc\\services`]
    : ["/etc/services"];
  for (const file of files) {
    try {
      return parseServices(readFileSync(file, "utf8"));
    } catch { /* try the next */ }
  }
  return () => undefined;
}
