/**
 * Real TLS software as test fixtures for `--sni`: self-signed certificates
 * made by `openssl req` at test time, `openssl s_server -WWW` backends that
 * serve a file naming them, and the clients (`curl`, `openssl s_client`) run
 * to completion; plus the ClientHello a real client sends, captured on a
 * plain listener, and the record layer taken apart and put back together
 * (to grow, split or break a real hello without writing one by hand).
 *
 * @module
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Daemon, startDaemon } from "./daemon.ts";
import { findProgram } from "./netns.ts";
import { onTimeout } from "./test.ts";
import { within } from "./wait.ts";

/** Where `openssl` is, when it is installed. */
export const OPENSSL = findProgram("openssl");
/** Where `curl` is, when it is installed. */
export const CURL = findProgram("curl");

/** Why TLS tests cannot run here, or false when they can. */
export const tlsUnavailable: string | false = !OPENSSL
  ? "openssl is not installed"
  : !CURL
  ? "curl is not installed"
  : false;

/** A program that ran to its end (or was killed at its limit). */
export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `program args…` to completion with `input` on its standard input
 * (closed at once without), killing it after `timeoutMs` (default 20 s): its
 * exit code and output.
 *
 * @example
 * ```ts
 * const r = await run(CURL!, ["-sk", url]);
 * ```
 */
