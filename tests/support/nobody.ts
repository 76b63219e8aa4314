/**
 * Running balance as another user, `nobody`, for tests of what one user's
 * instance means to another (needs root: `setpriv` drops to uid 65534).
 *
 * @module
 */
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { balanceCommand, runBalance } from "./balance.ts";

/** How to run balance as nobody: a command prefix and the environment it needs. */
export interface Nobody {
  /** `setpriv … -- balance`: the arguments follow. */
  command: string[];
  /** A home (and Deno cache) of nobody's; no control directory of the caller's. */
  env: Record<string, string>;
  /** A directory anyone may write in (sticky, like /tmp). */
  home: string;
  cleanup(): void;
}

/**
 * Prepares running balance as nobody, or says why it cannot be done (not
 * root; nobody cannot run this checkout's runtime). nobody gets its own
 * copy of a binary under test, since the caller's may not be readable.
 *
 * @example
 * ```ts
 * const nobody = await prepareNobody();
 * test("…", { skip: typeof nobody === "string" && nobody }, async () => { ... });
 * ```
 */
export async function prepareNobody(): Promise<Nobody | string> {
  if (process.getuid?.() !== 0) return "needs root to run a command as user nobody";
  const home = mkdtempSync(join(tmpdir(), "balance-nobody-"));
  chmodSync(home, 0o1777);
  let program = balanceCommand();
  if (process.env.BALANCE_BIN) {
    copyFileSync(process.env.BALANCE_BIN, join(home, "balance"));
    chmodSync(join(home, "balance"), 0o755);
    program = [join(home, "balance")];
  }
  const nobody: Nobody = {
    command: ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", ...program],
    env: { DENO_DIR: home, HOME: home, XDG_RUNTIME_DIR: "", BALANCE_CONTROL_DIR: "" },
    home,
    cleanup: () => rmSync(home, { recursive: true, force: true }),
  };
  const probe = await runBalance(["--version"], { command: nobody.command, env: nobody.env, cwd: home });
  if (probe.code === 0) return nobody;
  nobody.cleanup();
  return `user nobody cannot run ${program.join(" ")} from this checkout`;
}
