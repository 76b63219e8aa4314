/**
 * Stock vsftpd as an FTP server behind balance: anonymous downloads from
 * `pub/`, uploads to `upload/`, from a private configuration and root in a
 * temporary directory, in the foreground, stopped by PID.
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import { chownSync, mkdirSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import process from "node:process";
import { type Daemon, startDaemon } from "./daemon.ts";
import { findProgram } from "./netns.ts";

/** The vsftpd binary, if installed. */
export const VSFTPD = findProgram("vsftpd");

/**
 * Why the vsftpd tests cannot run here, or false. vsftpd serves anonymous
 * users only when started as root (it drops to the `ftp` user itself).
 *
 * @example
 * ```ts
 * test("ftp: ...", { skip: vsftpdUnavailable() }, async () => { ... });
 * ```
 */
export function vsftpdUnavailable(): string | false {
  if (!VSFTPD) return "vsftpd is not installed (./scripts/test-deps installs it)";
  if (!findProgram("curl") || !findProgram("lftp")) return "curl and lftp are needed (./scripts/test-deps)";
  if (process.getuid?.() !== 0) return "vsftpd's anonymous FTP needs root";
  return false;
}

/** A running vsftpd and its files. */
export interface Vsftpd extends Daemon {
  /** The address it listens on. */
  address: string;
  /** Its root: `pub/` to download from, `upload/` to upload to. */
  root: string;
  /** `pub/<name>` holds these bytes. */
  files: Record<string, Buffer>;
}

/**
 * Starts vsftpd on `address` (a free port) with `pub/id.txt` holding `name`
 * and `pub/data.bin` holding `size` random bytes; passive ports in `pasv`.
 *
 * @example
 * ```ts
 * const ftp = await startVsftpd("a", "127.0.0.2");
 * try { ... } finally { await ftp.stop(); }
 * ```
 */
export async function startVsftpd(
  name: string,
  address: string,
  { size = 256 * 1024, pasv = [30000, 30999], extra = "" }: { size?: number; pasv?: number[]; extra?: string } = {},
): Promise<Vsftpd> {
  const files = { "id.txt": Buffer.from(`${name}\n`), "data.bin": randomBytes(size) };
  mkdirSync("/var/run/vsftpd/empty", { recursive: true });
  let root = "";
  const daemon = await startDaemon({
    name: `vsftpd-${name}`,
    program: VSFTPD!,
    files(dir, port) {
      root = join(dir, "root");
      mkdirSync(join(root, "pub"), { recursive: true });
      mkdirSync(join(root, "upload"));
      // vsftpd refuses a root its anonymous user may write; only upload/ is.
      chownSync(join(root, "upload"), ftpUid(), -1);
      for (const [file, bytes] of Object.entries(files)) writeFileSync(join(root, "pub", file), bytes);
      return {
        "vsftpd.conf": [
          "listen=YES",
          `listen_address=${address}`,
          `listen_port=${port}`,
          "background=NO",
          "anonymous_enable=YES",
          "local_enable=NO",
          `anon_root=${root}`,
          "no_anon_password=YES",
          "write_enable=YES",
          "anon_upload_enable=YES",
          "anon_umask=022",
          "ftp_username=ftp",
          "pasv_enable=YES",
          `pasv_min_port=${pasv[0]}`,
          `pasv_max_port=${pasv[1]}`,
          "port_enable=YES",
          "connect_from_port_20=NO",
          "seccomp_sandbox=NO",
          "xferlog_enable=NO",
          "secure_chroot_dir=/var/run/vsftpd/empty",
          extra,
          "",
        ].join("\n"),
      };
    },
    args: (dir) => [join(dir, "vsftpd.conf")],
  });
  return { ...daemon, address, root, files };
}

function ftpUid(): number {
  return Number(execFileSync("id", ["-u", "ftp"], { encoding: "utf8" }).trim());
}
