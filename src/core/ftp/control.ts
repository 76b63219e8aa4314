/**
 * `--ftp`: one control connection's rewriting. Commands and replies are
 * read line by line; only the lines that name a data address (`PORT`,
 * `EPRT`, `227`, `229`) change, and every other byte passes as it came.
 *
 * @module
 */
import { concatBytes } from "../util/bytes.ts";
import {
  findEpsvPort,
  findSixNumbers,
  formatEprt,
  formatSixNumbers,
  type HostPort,
  parseEprt,
  sameHost,
} from "./addresses.ts";

/**
 * The longest line balance waits for (RFC 959 names no limit; commands and
 * the replies rewritten are far shorter). A longer one passes unchanged and
 * ends the rewriting of its connection.
 */
export const MAX_LINE = 512;

/**
 * What a control connection's rewriting asks of its session: the data
 * listeners, and who is who.
 *
 * @example
 * ```ts
 * const host: FtpHost = { clientAddress: "10.0.0.7", serverAddress: "10.0.1.2", openPassive, openActive, warn };
 * ```
 */
export interface FtpHost {
  /** The control connection's client: the only host `PORT`/`EPRT` may name. */
  readonly clientAddress: string;
  /** The channel's address: where a `229` reply's port is. */
  readonly serverAddress: string;
  /**
   * The channel announced `server` in a `227`/`229` reply: a data listener
   * for the client, and the end the client is told; undefined when none
   * could be opened.
   */
  openPassive(server: HostPort): HostPort | undefined;
  /**
   * The client named `client` (its own address) in `PORT`/`EPRT`: a data
   * listener for the channel, and the end the channel is told; undefined
   * when none could be opened.
   */
  openActive(client: HostPort): HostPort | undefined;
  /** A problem worth a log line; `key` throttles its repeats. */
  warn(message: string, key: string): void;
}

/** A reply balance sends in place of the channel's, for a command it did not pass on. */
interface Substitute {
  /** Final replies still to pass before the one replaced. */
  skip: number;
  line: string;
}

const CANNOT_OPEN = "425 Can't open data connection.\r\n";

/**
 * The rewriting of one FTP control connection, both directions. Each chunk
 * goes in as read and comes out as it is to be written: lines that name a
 * data address rewritten, an incomplete line held until its end (at most
 * {@link MAX_LINE} bytes), everything else the same bytes.
 *
 * A command balance refuses (an FTP bounce) is sent on as `NOOP`, and the
 * channel's reply to that `NOOP` is replaced by the refusal: the client gets
 * it in its place among the replies, even when it pipelines commands.
 *
 * `AUTH` that the channel accepts makes the connection opaque from there
 * (TLS follows), as does a line longer than {@link MAX_LINE}.
 *
 * @example
 * ```ts
 * const control = new FtpControl(host);
 * const toServer = control.fromClient(chunkFromClient);
 * const toClient = control.fromServer(chunkFromServer);
 * ```
 */
export class FtpControl {
  private clientHeld: Uint8Array | undefined = undefined;
  private serverHeld: Uint8Array | undefined = undefined;
  /** No more rewriting: TLS, or a line too long. */
  private opaque = false;
  /** The reply code of the multi-line reply being read; its inner lines are not replies. */
  private multiLine: string | undefined = undefined;
  /** The first final reply is the greeting, which answers no command. */
  private greeted = false;
  /** Commands sent on whose final reply has not come. */
  private awaiting = 0;
  private authSent = false;
  private readonly substitutes: Substitute[] = [];

  constructor(private readonly host: FtpHost) {}

  /** Whether rewriting has ended (TLS, or a line too long): what remains passes as it is. */
  get ended(): boolean {
    return this.opaque;
  }

  /** Client bytes, as read: the bytes to write to the channel. */
  fromClient(chunk: Uint8Array): Uint8Array {
    const held = this.clientHeld;
    this.clientHeld = undefined;
    return this.lines(held ? concatBytes(held, chunk) : chunk, true);
  }

  /** Channel bytes, as read: the bytes to write to the client. */
  fromServer(chunk: Uint8Array): Uint8Array {
    const held = this.serverHeld;
    this.serverHeld = undefined;
    return this.lines(held ? concatBytes(held, chunk) : chunk, false);
  }

  // The whole lines of `data` through `command` or `reply`; a partial line
  // at its end is held (copied: `data` may be a reused read buffer).
  private lines(data: Uint8Array, fromClient: boolean): Uint8Array {
    if (this.opaque) return data;
    let parts: Uint8Array[] | undefined;
    let passFrom = 0;
    let lineStart = 0;
    while (!this.opaque) {
      const lf = data.indexOf(10, lineStart);
      if (lf < 0) break;
      const line = data.subarray(lineStart, lf + 1);
      const replaced = line.length > MAX_LINE
        ? this.tooLong(fromClient)
        : fromClient
        ? this.command(line)
        : this.reply(line);
      if (replaced !== undefined) {
        (parts ??= []).push(data.subarray(passFrom, lineStart), replaced);
        passFrom = lf + 1;
      }
      lineStart = lf + 1;
    }
    if (!this.opaque && data.length - lineStart > MAX_LINE) this.tooLong(fromClient);
    const end = this.opaque ? data.length : lineStart;
    if (end < data.length) {
      const held = data.slice(end);
      if (fromClient) this.clientHeld = held;
      else this.serverHeld = held;
    }
    if (!parts) return end === data.length ? data : data.subarray(0, end);
    parts.push(data.subarray(passFrom, end));
    return joined(parts);
  }

