/**
 * The Deno adapter: `Deno.listen` / `Deno.connect` sockets driven by the core.
 *
 * @example
 * ```ts
 * import { serve } from "./adapter/deno/mod.ts";
 * const server = await serve(balancer, options);
 * ```
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import type { Balancer } from "../../core/model/balancer.ts";
import type { Channel } from "../../core/model/channel.ts";
import { EX_USAGE } from "../../core/util/sysexits.ts";
import { listenError } from "../../core/util/errors.ts";
import { ExitError } from "../../core/util/exit_error.ts";
import { formatHostPort } from "../../core/model/balancer.ts";
import { Listener } from "../../core/session/listener.ts";
import type { HeaderStep, Session } from "../../core/session/session.ts";
import { Throttle } from "../../core/observe/throttle.ts";
import type { ServeOptions, Server } from "../types.ts";
export { openSyslogSocket } from "./syslog.ts";
export { datagramReusePort, serveDatagrams } from "./datagram.ts";
export { makeProbe } from "../probe.ts";
export { loadNativeEngine } from "../linux/bind_deno.ts";
import { dialChannel, type DialOptions } from "./dial.ts";
import { closeQuietly, Pipe } from "./relay.ts";
import type { ByteStream } from "./byte_stream.ts";
import type { DataAccept, DataSockets } from "../../core/ftp/data.ts";

/**
 * Listens on `options.hostname:port` and relays every client to a channel
 * the balancer picks. Throws an {@link ExitError} when it cannot listen.
 */
export function serve(balancer: Balancer, options: ServeOptions): Promise<Server> {
  // Deno exits the process on reusePort without --unstable-net: check first
  // (listenDatagram exists exactly when that flag is given).
  if (options.reusePort && !("listenDatagram" in Deno)) {
    throw new ExitError("-w under Deno needs its --unstable-net flag (for SO_REUSEPORT)", EX_USAGE);
  }
  let socket: Deno.TcpListener;
  try {
    socket = Deno.listen({
      hostname: options.hostname,
      port: options.port,
      transport: "tcp",
      ...(options.reusePort ? { reusePort: true } : {}),
    });
  } catch (err) {
    throw listenError(err, formatHostPort(options.hostname, options.port));
  }
  // Deno accepts when asked: at the descriptor budget, clients wait in the kernel's queue.
  const listener = new Listener(balancer, options, "wait", dataSockets);
  const dial: DialOptions = { sourceAddress: options.sourceAddress };
  let closing = false;
  const finished = acceptLoop(socket, listener, dial, () => closing);
  return Promise.resolve({
    port: socket.addr.port,
    finished,
    close() {
      closing = true;
      socket.close();
    },
    endConnections: () => listener.endAll(),
  });
}

/** Pause after an accept that failed for want of descriptors or memory: long enough not to spin, short enough not to be noticed. */
const ACCEPT_RETRY_MS = 100;
/** At most one accept-failure report per this interval. */
const ACCEPT_REPORT_MS = 10_000;

async function acceptLoop(
  socket: Deno.TcpListener,
  listener: Listener,
  dial: DialOptions,
  closing: () => boolean,
): Promise<void> {
  const acceptFailures = new Throttle(ACCEPT_REPORT_MS);
  for (;;) {
    // At the descriptor budget, leave new clients in the kernel's queue
    // until a connection ends.
    while (!closing() && !listener.admit()) await new Promise((r) => setTimeout(r, ACCEPT_RETRY_MS));
    let client: Deno.TcpConn;
    try {
      client = await socket.accept();
    } catch (err) {
      if (closing() || err instanceof Deno.errors.BadResource) return;
      const held = acceptFailures.pass();
      if (held !== undefined) {
        listener.options.warn(
          `accept failed: ${(err as Error).message}${held ? ` (${held} more since the last report)` : ""}`,
        );
      }
      // A client that reset before its accept completed concerns only
      // itself: go straight on. Out of descriptors or memory, let the
      // pressure ease instead of spinning; the kernel keeps the waiting
      // clients queued meanwhile.
      if (isExhaustion(err)) await new Promise((r) => setTimeout(r, ACCEPT_RETRY_MS));
      continue;
    }
    handleClient(client, listener, dial).catch(listener.unexpected);
  }
}

