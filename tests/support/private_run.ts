/**
 * A private `/run`, for tests of what balance does in `/run/balance` (root's
 * control directory, and the parent of the systemd instances'), which must
 * never touch the machine's: a mount namespace in which a temporary
 * directory is mounted on `/run`. Commands run inside it through `nsenter`;
 * the test sees the same files in {@link PrivateRun.dir}.
 *
 * @module
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { onTimeout } from "./test.ts";
import { until } from "./wait.ts";

/** A mount namespace whose `/run` is {@link PrivateRun.dir}. */
export interface PrivateRun {
  /** What is `/run` inside, seen from outside. */
  dir: string;
  /** `nsenter … --`: a command follows, run inside. */
  command: string[];
  cleanup(): void;
}

/**
 * Makes a {@link PrivateRun}, or says why it cannot be done (not root, no
 * `unshare`/`nsenter`, mounts not allowed here).
 *
 * @example
 * ```ts
 * const run = await privateRun();
 * if (typeof run !== "string") runBalance(args, { command: [...run.command, ...balanceCommand()] });
 * ```
 */
export async function privateRun(): Promise<PrivateRun | string> {
  if (process.getuid?.() !== 0) return "needs root (a mount namespace)";
  const dir = mkdtempSync(join(tmpdir(), "balance-run-"));
  // As the machine's /run: other users (the unit's) go through it.
  chmodSync(dir, 0o755);
  let holder: ChildProcess | undefined;
  const cleanup = () => {
    if (holder?.exitCode === null && holder.signalCode === null) holder.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  onTimeout(cleanup);
  const script = `mount --bind "$0" /run && exec sleep 600`;
  try {
    holder = spawn("unshare", ["--mount", "--propagation", "private", "--", "sh", "-c", script, dir], {
      stdio: "ignore",
    });
    holder.on("error", () => {});
    const pid = holder.pid!;
    // Ready once the mount is made, in the holder's own namespace.
    await until(() => holder!.exitCode === null && mountsRun(pid), Boolean, "the private /run to be mounted", {
      ms: 5000,
    });
    const command = ["nsenter", `--mount=/proc/${pid}/ns/mnt`, "--"];
    if (spawnSync(command[0], [...command.slice(1), "true"]).status !== 0) throw new Error("nsenter failed");
    return { dir, command, cleanup };
  } catch (err) {
    cleanup();
    return `no private /run here: ${(err as Error).message}`;
  }
}

function mountsRun(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/mountinfo`, "utf8").split("\n").some((line) => line.split(" ")[4] === "/run");
  } catch {
    return false;
  }
}
