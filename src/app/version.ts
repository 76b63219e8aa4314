/**
 * Which balance this is: its version, the commit a binary was built from and
 * the runtime underneath, as `--version`, the start line and the
 * `balance_build_info` metric tell them.
 *
 * @module
 */
import process from "node:process";

/** Version of this balance; balance 3.54's successor. */
export const VERSION = "4.0.0";

// Replaced by `bun build --define` with the commit a binary is built from.
declare const BALANCE_COMMIT: string | undefined;

/**
 * The `--version` line: version, commit (or `source` when run from a
 * checkout) and the runtime underneath.
 *
 * @example
 * ```ts
 * versionLine(); // "balance 4.0.0 (commit 1a2b3c4, bun 1.4.5)"
 * ```
 */
export function versionLine(): string {
  const commit = typeof BALANCE_COMMIT === "string" ? `commit ${BALANCE_COMMIT}` : "source";
  return `balance ${VERSION} (${commit}, ${RUNTIME})`;
}

/**
 * The runtime underneath and its version, as `--version` and the
 * `balance_build_info` metric name it.
 *
 * @example
 * ```ts
 * RUNTIME; // "deno 2.9.6"
 * ```
 */
export const RUNTIME = process.versions.bun ? `bun ${process.versions.bun}` : `deno ${process.versions.deno}`;