// EMFILE, ENFILE, ENOBUFS, ENOMEM as Deno words them: the errors that say
// the process or the system, not one client, is out of something.
const EXHAUSTION = /too many open files|no buffer space|cannot allocate memory|out of memory/i;

function isExhaustion(err: unknown): boolean {
  return EXHAUSTION.test((err as Error).message);
}

/** Read size while a header is awaited: a v1 line or a v2 header with its usual TLVs in one read. */
const HEADER_READ_SIZE = 4 * 1024;

// Every way out ends in the session's finish; a throw would be a bug, which the
// caller hands to the listener to report.
async function handleClient(client: Deno.TcpConn, listener: Listener, dial: DialOptions): Promise<void> {
  client.setNoDelay(true);
  client.setKeepAlive(true);
  const pipe = new Pipe(client, dial);
  const session = pipe.session = listener.open(pipe, client.remoteAddr.hostname);
  // Client bytes that came with the PROXY header: written before the relay.
  let early: Uint8Array | undefined;
  if (session.inspecting) {
    const step = await readHeader(session, client);
    if (!(step instanceof Uint8Array)) return;
    if (step.length > 0) early = step;
  }
  await connectAndRelay(pipe, early);
}

// --ftp: a data listener. Each connection the core admits goes the way of a
// client's; the others are closed, and it listens on until the core closes it.
const dataSockets: DataSockets = {
  listen(host, port, from, accept) {
    const socket = Deno.listen({ hostname: host, port, transport: "tcp" });
    acceptData(socket, { sourceAddress: from }, accept);
    return { port: socket.addr.port, close: () => closeQuietly(socket) };
  },
};

async function acceptData(socket: Deno.TcpListener, dial: DialOptions, accept: DataAccept): Promise<void> {
  for (;;) {
    let conn: Deno.TcpConn;
    try {
      conn = await socket.accept();
    } catch {
      return; // closed
    }
    const pipe = new Pipe(conn, dial);
    const session = accept(pipe, conn.remoteAddr.hostname);
    if (!session) {
      closeQuietly(conn);
      continue;
    }
    conn.setNoDelay(true);
    conn.setKeepAlive(true);
    pipe.session = session;
    connectAndRelay(pipe, undefined).catch(session.listener.unexpected);
  }
}

// The session's connect (a channel, or an FTP data connection's end), its
// opening bytes, then the relay.
async function connectAndRelay(pipe: Pipe, early: Uint8Array | undefined): Promise<void> {
  const session = pipe.session;
  const server = await session.connect(dialFor, closeQuietly);
  if (!server) return;
  // Before the opening: --ftp may ask for its local address.
  pipe.server = server;
  const opening = session.opening(early);
  // A failed write shows in the relay's first read or write.
  if (opening && await writeAll(server, opening).then(() => true, () => false)) {
    session.countSent(opening.length);
  }
  await pipe.relay(server);
}

// --accept-proxy: reads until the header is in. The listener's timer, a
// refusal or a stop closes the client, which ends the read.
async function readHeader(session: Session<Pipe>, client: Deno.TcpConn): Promise<HeaderStep> {
  const buffer = new Uint8Array(HEADER_READ_SIZE);
  for (;;) {
    const n = await client.read(buffer).catch(() => null);
    if (session.isFinished) return "refused";
    if (n === null) {
      session.inspectionCut();
      return "refused";
    }
    const step = session.inspect(buffer.subarray(0, n));
    if (step !== "more") return step;
  }
}

function dialFor(channel: Channel, session: Session<Pipe>): Promise<ByteStream> {
  return dialChannel(channel, session.link.dial, session.listener);
}

async function writeAll(to: ByteStream, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) written += await to.write(bytes.subarray(written));
}

/** `deno run` of this same main module, with the permissions it runs with. */
export function selfCommand(): string[] {
  return [Deno.execPath(), "run", "--allow-all", "--unstable-net", fileURLToPath(Deno.mainModule)];
}
