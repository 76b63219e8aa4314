/**
 * Test helpers for sockets on loopback (our stand-in for `@std/net`, which
 * cannot be installed here): free ports, backends that say who they are,
 * clients that collect what they receive.
 *
 * @module
 */
import * as dgram from "node:dgram";
import { readFileSync } from "node:fs";
import * as net from "node:net";
import { onTimeout } from "./test.ts";
import { within } from "./wait.ts";

/**
 * Where {@link freePort} looks: below the kernel's ephemeral range, which
 * every outgoing connection and every listen on port 0 (backends, daemons,
 * the balancer's own dials) draws from. A port taken from inside that range
 * could be given to one of those between the check and the balancer's
 * listen: CI once failed on exactly that (`cannot listen on
 * 0.0.0.0:40917: address already in use`).
 */
const PORT_RANGE = (() => {
  let ephemeralLow = 32768;
  try {
    ephemeralLow = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
  } catch {
    // Not Linux: keep the IANA default.
  }
  return { low: 10_000, high: Math.max(ephemeralLow, 20_000) };
})();

/**
 * The next port to try: a random start per process, then one after
 * another, so that one test process never hands out a port twice and two
 * processes rarely start near each other.
 */
let nextPort = PORT_RANGE.low + Math.floor(Math.random() * (PORT_RANGE.high - PORT_RANGE.low));

/** Whether `port` can be taken on every address, TCP (dual-stack `::`) and UDP. */
async function portIsFree(port: number): Promise<boolean> {
  const tcp = await new Promise<boolean>((resolve, reject) => {
    const s = net.createServer();
    s.once("error", (e: NodeJS.ErrnoException) => e.code === "EADDRINUSE" ? resolve(false) : reject(e));
    s.listen({ port, host: "::", ipv6Only: false }, () => s.close(() => resolve(true)));
  });
  if (!tcp) return false;
  return await new Promise<boolean>((resolve, reject) => {
    const s = dgram.createSocket({ type: "udp6", ipv6Only: false });
    s.once("error", (e: NodeJS.ErrnoException) => {
      s.close();
      e.code === "EADDRINUSE" ? resolve(false) : reject(e);
    });
    s.bind(port, "::", () => s.close(() => resolve(true)));
  });
}

/**
 * A port that is free on every address, for TCP and UDP, outside the
 * ephemeral range (see {@link PORT_RANGE}).
 *
 * @example
 * ```ts
 * const port = await freePort();
 * ```
 */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < 1000; tries++) {
    const port = nextPort;
    nextPort = nextPort + 1 >= PORT_RANGE.high ? PORT_RANGE.low : nextPort + 1;
    if (await portIsFree(port)) return port;
  }
  throw new Error(`no free port in ${PORT_RANGE.low}-${PORT_RANGE.high - 1} after 1000 tries`);
}

/** A backend listening on loopback. */
export interface Backend {
  name: string;
  host: string;
  port: number;
  /** Open connections right now. */
  sockets: Set<net.Socket>;
  /** Remote addresses of all connections ever accepted. */
  peers: string[];
  close(): Promise<void>;
}

/**
 * What a backend does with a connection; the default greets with
 * `name\n` and then echoes everything, passing a half-close on.
 */
export type Behaviour = (socket: net.Socket, backend: Backend) => void;

export const greetAndEcho: Behaviour = (s, b) => {
  s.write(`${b.name}\n`);
  s.pipe(s);
};

/**
 * Starts a backend on `host` (port 0 unless given).
 *
 * @example
 * ```ts
 * const a = await startBackend("a");
 * ```
 */
export function startBackend(
  name: string,
  behaviour: Behaviour = greetAndEcho,
  host = "127.0.0.1",
  port = 0,
): Promise<Backend> {
  return new Promise((resolve, reject) => {
    const backend: Backend = {
      name,
      host,
      port: 0,
      sockets: new Set(),
      peers: [],
      close: () =>
        new Promise((r) => {
          for (const s of backend.sockets) s.destroy();
          server.close(() => r());
        }),
    };
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      backend.sockets.add(s);
      backend.peers.push(s.remoteAddress ?? "");
      s.on("close", () => backend.sockets.delete(s));
      s.on("error", () => {});
      behaviour(s, backend);
    });
    onTimeout(() => void backend.close());
    server.once("error", reject);
    server.listen(port, host, () => {
      backend.port = (server.address() as net.AddressInfo).port;
      resolve(backend);
    });
  });
}

/** A connected client with everything it has received so far. */
export interface Client {
  socket: net.Socket;
  received(): Buffer;
  /** Resolves once `predicate` holds for the received bytes (or rejects after `ms`). */
  waitFor(predicate: (data: Buffer) => boolean, ms?: number): Promise<Buffer>;
  /**
   * Resolves with all bytes once the server has closed its side (a FIN);
   * rejects, saying what arrived, on a reset or a close without FIN, or
   * when none came within `ms` (default 10 s).
   */
  ended(ms?: number): Promise<Buffer>;
  /** Resolves once the socket is closed, however (FIN or reset); rejects after `ms` (default 10 s). */
  closed(ms?: number): Promise<void>;
}

