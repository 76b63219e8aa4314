/**
 * The `balance` program: picks the adapter for the runtime it runs in and
 * hands it the command line.
 *
 * @example
 * ```sh
 * deno run -A src/main.ts -f 8080 127.0.0.1:8081 127.0.0.1:8082
 * bun src/main.ts -f 8080 127.0.0.1:8081 127.0.0.1:8082
 * ```
 *
 * @module
 */
import process from "node:process";
import type { Adapter } from "./adapter/types.ts";
import { run } from "./cli/run.ts";

const adapter: Adapter = "Bun" in globalThis
  ? await import("./adapter/bun/mod.ts")
  : await import("./adapter/deno/mod.ts");
// Resolved here, in the entry module: in a compiled binary only the entry's
// URL places the worker's entry point.
const workerUrl = new URL("./worker.ts", import.meta.url);
process.exitCode = await run(process.argv.slice(2), adapter, workerUrl);
