import {
  ProxyHeaderReader,
  proxyHeaderTimedOut,
  type ProxyProbe,
  type ProxyRead,
} from "../../core/proxy_header_reader.ts";
import type { ByteStream } from "./byte_stream.ts";

/** Read size while a header is awaited: a v1 line or a v2 header with its usual TLVs in one read. */
const HEADER_READ_SIZE = 4 * 1024;

/**
 * How {@link readProxyHeader} ended: a header (with the bytes after it), a
 * refusal with its reason, or a `probe`: the client left without sending a
 * byte, which is no fault (a front balancer's connect check).
 *
 * @example
 * ```ts
 * const outcome: HeaderOutcome = await readProxyHeader(client, 5000);
 * if (outcome.kind === "error") log(outcome.reason);
 * ```
 */
export type HeaderOutcome = Exclude<ProxyRead, { kind: "incomplete" }> | ProxyProbe;

/**
 * `--accept-proxy` under Deno: reads `client` until its first bytes hold a
 * whole PROXY header, for at most `timeoutMs`; a client that is not done by
 * then is closed and refused.
 *
 * @example
 * ```ts
 * const outcome = await readProxyHeader(client, 5000);
 * if (outcome.kind === "header") await server.write(outcome.rest);
 * ```
 */
export async function readProxyHeader(client: ByteStream, timeoutMs: number): Promise<HeaderOutcome> {
  const reader = new ProxyHeaderReader();
  // One buffer per client: a `header` answer's rest is a view of it.
  const buffer = new Uint8Array(HEADER_READ_SIZE);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    client.close();
  }, timeoutMs);
  try {
    for (;;) {
      const n = await client.read(buffer).catch(() => null);
      if (timedOut) return proxyHeaderTimedOut(timeoutMs);
      if (n === null) return reader.ended();
      const read = reader.push(buffer.subarray(0, n));
      if (read.kind !== "incomplete") return read;
    }
  } finally {
    clearTimeout(timer);
  }
}
