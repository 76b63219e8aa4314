/**
 * `--engine`: which engine moves TCP bytes in each thread. The runtime's
 * sockets serve unless `native` was asked for and can run here; the choice
 * is made once, at start, and every worker thread loads the same engine.
 *
 * @module
 */
import type { EngineName } from "../core/commands/control.ts";
import { ExitError } from "../core/util/exit_error.ts";
import { EX_SOFTWARE } from "../core/util/sysexits.ts";
import type { Adapter, ServeOptions } from "../adapter/types.ts";
import type { Engine } from "../adapter/linux/engine.ts";

// The native engine as this thread bound it (or why it could not): bound once.
let loaded: Engine | string | undefined;

function nativeEngine(adapter: Adapter): Engine | string {
  return (loaded ??= adapter.loadNativeEngine());
}

/**
 * The engine that will run for `wanted`: `native` only where it loads
 * (Linux on x86-64 or arm64, with FFI) and without `--ftp` (whose data
 * listeners only the runtime's sockets open); else the runtime's, said in
 * one info line.
 *
 * @example
 * ```ts
 * const engine = chooseEngine(config.engine, adapter, (m) => log.info(m)); // "native"
 * ```
 */
export function chooseEngine(
  wanted: EngineName,
  adapter: Adapter,
  info: (message: string) => void,
  ftp = false,
): EngineName {
  if (wanted === "runtime") return "runtime";
  if (ftp) {
    info("--engine native: --ftp's data listeners are the runtime's; the runtime's sockets serve TCP");
    return "runtime";
  }
  const engine = nativeEngine(adapter);
  if (typeof engine !== "string") return "native";
  info(`--engine native: ${engine}; the runtime's sockets serve TCP`);
  return "runtime";
}

/**
 * How this thread wakes a worker's native loop for a message it posted
 * (see `Server.wakeFd`); absent on the runtime's sockets.
 *
 * @example
 * ```ts
 * const wake = wakerOf(adapter, options); // then wake?.(fd) after each postMessage
 * ```
 */
export function wakerOf(adapter: Adapter, options: ServeOptions): ((fd: number) => void) | undefined {
  if (options.engine !== "native") return undefined;
  const engine = nativeEngine(adapter);
  return typeof engine === "string" ? undefined : engine.wake;
}

/**
 * What serves TCP in this thread for `options` (its `engine`, as the start
 * chose it). Throws an {@link ExitError} if a worker cannot load the native
 * engine the main thread could.
 *
 * @example
 * ```ts
 * const server = await tcpServe(adapter, options)(balancer, options);
 * ```
 */
export function tcpServe(adapter: Adapter, options: ServeOptions): Adapter["serve"] {
  if (options.engine !== "native") return adapter.serve;
  const engine = nativeEngine(adapter);
  if (typeof engine === "string") throw new ExitError(`--engine native: ${engine}`, EX_SOFTWARE);
  return engine.serve;
}
