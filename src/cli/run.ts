import { readFileSync } from "node:fs";
import { lookup } from "node:dns/promises";
import process from "node:process";
import { Balancer } from "../core/balancer.ts";
import { ExitError } from "../core/exit_error.ts";
import { parseServices, type ServiceLookup } from "../core/grammar.ts";
import { formatPacketDump } from "../core/packet_dump.ts";
import { EX_OK, EX_SOFTWARE, EX_UNAVAILABLE, EX_USAGE } from "../core/sysexits.ts";
import type { Adapter } from "../adapter/types.ts";
import { parseCommandLine } from "./args.ts";
import type { Config } from "./config.ts";
import { setupLog } from "./log.ts";
import { USAGE, versionLine } from "./usage.ts";

/**
 * Runs balance with a command line on the given adapter and resolves to the
 * exit code. Every failure becomes one line on stderr and a sysexits code;
 * a stack trace appears only for a bug (exit 70), and then only with `-d`.
 *
 * @example
 * ```ts
 * process.exitCode = await run(process.argv.slice(2), await import("../adapter/deno/mod.ts"));
 * ```
 */
export async function run(argv: string[], adapter: Adapter): Promise<number> {
  try {
    const config = parseCommandLine(argv, readServices());
    switch (config.mode) {
      case "help":
        process.stdout.write(`${USAGE}\n`);
        return EX_OK;
      case "version":
        process.stdout.write(`${versionLine()}\n`);
        return EX_OK;
      case "control":
      case "interactive":
        // The control channel arrives with runtime control (issue 4): until
        // then no instance can be reached, which is what 69 says.
        throw new ExitError(`no balance instance to control on port ${config.listenPort}`, EX_UNAVAILABLE);
      case "serve":
        return await serveUntilStopped(config, adapter);
    }
  } catch (err) {
    if (err instanceof ExitError) {
      process.stderr.write(`balance: ${err.message}\n`);
      if (err.showUsage) process.stderr.write(`${USAGE}\n`);
      return err.exitCode;
    }
    process.stderr.write(`balance: internal error: ${err instanceof Error ? err.message : String(err)}\n`);
    if (argv.some((a) => /^-[^-]*d/.test(a))) console.error(err);
    return EX_SOFTWARE;
  }
}

async function serveUntilStopped(config: Config, adapter: Adapter): Promise<number> {
  const log = setupLog(config.debug);
  const trace = config.debug ? (m: string) => log.debug(m) : undefined;
  const hosts = new Map<string, string>();
  for (const host of config.groups.flatMap((g) => g.channels.map((c) => c.host))) {
    hosts.set(host, await resolveHost(host, "channel host"));
  }
  const balancer = Balancer.fromSpecs(
    config.groups,
    { autodisable: config.autodisable, hashFailover: config.hashFailover },
    trace,
    (host) => hosts.get(host)!,
  );
  const hostname = config.bindAddress !== undefined
    ? await resolveHost(config.bindAddress, "bind address (-b)")
    : config.ipv6
    ? "::"
    : "0.0.0.0";
  const sourceAddress = config.sourceAddress === undefined
    ? undefined
    : await resolveHost(config.sourceAddress, "source address (-B)");
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    // Windows has no SIGTERM to listen for.
    try {
      process.on(signal, () => {
        trace?.(`${signal}: exiting`);
        process.exit(EX_OK);
      });
    } catch { /* signal not supported here */ }
  }
  const server = await adapter.serve(balancer, {
    hostname,
    port: config.listenPort,
    connectTimeoutMs: config.connectTimeout * 1000,
    idleTimeoutMs: config.idleTimeout * 1000,
    sourceAddress,
    dump: config.packetDump ? (dir, chunk) => process.stdout.write(formatPacketDump(dir, chunk)) : undefined,
    trace,
    warn: (m) => log.warning(m),
  });
  trace?.(`listening on ${hostname} port ${server.port}, ${balancer.groups.length} group(s)`);
  await server.finished;
  return EX_OK;
}

async function resolveHost(host: string, what: string): Promise<string> {
  try {
    return (await lookup(host)).address;
  } catch {
    throw new ExitError(`cannot resolve ${what} '${host}'`, EX_USAGE, true);
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
