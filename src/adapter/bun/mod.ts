/**
 * The Bun adapter: `Bun.listen` / `Bun.connect` callback sockets driven by
 * the core, with the same relay properties as the Deno adapter.
 *
 * @example
 * ```ts
 * import { serve } from "./adapter/bun/mod.ts";
 * const server = await serve(balancer, options);
 * ```
 *
 * @module
 */
/// <reference types="bun-types" />
import type { Socket, SocketHandler } from "bun";
import process from "node:process";
import { type Balancer, formatHostPort } from "../../core/model/balancer.ts";
import type { Channel } from "../../core/model/channel.ts";
import { Listener } from "../../core/session/listener.ts";
import type { Session } from "../../core/session/session.ts";
import { listenError } from "../../core/util/errors.ts";
import type { ServeOptions, Server } from "../types.ts";
import type { DataSockets } from "../../core/ftp/data.ts";
export { openSyslogSocket } from "./syslog.ts";
export { datagramReusePort, serveDatagrams } from "./datagram.ts";
export { makeProbe } from "./probe.ts";
export { loadNativeEngine } from "../linux/bind_bun.ts";
import {
  Attempt,
  closedUnder,
  drainFlow,
  endFlow,
  forwardChunk,
  holdEarlyChunk,
  Pipe,
  sendEarlyChunks,
  type Serving,
} from "./relay.ts";

// Server-side events: `s.data` is the connect attempt; an abandoned one
// (timed out) is dropped as soon as it shows up.
const serverHandlers: SocketHandler<Attempt> = {
  open(s) {
    const pipe = s.data.pipe;
    if (s.data.abandoned || pipe.closed) return void s.terminate();
    // Bun turns TCP_NODELAY on for every socket itself; keepalive is ours.
    s.setKeepAlive(true);
    // Attached before the connect settles, so the server's first bytes count on their channel.
    pipe.server = s;
    pipe.session.channel = s.data.channel;
  },
  data(s, chunk) {
    const pipe = s.data.pipe;
    if (pipe.server === s) forwardChunk(pipe, pipe.toClient, s, pipe.client, chunk);
  },
  drain(s) {
    const pipe = s.data.pipe;
    if (pipe.server === s) drainFlow(pipe, pipe.toServer, pipe.client, s);
  },
  end(s) {
    const pipe = s.data.pipe;
    if (pipe.server === s) endFlow(pipe, pipe.toClient, pipe.client);
  },
  close(s, error) {
    const pipe = s.data.pipe;
    if (pipe.server === s) closedUnder(pipe, "server", error);
  },
  error() {/* close follows */},
  connectError() {/* the connect promise rejects */},
};

// Client-side events: `client.data` is the pipe, undefined for a client
// turned away at the descriptor budget.
const clientHandlers: SocketHandler<Pipe> = {
  data(client, chunk) {
    const pipe = client.data;
    if (!pipe) return;
    if (pipe.server) forwardChunk(pipe, pipe.toServer, client, pipe.server, chunk);
    else if (pipe.session.inspecting) inspect(pipe, chunk);
    else holdEarlyChunk(pipe, chunk);
  },
  drain(client) {
    const pipe = client.data;
    if (pipe?.server) drainFlow(pipe, pipe.toClient, pipe.server, client);
  },
  end(client) {
    const pipe = client.data;
    if (pipe?.session.inspecting) pipe.session.inspectionCut();
    else if (pipe) endFlow(pipe, pipe.toServer, pipe.server);
  },
  close(client, error) {
    const pipe = client.data;
    if (pipe?.session.inspecting) pipe.session.inspectionCut();
    else if (pipe) closedUnder(pipe, "client", error);
  },
  error() {/* close follows */},
};

/**
 * Listens on `options.hostname:port` and relays every client to a channel
 * the balancer picks. Throws an `ExitError` ({@link listenError}) when it cannot listen.
 */