  private tooLong(fromClient: boolean): undefined {
    this.opaque = true;
    this.host.warn(
      `FTP ${
        fromClient ? "command" : "reply"
      } line longer than ${MAX_LINE} bytes on the control connection of ${this.host.clientAddress}: rewriting ended for this connection, its data connections are not followed`,
      "FTP line too long",
    );
    return undefined;
  }

  // One command line; what to send instead, or undefined for the line itself.
  private command(line: Uint8Array): Uint8Array | undefined {
    this.awaiting++;
    const text = latin1(line);
    const space = text.indexOf(" ");
    const verb = (space < 0 ? text.trimEnd() : text.slice(0, space)).toUpperCase();
    if (verb === "AUTH") this.authSent = true;
    if (verb !== "PORT" && verb !== "EPRT") return undefined;
    const arg = text.slice(space + 1).trimEnd();
    const client = verb === "PORT" ? findSixNumbers(arg)?.end : parseEprt(arg);
    // Malformed: the channel answers it as it would.
    if (space < 0 || !client) return undefined;
    if (!sameHost(client.address, this.host.clientAddress)) {
      this.host.warn(
        `FTP bounce refused: ${this.host.clientAddress} sent ${verb} naming ${client.address} port ${client.port}`,
        "FTP bounce refused",
      );
      return this.instead(`500 Illegal ${verb} command: only the client's own address may be named.\r\n`);
    }
    const listening = this.host.openActive(client);
    if (!listening) return this.instead(CANNOT_OPEN);
    const six = verb === "PORT" ? formatSixNumbers(listening) : undefined;
    return bytesOf(six ? `PORT ${six}\r\n` : `EPRT ${formatEprt(listening)}\r\n`);
  }

  // A NOOP goes on in place of the command; its reply is replaced by `line`.
  private instead(line: string): Uint8Array {
    this.substitutes.push({ skip: this.awaiting - 1, line });
    return bytesOf("NOOP\r\n");
  }

  // One reply line; what to send instead, or undefined for the line itself.
  private reply(line: Uint8Array): Uint8Array | undefined {
    const code = replyCode(line);
    if (this.multiLine !== undefined) {
      if (code !== this.multiLine || line[3] !== 0x20) return undefined;
      this.multiLine = undefined;
    } else if (code === undefined) {
      return undefined;
    } else if (line[3] === 0x2d) {
      this.multiLine = code;
      return undefined;
    }
    // A final reply (or a preliminary 1xx, which answers nothing yet).
    if (code![0] === "1") return undefined;
    return this.finalReply(code!, line);
  }

  private finalReply(code: string, line: Uint8Array): Uint8Array | undefined {
    if (!this.greeted) {
      this.greeted = true;
      return undefined;
    }
    if (this.awaiting > 0) this.awaiting--;
    const head = this.substitutes[0];
    const substitute = head?.skip === 0 ? this.substitutes.shift()!.line : undefined;
    for (const s of this.substitutes) s.skip--;
    if (substitute !== undefined) return bytesOf(substitute);
    if (this.authSent) {
      this.authSent = false;
      if (code[0] === "2" || code[0] === "3") {
        this.opaque = true;
        this.host.warn(
          `FTP control connection of ${this.host.clientAddress} switched to TLS (AUTH): relayed as it is, its data connections cannot be followed`,
          "FTP AUTH",
        );
        return undefined;
      }
    }
    if (code === "227") return this.passive227(line);
    if (code === "229") return this.passive229(line);
    return undefined;
  }

  private passive227(line: Uint8Array): Uint8Array | undefined {
    const text = latin1(line);
    const found = findSixNumbers(text);
    if (!found) return undefined;
    const listening = this.host.openPassive(found.end);
    const six = listening && formatSixNumbers(listening);
    if (!six) return bytesOf(CANNOT_OPEN);
    return bytesOf(text.slice(0, found.index) + six + text.slice(found.index + found.length));
  }

  private passive229(line: Uint8Array): Uint8Array | undefined {
    const text = latin1(line);
    const found = findEpsvPort(text);
    if (!found) return undefined;
    const listening = this.host.openPassive({ address: this.host.serverAddress, port: found.port });
    if (!listening) return bytesOf(CANNOT_OPEN);
    return bytesOf(text.slice(0, found.index) + listening.port + text.slice(found.index + found.length));
  }
}

// `NNN` of a line that begins with three digits and a space or a hyphen.
function replyCode(line: Uint8Array): string | undefined {
  if (line.length < 4 || (line[3] !== 0x20 && line[3] !== 0x2d)) return undefined;
  for (let i = 0; i < 3; i++) if (line[i] < 0x30 || line[i] > 0x39) return undefined;
  return String.fromCharCode(line[0], line[1], line[2]);
}

// Bytes as one char each: a line's bytes come back exactly, whatever they are.
function latin1(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes);
}

function bytesOf(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

function joined(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
