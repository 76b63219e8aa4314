/**
 * The `--metrics` HTTP listener: `/metrics` and `/status`, in the control
 * thread, hardened so that no scraper — or anyone else who reaches the port —
 * can hold the balancer's memory or its event loop.
 *
 * @module
 */
import * as http from "node:http";
import type { Socket } from "node:net";
import { formatHostPort } from "../../core/model/balancer.ts";
import { listenError } from "../../core/util/errors.ts";

/** What the listener serves: each page is made afresh per request. */
export interface MetricsPages {
  /** The Prometheus text. */
  metrics(): string;
  /** The `show --json` document. */
  status(): string;
  /** The Content-Type of {@link metrics}. */
  metricsContentType: string;
}

/** A running metrics listener. */
export interface MetricsServer {
  /** The port it listens on (the one asked, or the one given for 0). */
  port: number;
  /** Stops listening and closes every connection. */
  close(): void;
}

/** Limits of the listener, exported for the tests that abuse it. */
export const METRICS_LIMITS = {
  /** Request line and headers together, in bytes (beyond: 431). */
  maxHeaderBytes: 8192,
  /** Until the headers are in (a slow-loris client is cut off then). */
  headersTimeoutMs: 5_000,
  /** Until the whole request is in. */
  requestTimeoutMs: 10_000,
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: 5_000,
  /** Connections at once; more are closed at accept. */
  maxConnections: 64,
};

/**
 * Listens on `host:port` and answers `GET`/`HEAD` of `/metrics` and
 * `/status`; other paths 404, other methods 405. Rejects with an
 * `ExitError` ({@link listenError}) when it cannot listen (the port taken, the address not local).
 *
 * @example
 * ```ts
 * const server = await startMetricsServer("127.0.0.1", 8421, pages);
 * server.close();
 * ```
 */
export function startMetricsServer(host: string, port: number, pages: MetricsPages): Promise<MetricsServer> {
  const server = http.createServer({
    maxHeaderSize: METRICS_LIMITS.maxHeaderBytes,
    headersTimeout: METRICS_LIMITS.headersTimeoutMs,
    requestTimeout: METRICS_LIMITS.requestTimeoutMs,
    keepAliveTimeout: METRICS_LIMITS.keepAliveTimeoutMs,
  }, (req, res) => {
    // A request is in: requestTimeout bounds it now; idle again once answered.
    expire(req.socket, METRICS_LIMITS.requestTimeoutMs);
    res.on("finish", () => expire(req.socket, METRICS_LIMITS.keepAliveTimeoutMs));
    answer(req, res, pages);
  });
  // The options above are node's; Bun's node:http ignores some of them (and
  // maxConnections), so the cap and the deadlines are kept here too: a
  // connection must bring a whole request within headersTimeout of its start,
  // or of its last answer, whatever it trickles in meanwhile.
  server.maxConnections = METRICS_LIMITS.maxConnections;
  const deadlines = new Map<Socket, ReturnType<typeof setTimeout>>();
  const expire = (socket: Socket, ms: number) => {
    clearTimeout(deadlines.get(socket));
    if (!socket.destroyed) deadlines.set(socket, setTimeout(() => socket.destroy(), ms));
  };
  server.on("connection", (socket: Socket) => {
    if (deadlines.size >= METRICS_LIMITS.maxConnections) return socket.destroy();
    expire(socket, METRICS_LIMITS.headersTimeoutMs);
    socket.on("close", () => {
      clearTimeout(deadlines.get(socket));
      deadlines.delete(socket);
    });
  });
  // A malformed or oversized request: say so if the socket still takes it, then close.
  server.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) => {
    if (socket.writable && !socket.destroyed) {
      const status = err.code === "HPE_HEADER_OVERFLOW" ? "431 Request Header Fields Too Large" : "400 Bad Request";
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    }
    socket.destroy();
  });
  return new Promise((resolve, reject) => {
    const failed = (err: Error) => reject(listenError(err, formatHostPort(host, port), "metrics"));
    server.once("error", failed);
    server.listen(port, host, () => {
      server.off("error", failed);
      resolve({
        port: (server.address() as { port: number }).port,
        close: () => {
          server.close();
          for (const socket of deadlines.keys()) socket.destroy();
        },
      });
    });
  });
}

function answer(req: http.IncomingMessage, res: http.ServerResponse, pages: MetricsPages): void {
  const path = (req.url ?? "").split("?")[0];
  const page = path === "/metrics"
    ? () => [pages.metricsContentType, pages.metrics()]
    : path === "/status"
    ? () => ["application/json; charset=utf-8", pages.status()]
    : undefined;
  if (!page) return send(res, 404, "text/plain; charset=utf-8", "not found\n", req.method === "HEAD");
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("Allow", "GET, HEAD");
    return send(res, 405, "text/plain; charset=utf-8", "method not allowed\n", false);
  }
  const [type, body] = page();
  send(res, 200, type, body, req.method === "HEAD");
}

const encoder = new TextEncoder();

function send(res: http.ServerResponse, status: number, type: string, body: string, head: boolean): void {
  const bytes = encoder.encode(body);
  res.writeHead(status, { "Content-Type": type, "Content-Length": bytes.length });
  res.end(head ? undefined : bytes);
}