export function serve(balancer: Balancer, options: ServeOptions): Promise<Server> {
  // Bun accepts on its own: a client beyond the descriptor budget is turned
  // away at once rather than failing later.
  const listener = new Listener(balancer, options, "turn-away", dataSockets);
  const serving: Serving = {
    listenPort: options.port,
    from: options.sourceAddress ? { localAddress: options.sourceAddress } : {},
  };
  let socket;
  try {
    socket = Bun.listen<Pipe>({
      hostname: options.hostname,
      port: options.port,
      allowHalfOpen: true,
      socket: {
        ...clientHandlers,
        open(client) {
          if (!listener.admit()) return void client.terminate();
          client.setKeepAlive(true);
          const pipe = new Pipe(client, serving);
          client.data = pipe;
          pipe.session = listener.open(pipe, client.remoteAddress);
          if (!pipe.session.inspecting) connectPipe(pipe).catch(listener.unexpected);
        },
      },
      // Accepted by Bun.listen though its published types only show it for connect.
      ...(options.reusePort ? { reusePort: true } : {}),
    });
  } catch (err) {
    throw listenError(err, formatHostPort(options.hostname, options.port));
  }
  serving.listenPort = socket.port;
  let stop!: () => void;
  const finished = new Promise<void>((resolve) => (stop = resolve));
  return Promise.resolve({
    port: socket.port,
    finished,
    close() {
      socket.stop(false);
      stop();
    },
    endConnections: () => listener.endAll(),
  });
}

// --ftp: a data listener. Each connection the core admits goes the way of a
// client's; the others are closed, and it listens on until the core closes it.
const dataSockets: DataSockets = {
  listen(host, port, from, accept) {
    const serving: Serving = { listenPort: port, from: from ? { localAddress: from } : {} };
    const socket = Bun.listen<Pipe>({
      hostname: host,
      port,
      allowHalfOpen: true,
      socket: {
        ...clientHandlers,
        open(client) {
          const pipe = new Pipe(client, serving);
          const session = accept(pipe, client.remoteAddress);
          if (!session) return void client.terminate();
          client.setKeepAlive(true);
          client.data = pipe;
          pipe.session = session;
          connectPipe(pipe).catch(session.listener.unexpected);
        },
      },
    });
    serving.listenPort = socket.port;
    return { port: socket.port, close: () => socket.stop(false) };
  },
};

// --accept-proxy: the client's bytes until its header is in; then the connect.
function inspect(pipe: Pipe, chunk: Uint8Array): void {
  const step = pipe.session.inspect(chunk);
  if (!(step instanceof Uint8Array)) return;
  if (step.length > 0) holdEarlyChunk(pipe, step);
  connectPipe(pipe).catch(pipe.session.listener.unexpected);
}

async function connectPipe(pipe: Pipe): Promise<void> {
  const server = await pipe.session.connect(dial, hangUp);
  // Bytes and a FIN that came while connecting are passed on now, after
  // the PROXY header if one is sent.
  if (server) sendEarlyChunks(pipe);
}

function hangUp(server: Socket<Attempt>): void {
  server.terminate();
}

// One connect attempt, within -t (the listener's clock), from -B.
function dial(channel: Channel, session: Session<Pipe>): Promise<Socket<Attempt>> {
  const { listener, link: pipe } = session;
  const attempt = new Attempt(pipe, channel);
  listener.watchConnect(attempt);
  return new Promise((resolve, reject) => {
    attempt.fail = reject;
    Bun.connect<Attempt>({
      hostname: channel.address,
      port: channel.port,
      allowHalfOpen: true,
      data: attempt,
      socket: serverHandlers,
      ...pipe.serving.from,
    }).then(
      (s) => {
        attempt.fail = undefined;
        listener.connectSettled(attempt);
        if (attempt.abandoned) s.terminate();
        else resolve(s);
      },
      (err) => {
        attempt.fail = undefined;
        listener.connectSettled(attempt);
        if (!attempt.abandoned) reject(err);
      },
    );
  });
}

/** A compiled binary is itself the program; from source, bun runs the main file. */
export function selfCommand(): string[] {
  return Bun.main.startsWith("/$bunfs/") || Bun.main.includes("~BUN")
    ? [process.execPath]
    : [process.execPath, Bun.main];
}
