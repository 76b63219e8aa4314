import { spawn } from "node:child_process";
import process from "node:process";
import { ExitError } from "../core/util/exit_error.ts";
import { EX_OK, EX_SOFTWARE } from "../core/util/sysexits.ts";
import { isAnswering } from "../control/server.ts";
import { underSystemd } from "../app/observe/log.ts";

/** Set in the environment of the detached copy. */
export const DETACHED_ENV = "BALANCE_DETACHED";

const READY_TIMEOUT_MS = 30_000;

/**
 * Background mode. JavaScript cannot fork, so balance starts itself again,
 * detached (a new session, no terminal), and returns only once that copy
 * serves its control channel: exit 0 means "running". If the copy fails
 * first (address in use, bad host, a log file it cannot open), its one-line
 * error is passed through to this terminal with its exit code, alone. Once
 * it serves, `notice` (its log is discarded: `discardedLog` in log.ts) is
 * printed. Under systemd the copy keeps this stderr, the journal.
 *
 * @example
 * ```ts
 * return await startInBackground(["deno", "run", "-A", "src/main.ts"], argv, controlSocket, undefined);
 * ```
 */
export async function startInBackground(
  self: string[],
  argv: string[],
  control: string,
  notice: string | undefined,
): Promise<number> {
  const [cmd, ...pre] = self;
  const child = spawn(cmd, [...pre, ...argv], {
    detached: true,
    stdio: ["ignore", "ignore", underSystemd() ? "inherit" : "pipe"],
    env: { ...process.env, [DETACHED_ENV]: "1" },
  });
  let errors = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (d: string) => (errors += d));
  const exited = new Promise<number>((resolve) => child.on("exit", (code) => resolve(code ?? EX_SOFTWARE)));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const outcome = await Promise.race([
      exited.then((code) => ({ code })),
      new Promise<{ code?: undefined }>((r) => setTimeout(() => r({}), 50)),
    ]);
    if (outcome.code !== undefined) {
      process.stderr.write(errors || `balance: the background balancer exited with ${outcome.code}\n`);
      return outcome.code === EX_OK ? EX_SOFTWARE : outcome.code;
    }
    if (await isAnswering(control)) break;
    if (Date.now() > deadline) {
      child.kill();
      throw new ExitError("the background balancer did not start within 30 s", EX_SOFTWARE);
    }
  }
  process.stderr.write(errors + (notice ? `balance: ${notice}\n` : ""));
  child.stderr?.destroy();
  child.unref();
  return EX_OK;
}
