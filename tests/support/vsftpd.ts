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

/** One vsftpd's files: its configuration, its root, what `pub/` holds. */
export interface VsftpdFiles {
  /** The address it listens on. */
  address: string;
  /** Its configuration file. */
  conf: string;
  /** Its root: `pub/` to download from, `upload/` to upload to. */
  root: string;
  /** `pub/<name>` holds these bytes: `id.txt` the server's name, `data.bin` random bytes. */
  files: Record<string, Buffer>;
}

/** What a vsftpd serves and where. */
export interface VsftpdOptions {
  /** Bytes of `pub/data.bin` (default 256 KiB). */
  size?: number;
  /** Its passive ports (default 30000-30999). */
  pasv?: [number, number];
}

/**
 * Writes the configuration and root of a vsftpd named `name` listening on
 * `address`:`port` into `dir`.
 *
 * @example
 * ```ts
 * const s1 = prepareVsftpd(lab.dir, "a", "198.18.11.2", 21);
 * lab.spawn("s1", [VSFTPD!, s1.conf]);
 * ```
 */
export function prepareVsftpd(
  dir: string,
  name: string,
  address: string,
  port: number,
  { size = 256 * 1024, pasv = [30000, 30999] }: VsftpdOptions = {},
): VsftpdFiles {
  const files = { "id.txt": Buffer.from(`${name}\n`), "data.bin": randomBytes(size) };
  mkdirSync("/var/run/vsftpd/empty", { recursive: true });
  const root = join(dir, `root-${name}`);
  mkdirSync(join(root, "pub"), { recursive: true });
  mkdirSync(join(root, "upload"));
  // vsftpd refuses a root its anonymous user may write; only upload/ is.
  chownSync(join(root, "upload"), ftpUid(), -1);
  for (const [file, bytes] of Object.entries(files)) writeFileSync(join(root, "pub", file), bytes);
  const conf = join(dir, `vsftpd-${name}.conf`);
  writeFileSync(
    conf,
    [
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
      "",
    ].join("\n"),
  );
  return { address, conf, root, files };
}

/** A running vsftpd on loopback and its files. */
export type Vsftpd = Daemon & VsftpdFiles;

/**
 * Starts vsftpd on `address` (a free port) with {@link prepareVsftpd}'s
 * files.
 *
 * @example
 * ```ts
 * const ftp = await startVsftpd("a", "127.0.0.2");
 * try { ... } finally { await ftp.stop(); }
 * ```
 */
export async function startVsftpd(name: string, address: string, options: VsftpdOptions = {}): Promise<Vsftpd> {
  let prepared: VsftpdFiles | undefined;
  const daemon = await startDaemon({
    name: `vsftpd-${name}`,
    program: VSFTPD!,
    files(dir, port) {
      prepared = prepareVsftpd(dir, name, address, port, options);
      return {};
    },
    args: () => [prepared!.conf],
  });
  return { ...daemon, ...prepared! };
}

function ftpUid(): number {
  return Number(execFileSync("id", ["-u", "ftp"], { encoding: "utf8" }).trim());
}

/**
 * An lftp script (its `-e` text) of ten downloads of `pub/data.bin` into
 * `dir` as `NAME-i.bin` and ten uploads of `upload` as `upload/NAME-i.bin`,
 * all on one control connection, passive (`on`) or active (`off`), then `bye`.
 *
 * @example
 * ```ts
 * await run("lftp", ["-p", String(port), "-e", lftpTransfers("on", dir, "on", join(dir, "on-0.bin")), "127.0.0.1"]);
 * ```
 */
export function lftpTransfers(passive: string, dir: string, name: string, upload: string): string {
  const gets = Array.from({ length: 10 }, (_, i) => `get pub/data.bin -o ${join(dir, `${name}-${i}.bin`)}`);
  const puts = Array.from({ length: 10 }, (_, i) => `put ${upload} -o upload/${name}-${i}.bin`);
  return [`set ftp:passive-mode ${passive}`, "set net:max-retries 1", "set net:timeout 10", ...gets, ...puts, "bye"]
    .join("; ");
}
