/**
 * `--accept-proxy`: what a listener does with a client's first bytes until
 * they hold a whole PROXY header. The adapter feeds each read to a
 * {@link ProxyHeaderReader}; the codec ({@link parseProxyHeader}) decides.
 *
 * @module
 */
import { formatHostPort } from "../model/balancer.ts";
import { parseProxyHeader, PROXY_V2_MAX_LENGTH, type ProxyEndpoint, type ProxyHeader } from "./proxy_protocol.ts";

/**
 * What a {@link ProxyHeaderReader} makes of the bytes so far: need more, a
 * malformed header (one line for a log), or the header and the client's
 * bytes that came after it in the same reads.
 *
 * @example
 * ```ts
 * const r: ProxyRead = new ProxyHeaderReader().push(chunk);
 * if (r.kind === "header") forward(r.rest);
 * ```
 */
export type ProxyRead =
  | { kind: "incomplete" }
  | ProxyRefusal
  | { kind: "header"; header: ProxyHeader; rest: Uint8Array };

/**
 * Why a client is refused: one line for the log, after `PROXY header
 * refused from ADDR:PORT: `.
 *
 * @example
 * ```ts
 * const refusal: ProxyRefusal = { kind: "error", reason: "PROXY v2: wrong signature" };
 * ```
 */
export interface ProxyRefusal {
  kind: "error";
  reason: string;
}

/**
 * A client that left without sending a byte: a front balancer's connect
 * check (see {@link ProxyHeaderReader.ended}).
 *
 * @example
 * ```ts
 * if (reader.ended().kind === "probe") client.close(); // and nothing else
 * ```
 */
export interface ProxyProbe {
  kind: "probe";
}

const PROBE: ProxyProbe = { kind: "probe" };

/**
 * The refusal of a client that sent no whole header within the connect
 * timeout (`-t`).
 *
 * @example
 * ```ts
 * proxyHeaderTimedOut(5000).reason; // "none within 5s"
 * ```
 */
export function proxyHeaderTimedOut(timeoutMs: number): ProxyRefusal {
  return { kind: "error", reason: `none within ${timeoutMs / 1000}s` };
}

/**
 * Collects one client's reads until they hold a whole PROXY header. Bytes
 * are kept in one buffer that doubles as needed, so a client that dribbles
 * its header costs linear copying, and the codec bounds how much it can make
 * the reader hold: at most {@link PROXY_V2_MAX_LENGTH} bytes, in a buffer
 * never larger.
 *
 * @example
 * ```ts
 * const reader = new ProxyHeaderReader();
 * const r = reader.push(new TextEncoder().encode("PROXY TCP4 10.9.8.7 10.0.0.1 4000 80\r\nGET /"));
 * r.kind === "header" && r.header.src?.address; // "10.9.8.7"; r.rest holds "GET /"
 * ```
 */
export class ProxyHeaderReader {
  private buffer: Uint8Array | undefined;
  private length = 0;

  /**
   * Adds a read. A `header` answer's `rest` may be a view of `chunk`: use
   * it before the caller reads into `chunk` again.
   */
  push(chunk: Uint8Array): ProxyRead {
    const bytes = this.length === 0 ? chunk : this.append(chunk);
    const parsed = parseProxyHeader(bytes);
    if (parsed.kind === "incomplete") {
      if (bytes === chunk) this.append(chunk);
      return parsed;
    }
    this.buffer = undefined;
    this.length = 0;
    if (parsed.kind === "error") return parsed;
    return { kind: "header", header: parsed, rest: bytes.subarray(parsed.length) };
  }

  /** Bytes held while the header is incomplete: 0 means the client has sent nothing yet. */
  get held(): number {
    return this.length;
  }

  /**
   * The client ended (FIN or reset) before its header did: after part of
   * one it is refused; having sent nothing it was a bare connect, a front
   * balancer's health check (`probe`), which is no fault. The session
   * closes a probe and says nothing: it is neither counted nor logged (not
   * even with `--log-connections`), so checks every second bury nothing.
   */
  ended(): ProxyRefusal | ProxyProbe {
    return this.length > 0 ? { kind: "error", reason: `client closed after ${this.length} bytes` } : PROBE;
  }

  private append(chunk: Uint8Array): Uint8Array {
    const needed = this.length + chunk.length;
    if (this.buffer === undefined || needed > this.buffer.length) {
      const grown = new Uint8Array(Math.max(needed, Math.min(2 * (this.buffer?.length ?? 64), PROXY_V2_MAX_LENGTH)));
      if (this.buffer) grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
    }
    this.buffer.set(chunk, this.length);
    this.length = needed;
    return this.buffer.subarray(0, needed);
  }
}

/**
 * A client and the address it connected to.
 *
 * @example
 * ```ts
 * const ends: ProxyEndpoints = { src: { address: "10.9.8.7", port: 4000 }, dst: { address: "10.0.0.1", port: 80 } };
 * ```
 */
export interface ProxyEndpoints {
  src: ProxyEndpoint;
  dst: ProxyEndpoint;
}

/**
 * The client and the address it connected to, as a received header tells
 * them, or the real connection's (`own()`, asked only then: it costs the
 * adapter system calls) when the header is `LOCAL` or `UNKNOWN`: the
 * endpoints balance hashes on, logs, and passes on with `--proxy-protocol`.
 *
 * @example
 * ```ts
 * const { src, dst } = proxiedEndpoints(r.header, () => ({ src: peer, dst: local }));
 * ```
 */
export function proxiedEndpoints(header: ProxyHeader, own: () => ProxyEndpoints): ProxyEndpoints {
  return header.src && header.dst ? { src: header.src, dst: header.dst } : own();
}

/**
 * How `-d` traces a header received from `peer`: the endpoints it named, or
 * that it named none.
 *
 * @example
 * ```ts
 * describeProxied(peer, header, proxiedEndpoints(header, own));
 * // "127.0.0.1:50000: PROXY v2 header: client 10.9.8.7:4000 to 10.0.0.1:80"
 * ```
 */
export function describeProxied(peer: ProxyEndpoint, header: ProxyHeader, endpoints: ProxyEndpoints): string {
  const { src, dst } = endpoints;
  const from = formatHostPort(peer.address, peer.port);
  return header.local
    ? `${from}: PROXY v${header.version} header without a client: using the connection's addresses`
    : `${from}: PROXY v${header.version} header: client ${formatHostPort(src.address, src.port)} to ${
      formatHostPort(dst.address, dst.port)
    }`;
}
