/**
 * `--log-connections`: the record of one proxied connection once it has
 * ended, and its log line, in the spirit of HAProxy's `option tcplog`.
 * Adapters fill the record; the log writes the line.
 *
 * @module
 */
import { formatHostPort } from "../model/balancer.ts";
import { shown } from "../util/shown.ts";

/**
 * How a connection ended. For a connection that ended by FINs, the side that
 * sent the first one; otherwise what tore it down: a reset (or a failed
 * write) from one side, the `-T` idle timeout, or the end of the grace
 * period (`shutdown`). `connect-failed`: every channel tried refused or timed
 * out; `no-channel`: none was usable, none was tried; `proxy-refused`: with
 * `--accept-proxy`, the client sent no valid PROXY header and reached no channel;
 * `denied`: an `--allow`/`--deny` rule or `--proxy-from` refused the client;
 * `limited`: `--max-per-client` or `--rate-per-client` did; `sni-refused`:
 * with `--sni`, a TLS ClientHello malformed, over 16 KiB or not whole within `-t`;
 * `responses`: a UDP session got the `--udp-responses` datagrams it waits for.
 * A UDP session that no datagram crossed for `--udp-timeout` ends as `idle-timeout`,
 * and one whose channel answered with an ICMP port unreachable as `connect-failed`.
 *
 * @example
 * ```ts
 * const reason: EndReason = "client-closed";
 * ```
 */
export type EndReason =
  | "client-closed"
  | "server-closed"
  | "client-reset"
  | "server-reset"
  | "idle-timeout"
  | "connect-failed"
  | "no-channel"
  | "proxy-refused"
  | "denied"
  | "limited"
  | "sni-refused"
  | "responses"
  | "shutdown";

/**
 * One ended connection, as an adapter reports it (plain data: a worker
 * posts it to the main thread as it is).
 *
 * @example
 * ```ts
 * const record: ConnectionRecord = {
 *   clientAddress: "10.0.0.7", clientPort: 53124, channel: "group 0 channel 1 (10.0.0.2:80)",
 *   connectMs: 0.4, durationMs: 12031, sent: 1234, rcvd: 56789, reason: "client-closed",
 * };
 * ```
 */
export interface ConnectionRecord {
  clientAddress: string;
  clientPort: number;
  /** `group G channel N (address:port)`; undefined when no channel was connected. */
  channel?: string;
  /** Milliseconds until connected (failed attempts included); meaningless without a channel. */
  connectMs: number;
  /** Milliseconds from accept to end. */
  durationMs: number;
  /** Bytes from the client to the channel. */
  sent: number;
  /** Bytes from the channel to the client. */
  rcvd: number;
  reason: EndReason;
  /** `--sni`: the server name the client's ClientHello named, if any. */
  serverName?: string;
  /** A UDP session (`--udp`), not a TCP connection. */
  udp?: boolean;
}

/** Longest address text shown as it is; more is cut (see {@link shown}). */
const MAX_SHOWN = 200;

// Printable ASCII without a backslash: what shown() leaves as it is.
const PLAIN = /^[\x20-\x5b\x5d-\x7e]*$/;

// Addresses are nearly always plain: test, and escape only when not.
function safe(text: string): string {
  return text.length <= MAX_SHOWN && PLAIN.test(text) ? text : shown(text, MAX_SHOWN);
}

/**
 * The log line of an ended connection. Every text in it passes through
 * {@link shown}, so nothing can break the line or reach the terminal raw;
 * no byte a client sent is part of a record at all.
 *
 * @example
 * ```ts
 * formatConnectionLine(record);
 * // "connection 10.0.0.7:53124 -> group 0 channel 1 (10.0.0.2:80): connect 0.4 ms, 12.031 s, 1234 bytes sent, 56789 rcvd, client-closed"
 * ```
 */
export function formatConnectionLine(record: ConnectionRecord): string {
  const client = safe(formatHostPort(record.clientAddress, record.clientPort));
  const to = record.channel === undefined
    ? "none:"
    : `${safe(record.channel)}: connect ${record.connectMs.toFixed(1)} ms,`;
  return `connection ${record.udp ? "udp " : ""}${client} -> ${to} ${(record.durationMs / 1000).toFixed(3)} s, ` +
    `${record.sent} bytes sent, ${record.rcvd} rcvd, ${record.reason}` +
    (record.serverName === undefined ? "" : ` sni=${safe(record.serverName)}`);
}

/** How long an ended connection may wait for others to be handed on with it. */
export const BATCH_MS = 50;

/**
 * Collects connection records and hands them on together, at most
 * {@link BATCH_MS} after the first: at thousands of connections a second one
 * log call (or one message from a worker thread) per batch instead of one per
 * connection, and the lines are made while their code is hot.
 *
 * @example
 * ```ts
 * const batch = new ConnectionBatch((records) => records.forEach((r) => log.info(formatConnectionLine(r))));
 * batch.add(record); // ... and before exiting:
 * batch.flush();
 * ```
 */
export class ConnectionBatch {
  #records: ConnectionRecord[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly handOn: (records: ConnectionRecord[]) => void) {}

  add(record: ConnectionRecord): void {
    this.#records.push(record);
    this.#timer ??= setTimeout(() => this.flush(), BATCH_MS);
  }

  /** Hands on what has been collected now (before an exit). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#records.length === 0) return;
    const records = this.#records;
    this.#records = [];
    this.handOn(records);
  }
}
