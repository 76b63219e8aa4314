import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import process from "node:process";
import { ExitError } from "../core/util/exit_error.ts";
import { EX_NOPERM, EX_OSERR } from "../core/util/sysexits.ts";

/**
 * Where a balancer's control channel lives, found from its listen port and
 * `-b` address alone (as balance 3.54 keyed its shared memory):
 *
 * - `BALANCE_CONTROL_DIR` if set (an explicit choice wins);
 * - Windows: a named pipe `\\.\pipe\balance-<user>-<addr>-<port>`;
 * - root: `/run/balance/`, the system's runtime directory;
 * - a user with `XDG_RUNTIME_DIR` (systemd logins): `$XDG_RUNTIME_DIR/balance/`,
 *   private to the user and cleaned at logout;
 * - otherwise `<tmpdir>/balance-<uid>/`.
 *
 * On Unix the socket is `<dir>/<addr>-<port>.sock` with `<addr>` = `any`
 * without `-b`, owner-only, so no other user can reach it; root can, as
 * with any file. See {@link ensureControlDirectory} for the directory.
 *
 * @example
 * ```ts
 * controlAddress(80, undefined); // "/run/user/1000/balance/any-80.sock"
 * ```
 */
export function controlAddress(port: number, bindAddress: string | undefined): string {
  const name = `${bindAddress ?? "any"}-${port}`;
  if (process.platform === "win32") {
    const user = process.env.USERNAME ?? "user";
    return `\\\\.\\pipe\\balance-${user}-${name.replaceAll(":", "_")}`;
  }
  return join(controlDirectory(), `${name}.sock`);
}

/** Where the systemd unit (`balance@NAME`) puts each instance's control socket: `/run/balance/NAME/`. */
export const SYSTEMD_CONTROL_ROOT = "/run/balance";

/**
 * The control channel `-c` and `-i` use: {@link controlAddress}, or for root
 * with no socket there and no `BALANCE_CONTROL_DIR`, the one socket of that
 * name in a systemd instance's directory (`/run/balance/NAME/any-80.sock`),
 * so that `sudo balance -c show 80` reaches `balance@NAME`.
 *
 * @example
 * ```ts
 * findControlAddress(80, undefined); // "/run/balance/web/any-80.sock" for balance@web
 * ```
 */
export function findControlAddress(port: number, bindAddress: string | undefined): string {
  const address = controlAddress(port, bindAddress);
  if (process.platform === "win32" || process.env.BALANCE_CONTROL_DIR || process.getuid?.() !== 0) return address;
  if (existsSync(address)) return address;
  let names: string[] = [];
  try {
    names = readdirSync(SYSTEMD_CONTROL_ROOT);
  } catch { /* no instance directories */ }
  const found = names.map((n) => join(SYSTEMD_CONTROL_ROOT, n, basename(address))).filter((p) => existsSync(p));
  return found.length === 1 ? found[0] : address;
}

/** The directory of {@link controlAddress} on Unix (not created). */
export function controlDirectory(): string {
  const env = process.env;
  if (env.BALANCE_CONTROL_DIR) return env.BALANCE_CONTROL_DIR;
  const uid = process.getuid?.() ?? -1;
  if (uid === 0) return "/run/balance";
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, "balance");
  return join(tmpdir(), `balance-${uid}`);
}

/**
 * Creates the control directory if it is missing, or checks that an existing
 * one is a real directory of ours. A directory in a shared place (`/tmp`)
 * made by someone else is refused, never used.
 *
 * Only a directory balance creates gets a mode: `0700`, except
 * {@link SYSTEMD_CONTROL_ROOT} (`0755`), which holds the directories of the
 * systemd instances, each of another user that must reach its own. An
 * existing directory is used as it is: it may be systemd's
 * (`RuntimeDirectory=`) or the administrator's, and the socket is
 * owner-only by itself.
 *
 * @example
 * ```ts
 * ensureControlDirectory("/tmp/balance-1000");
 * ```
 */
export function ensureControlDirectory(dir: string): void {
  if (process.platform === "win32") return;
  const mode = dir === SYSTEMD_CONTROL_ROOT ? 0o755 : 0o700;
  let created: string | undefined;
  try {
    created = mkdirSync(dir, { recursive: true, mode });
  } catch (err) {
    throw new ExitError(`cannot create control directory ${dir}: ${whyNotCreated(dir, err as Error)}`, EX_OSERR);
  }
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || st.isSymbolicLink()) {
    throw new ExitError(`control directory ${dir} is not a directory`, EX_NOPERM);
  }
  if (uid !== undefined && st.uid !== uid) {
    throw new ExitError(`control directory ${dir} belongs to another user`, EX_NOPERM);
  }
  // The umask may have taken bits that the systemd instances need.
  if (created !== undefined) chmodSync(dir, mode);
}

// In words, not node's `EACCES: permission denied, mkdir '/run/balance/web'`.
const MKDIR_ERRORS: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "permission denied",
  EEXIST: "not a directory",
  ENOTDIR: "not a directory",
  EROFS: "read-only file system",
};

// mkdir names the directory it was asked for, also when a parent refused;
// the deepest one that can be looked at is the one that did.
function whyNotCreated(dir: string, err: Error & { code?: string }): string {
  const why = (err.code && MKDIR_ERRORS[err.code]) ?? err.message;
  for (let path = dir; path !== dirname(path); path = dirname(path)) {
    try {
      const st = statSync(path);
      return `${why} on ${path} (mode ${(st.mode & 0o7777).toString(8).padStart(4, "0")}, owner uid ${st.uid})`;
    } catch { /* not there, or not reachable: its parent is looked at */ }
  }
  return why;
}