/**
 * Connects to `port` on `host`, optionally from `localAddress`.
 *
 * @example
 * ```ts
 * const c = await connect(port);
 * const greeting = await c.waitFor((d) => d.includes("\n"));
 * ```
 */
export function connect(port: number, host = "127.0.0.1", localAddress?: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host, localAddress, allowHalfOpen: true });
    onTimeout(() => socket.destroy());
    const chunks: Buffer[] = [];
    let waiters: (() => void)[] = [];
    const notify = () => {
      const w = waiters;
      waiters = [];
      w.forEach((f) => f());
    };
    socket.on("data", (d) => {
      chunks.push(d);
      notify();
    });
    let error: Error | undefined;
    // Settled once, when the socket closes: with every byte after a FIN,
    // else with what arrived and why it closed.
    const finished = new Promise<Buffer>((res, rej) =>
      socket.on("close", () => {
        notify();
        const got = Buffer.concat(chunks);
        if (socket.readableEnded) res(got);
        else {rej(
            new Error(`closed without FIN (${error?.message ?? "reset"}) after ${JSON.stringify(got.toString())}`),
          );}
      })
    );
    finished.catch(() => {});
    const endSeen = new Promise<Buffer>((r) => socket.on("end", () => (notify(), r(Buffer.concat(chunks)))));
    socket.on("error", (err) => (error = err));
    const received = () => Buffer.concat(chunks);
    const ended = (ms = 10_000) =>
      within(
        Promise.race([endSeen, finished]),
        ms,
        () => `a FIN from port ${port}; got ${JSON.stringify(received().toString().slice(0, 200))} so far`,
      );
    const closed = (ms = 10_000) =>
      within(finished.then(() => {}, () => {}), ms, `port ${port} to close the connection`);
    const waitFor = (predicate: (data: Buffer) => boolean, ms = 5000) =>
      new Promise<Buffer>((res, rej) => {
        const timer = setTimeout(
          () => rej(new Error(`timed out after ${ms / 1000} s waiting; got ${JSON.stringify(received().toString())}`)),
          ms,
        );
        const check = () => {
          const data = received();
          if (predicate(data)) {
            clearTimeout(timer);
            res(data);
          } else if (socket.destroyed || socket.readableEnded) {
            clearTimeout(timer);
            const how = socket.readableEnded ? "FIN" : "reset";
            rej(new Error(`connection closed (${how}) while waiting; got ${JSON.stringify(data.toString())}`));
          } else waiters.push(check);
        };
        check();
      });
    socket.once("connect", () => {
      socket.removeListener("error", reject);
      resolve({ socket, received, waitFor, ended, closed });
    });
    socket.once("error", reject);
  });
}

/**
 * Resolves with `socket` once it has connected; rejects on an error or
 * after `ms` (for raw sockets; {@link connect} does this itself).
 *
 * @example
 * ```ts
 * const c = await connected(net.connect({ port, host: "127.0.0.1", allowHalfOpen: true }));
 * ```
 */
export function connected(socket: net.Socket, ms = 5000): Promise<net.Socket> {
  onTimeout(() => socket.destroy());
  const connecting = new Promise<net.Socket>((resolve, reject) => {
    socket.once("connect", () => resolve(socket)).once("error", reject);
  });
  return within(connecting, ms, "the connect to complete");
}

/**
 * Connects, reads the backend's greeting line and hangs up: which backend
 * answered. Resolves to `""` when the balancer closed (FIN) without a
 * greeting; rejects on a reset or when nothing came within 5 s.
 *
 * @example
 * ```ts
 * assert.equal(await whoAnswers(port), "a");
 * ```
 */
export async function whoAnswers(port: number, host = "127.0.0.1", localAddress?: string): Promise<string> {
  const c = await connect(port, host, localAddress);
  try {
    const data = await c.waitFor((d) => d.includes(10) || c.socket.readableEnded);
    return data.toString().split("\n")[0];
  } finally {
    c.socket.destroy();
  }
}

/** A backend to start: a name (greets with it, then echoes), or a name with a {@link Behaviour}, host or port. */
export type BackendSpec = string | { name: string; behaviour?: Behaviour; host?: string; port?: number };

/**
 * Starts a backend for each spec in `specs` (all at once), runs `fn` with
 * them in that order, then closes them all, whatever happened.
 *
 * @example
 * ```ts
 * await withBackends(["a", { name: "mute", behaviour: () => {} }], async ([a, mute]) => { ... });
 * ```
 */
export async function withBackends<T>(
  specs: readonly BackendSpec[],
  fn: (backends: Backend[]) => Promise<T>,
): Promise<T> {
  const started = await Promise.allSettled(
    specs.map((s) => typeof s === "string" ? startBackend(s) : startBackend(s.name, s.behaviour, s.host, s.port)),
  );
  const backends = started.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
  try {
    const failed = started.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    return await fn(backends);
  } finally {
    await Promise.all(backends.map((b) => b.close()));
  }
}
