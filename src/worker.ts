/**
 * The entry of a `-w` worker thread: the same adapter choice as `main.ts`,
 * then the worker loop. Built into the binary as a second entry point.
 *
 * @example
 * ```ts
 * new Worker(new URL("./worker.ts", import.meta.url).href, { type: "module" });
 * ```
 *
 * @module
 */
import type { Adapter } from "./adapter/types.ts";
import { runWorker } from "./app/workers.ts";

const adapter: Adapter = "Bun" in globalThis
  ? await import("./adapter/bun/mod.ts")
  : await import("./adapter/deno/mod.ts");
runWorker(adapter);