export function run(program: string, args: string[], { input = "", timeoutMs = 20_000 } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: ["pipe", "pipe", "pipe"] });
    const kill = () => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL");
    onTimeout(kill);
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    child.stdin!.on("error", () => {});
    child.stdin!.end(input);
    const timer = setTimeout(() => {
      stderr += `\n[the test killed ${program} after ${timeoutMs / 1000} s]\n`;
      kill();
    }, timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A certificate and its key, PEM. */
export interface Certificate {
  cert: string;
  key: string;
}

const certificates = new Map<string, Promise<Certificate>>();

/**
 * A self-signed certificate for `name` (CN and subjectAltName DNS:name, one
 * day), made once per test process with
 * `openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=NAME -addext subjectAltName=DNS:NAME -days 1`.
 *
 * @example
 * ```ts
 * const { cert, key } = await certificate("a.test");
 * ```
 */
export function certificate(name: string): Promise<Certificate> {
  let made = certificates.get(name);
  if (!made) {
    made = (async () => {
      const dir = mkdtempSync(join(tmpdir(), "balance-test-cert-"));
      try {
        const r = await run(OPENSSL!, [
          ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${name}`],
          ...["-addext", `subjectAltName=DNS:${name}`, "-days", "1"],
          ...["-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")],
        ], { timeoutMs: 30_000 });
        if (r.code !== 0) throw new Error(`openssl req for ${name} exited ${r.code}:\n${r.stderr}`);
        return { cert: readFileSync(join(dir, "cert.pem"), "utf8"), key: readFileSync(join(dir, "key.pem"), "utf8") };
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    })();
    // A failure is not kept: the next test tries again.
    made.catch(() => certificates.delete(name));
    certificates.set(name, made);
  }
  return made;
}

/** An `openssl s_server -WWW` backend: its daemon (port, stop) and the name its `id.txt` holds. */
export interface TlsBackend extends Daemon {
  id: string;
  /** The certificate's name (CN). */
  certName: string;
}

/**
 * Starts `openssl s_server -accept 127.0.0.1:PORT -cert … -key … -WWW -quiet`
 * on a free port in a private directory holding `id.txt` (`ID\n`), the file
 * it serves to `GET /id.txt`, and resolves once that process listens. Stop
 * it with `stop()` (in a finally).
 *
 * @example
 * ```ts
 * const a = await startTlsBackend("a", "a.test");
 * try { ... } finally { await a.stop(); }
 * ```
 */
export async function startTlsBackend(id: string, certName: string): Promise<TlsBackend> {
  const { cert, key } = await certificate(certName);
  let port = 0;
  const daemon = await startDaemon({
    name: `s_server-${id}`,
    program: OPENSSL!,
    files: (_dir, p) => {
      port = p;
      return { "id.txt": `${id}\n`, "cert.pem": cert, "key.pem": key };
    },
    // -WWW serves files from its working directory, which startDaemon makes this one.
    args: () => [
      ...["s_server", "-accept", `127.0.0.1:${port}`, "-cert", "cert.pem", "-key", "key.pem"],
      "-WWW",
      "-quiet",
    ],
  });
  return { ...daemon, id, certName };
}

/**
 * Starts one {@link startTlsBackend} per `[id, certName]` (all at once), runs
 * `fn` with them in order, then stops them all, whatever happened.
 *
 * @example
 * ```ts
 * await withTlsBackends([["a", "a.test"], ["d", "default.test"]], async ([a, d]) => { ... });
 * ```
 */
export async function withTlsBackends<T>(
  specs: readonly (readonly [id: string, certName: string])[],
  fn: (backends: TlsBackend[]) => Promise<T>,
): Promise<T> {
  const started = await Promise.allSettled(specs.map(([id, certName]) => startTlsBackend(id, certName)));
  const backends = started.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
  try {
    const failed = started.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    return await fn(backends);
  } finally {
    await Promise.all(backends.map((b) => b.stop()));
  }
}

/** What a TLS client got through: its exit code, the body it read, the certificate's subject, all it printed. */
export interface Fetched {
  code: number | null;
  body: string;
  /** The server certificate's subject CN, as the client printed it; undefined if it printed none. */
  subject: string | undefined;
  output: string;
}

/**
 * `curl -sk -v --resolve NAME:PORT:127.0.0.1 https://NAME:PORT/PATH`: the
 * body, and the subject CN of the certificate the server sent (from `-v`).
 *
 * @example
 * ```ts
 * const r = await curlGet("a.test", port); // r.body "a\n", r.subject "a.test"
 * ```
 */
export async function curlGet(name: string, port: number, path = "/id.txt", extra: string[] = []): Promise<Fetched> {
  const r = await run(CURL!, [
    ...["-sk", "-v", "--max-time", "15", "--resolve", `${name}:${port}:127.0.0.1`],
    ...extra,
    `https://${name}:${port}${path}`,
  ]);
  const subject = /^\*\s+subject: .*?CN ?= ?([^,;\s]+)/m.exec(r.stderr)?.[1];
  return { code: r.code, body: r.stdout, subject, output: r.stderr };
}

/**
 * `openssl s_client -connect 127.0.0.1:PORT -servername NAME` (or
 * `-noservername` when `name` is undefined) `-ign_eof -brief`, sending
 * `GET /id.txt HTTP/1.0`: the body after the headers (`-brief` leaves only
 * the response on stdout) and the subject CN of the server's certificate
 * (`Peer certificate: CN = NAME` on stderr). `extra` goes on the command
 * line as well.
 *
 * @example
 * ```ts
 * const r = await sClientGet("A.Test.", port); // r.subject "a.test"
 * ```
 */
export async function sClientGet(name: string | undefined, port: number, extra: string[] = []): Promise<Fetched> {
  const r = await run(OPENSSL!, [
    ...["s_client", "-connect", `127.0.0.1:${port}`],
    ...(name === undefined ? ["-noservername"] : ["-servername", name]),
    ...["-ign_eof", "-brief", ...extra],
  ], { input: "GET /id.txt HTTP/1.0\r\n\r\n" });
  const subject = /^Peer certificate: .*?CN ?= ?([^,\s]+)/m.exec(r.stderr)?.[1];
  const headersEnd = r.stdout.indexOf("\r\n\r\n");
  const body = r.stdout.startsWith("HTTP/1.0 200") && headersEnd >= 0 ? r.stdout.slice(headersEnd + 4) : "";
  return { code: r.code, body, subject, output: `${r.stdout}\n${r.stderr}` };
}

// ------------------------------------------------------ the record layer

/** One TLS record: its content type, version bytes and fragment. */
export interface TlsRecord {
  type: number;
  version: [number, number];
  fragment: Buffer;
}

/** The records `bytes` holds, whole ones only, and the bytes after the last whole one. */
export function records(bytes: Buffer): { records: TlsRecord[]; rest: Buffer } {
  const out: TlsRecord[] = [];
  let at = 0;
  while (at + 5 <= bytes.length) {
    const size = bytes.readUInt16BE(at + 3);
    if (at + 5 + size > bytes.length) break;
    out.push({
      type: bytes[at],
      version: [bytes[at + 1], bytes[at + 2]],
      fragment: bytes.subarray(at + 5, at + 5 + size),
    });
    at += 5 + size;
  }
  return { records: out, rest: bytes.subarray(at) };
}

/** `message` (a handshake message) as TLS 1.0 handshake records of at most `maxFragment` bytes each. */
export function frame(message: Buffer, maxFragment = 16384): Buffer {
  const out: Buffer[] = [];
  for (let at = 0; at < message.length; at += maxFragment) {
    const fragment = message.subarray(at, at + maxFragment);
    const header = Buffer.from([0x16, 0x03, 0x01, fragment.length >> 8, fragment.length & 0xff]);
    out.push(header, fragment);
  }
  return Buffer.concat(out);
}

/**
 * The handshake message the records at the start of `bytes` carry, once
 * whole (its 4-byte header says how long it is), else undefined; and how
 * many bytes of `bytes` its records took.
 */
export function handshakeMessage(bytes: Buffer): { message: Buffer; used: number } | undefined {
  const parts: Buffer[] = [];
  let have = 0;
  let at = 0;
  while (at + 5 <= bytes.length && bytes[at] === 0x16) {
    const size = bytes.readUInt16BE(at + 3);
    if (at + 5 + size > bytes.length) return undefined;
    parts.push(bytes.subarray(at + 5, at + 5 + size));
    have += size;
    at += 5 + size;
    if (have >= 4) {
      const joined = Buffer.concat(parts);
      const need = 4 + joined.readUIntBE(1, 3);
      if (have >= need) return { message: joined.subarray(0, need), used: at };
    }
  }
  return undefined;
}

/**
 * `hello` (whole records holding one ClientHello) with a padding extension
 * (type 21, RFC 7685) of zeros appended to its extensions, sized so that the
 * handshake message is `messageLength` bytes, every enclosing length fixed
 * up, framed again in records of at most `maxFragment` bytes.
 */
export function padded(hello: Buffer, messageLength: number, maxFragment = 16384): Buffer {
  const m = handshakeMessage(hello)!.message;
  // Handshake header, version, random, session id, cipher suites, compressions: then the extensions' length.
  let at = 4 + 2 + 32;
  at += 1 + m[at];
  at += 2 + m.readUInt16BE(at);
  at += 1 + m[at];
  const extensionsAt = at;
  const extensionsLength = m.readUInt16BE(extensionsAt);
  if (extensionsAt + 2 + extensionsLength !== m.length) {
    throw new Error("padded: the hello has bytes after its extensions");
  }
  const padding = messageLength - m.length - 4;
  if (padding < 0) throw new Error(`padded: the hello is already ${m.length} bytes`);
  const grown = Buffer.concat([m, Buffer.from([0x00, 0x15, padding >> 8, padding & 0xff]), Buffer.alloc(padding)]);
  grown.writeUIntBE(grown.length - 4, 1, 3);
  grown.writeUInt16BE(extensionsLength + 4 + padding, extensionsAt);
  return frame(grown, maxFragment);
}

/**
 * The ClientHello `openssl s_client -connect 127.0.0.1:PORT ARGS…` sends:
 * a plain listener of this process takes its first bytes until they hold a
 * whole handshake message, then hangs up (the client fails; nothing else
 * follows the hello). The bytes come back exactly as they arrived.
 *
 * @example
 * ```ts
 * const hello = await captureHello(["-servername", "a.test"]);
 * ```
 */
export async function captureHello(args: string[]): Promise<Buffer> {
  let got = Buffer.alloc(0);
  let whole!: (b: Buffer) => void;
  const captured = new Promise<Buffer>((r) => (whole = r));
  const server = net.createServer((s) => {
    s.on("error", () => {});
    s.on("data", (d) => {
      got = Buffer.concat([got, d]);
      const hello = handshakeMessage(got);
      if (hello) {
        whole(got.subarray(0, hello.used));
        s.destroy();
      }
    });
  });
  onTimeout(() => server.close());
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const client = run(OPENSSL!, ["s_client", "-connect", `127.0.0.1:${port}`, ...args], { timeoutMs: 15_000 });
  try {
    return await within(
      captured,
      15_000,
      () => `a ClientHello from openssl s_client ${args.join(" ")}; got ${got.length} bytes`,
    );
  } finally {
    server.close();
    await client;
  }
}
