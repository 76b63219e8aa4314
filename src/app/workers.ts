/**
 * `-w N`: N worker threads, each with its own listener on the port
 * (SO_REUSEPORT: the kernel spreads new connections over them) and one
 * balancer view over the same {@link SharedState}. The main thread keeps the
 * control channel, the log and the signals; it sends workers the layout
 * (after `create`/`assign`) and relays their log lines and packet dumps.
 *
 * @module
 */
import process from "node:process";
import { Balancer, type Layout, type SelectionOptions } from "../core/model/balancer.ts";
import { ConnectionBatch, type ConnectionRecord } from "../core/observe/connection_log.ts";
import { ExitError } from "../core/util/exit_error.ts";
import type { Direction } from "../core/observe/packet_dump.ts";
import { SharedState, type StateHandle } from "../core/model/state.ts";
import { EX_SOFTWARE } from "../core/util/sysexits.ts";
import { warningKey } from "../core/observe/throttle.ts";
import type { Adapter, ServeOptions, Server } from "../adapter/types.ts";
import { listen } from "./listen.ts";
import { type AccessSettings, ClientGate } from "../core/access/gate.ts";
import { ClientTable, type ClientTableHandle } from "../core/access/client_table.ts";
import { type SniRoute, type SniRouting, sniRouting } from "../core/tls/sni_routes.ts";

/** What a worker is told at start; everything a worker needs, postMessage-able. */
interface StartMessage {
  kind: "start";
  writer: number;
  state: StateHandle;
  layout: Layout;
  selection: SelectionOptions;
  serve: Omit<ServeOptions, "dump" | "trace" | "warn" | "onConnectionEnd" | "gate" | "sni">;
  /** `--sni` as given: a worker builds its own lookup table. */
  sni?: SniSpec;
  /** The access settings and the one client table every thread shares; absent, none. */
  access?: { settings: AccessSettings; table: ClientTableHandle };
  dump: boolean;
  trace: boolean;
  /** `--log-connections`: tell the main thread of every connection that ended. */
  logConnections: boolean;
  /** `--check`: tell the main thread of every failed connect. */
  observe: boolean;
}

type ToWorker =
  | StartMessage
  // A reload may change the connect timeout (-t) too.
  | { kind: "layout"; layout: Layout; connectTimeoutMs: number; access?: AccessSettings; sni?: SniSpec }
  | { kind: "stop" }
  // The grace period is over: close what is still open.
  | { kind: "end" };

type FromWorker =
  | { kind: "ready" }
  | { kind: "listening"; port: number; wakeFd?: number }
  | { kind: "failed"; message: string; exitCode: number }
  | { kind: "trace"; message: string }
  | { kind: "warn"; message: string; key?: string }
  | { kind: "connectFailed"; slot: number; reason: string }
  | { kind: "dump"; direction: Direction; chunk: Uint8Array }
  | { kind: "adopted" }
  | { kind: "stopped" }
  | { kind: "connections"; records: ConnectionRecord[] }
  | { kind: "ended" };

/** A running set of workers: a {@link Server} whose layout can be resent. */
export interface WorkerServer extends Server {
  /** Sends the balancer's layout to every worker; resolves once all have it. */
  syncLayout(): Promise<void>;
  /** Ends every worker at once, connections and all (start-up failed). */
  terminate(): void;
}

/** How long a control answer waits for the workers to take a new layout. */
const LAYOUT_WAIT_MS = 5000;

/**
 * Starts `count` workers from the module `workerUrl` (which calls
 * {@link runWorker}) serving `balancer`'s state. Resolves once every worker
 * listens; throws the first worker's {@link ExitError} when one cannot.
 * `onConnectFailed` (`--check`) hears of every connect that failed in a
 * worker, by channel slot. `wake` (`--engine native`) wakes a worker's loop
 * after each message sent to it.
 *
 * @example
 * ```ts
 * const server = await serveInWorkers(balancer, options, 2, new URL("./worker.ts", import.meta.url));
 * ```
 */
export async function serveInWorkers(
  balancer: Balancer,
  options: ServeOptions,
  count: number,
  workerUrl: URL,
  onConnectFailed?: (slot: number, reason: string) => void,
  wake?: (fd: number) => void,
): Promise<WorkerServer> {
  const { dump, trace, warn, onConnectionEnd, gate, sni, ...serve } = options;
  const start: Omit<StartMessage, "writer"> = {
    kind: "start",
    state: balancer.state.handle,
    layout: balancer.layout(),
    selection: balancer.options,
    serve: { ...serve, reusePort: true },
    access: gate && { settings: gate.settings, table: gate.table.handle },
    sni: specOf(sni),
    dump: dump !== undefined,
    trace: trace !== undefined,
    logConnections: onConnectionEnd !== undefined,
    observe: onConnectFailed !== undefined,
  };
  const workers = Array.from({ length: count }, () => new Worker(workerUrl.href, { type: "module" }));
  const adopted: (() => void)[][] = workers.map(() => []);
  const ended: (() => void)[][] = workers.map(() => []);
  const stopped: (() => void)[] = [];
  const finished = Promise.all(workers.map((_, w) => new Promise<void>((resolve) => (stopped[w] = resolve))))
    .then(() => {});
  const terminate = () => workers.forEach((w) => w.terminate());
  const wakeFds: (number | undefined)[] = [];
  const listening = workers.map((worker, writer) =>
    new Promise<number>((resolve, reject) => {
      worker.onmessage = ({ data }: MessageEvent<FromWorker>) => {
        switch (data.kind) {
          case "ready":
            return worker.postMessage({ ...start, writer });
          case "listening":
            wakeFds[writer] = data.wakeFd;
            return resolve(data.port);
          case "failed":
            return reject(new ExitError(data.message, data.exitCode));
          case "trace":
            return trace?.(`worker ${writer}: ${data.message}`);
          case "warn":
            return warn(`worker ${writer}: ${data.message}`, data.key ?? warningKey(data.message));
          case "connectFailed":
            return onConnectFailed?.(data.slot, data.reason);
          case "dump":
            return dump?.(data.direction, data.chunk);
          case "adopted":
            return adopted[writer].shift()?.();
          case "stopped":
            return stopped[writer]();
          case "connections":
            return data.records.forEach((r) => onConnectionEnd?.(r));
          case "ended":
            return ended[writer].shift()?.();
        }
      };
      // A worker that dies takes its connections' counts with it: stop
      // loudly rather than serve on with a state that no longer adds up.
      worker.onerror = (event: ErrorEvent) => {
        event.preventDefault?.();
        warn(`worker ${writer} failed: ${event.message}`);
        process.exit(EX_SOFTWARE);
      };
    })
  );
  let ports: number[];
  try {
    ports = await Promise.all(listening);
  } catch (err) {
    terminate();
    throw err;
  }
  const post = (message: ToWorker) =>
    workers.forEach((w, writer) => {
      w.postMessage(message);
      // A loop waiting in epoll_wait would read the message only once its wait is over.
      const fd = wakeFds[writer];
      if (wake && fd !== undefined) wake(fd);
    });
  return {
    port: ports[0],
    // Every worker has closed its listener.
    finished,
    close() {
      post({ kind: "stop" });
    },
    terminate,
    async syncLayout() {
      const all = workers.map((_, w) => new Promise<void>((resolve) => adopted[w].push(resolve)));
      post({
        kind: "layout",
        layout: balancer.layout(),
        connectTimeoutMs: options.connectTimeoutMs,
        access: gate?.settings,
        sni: specOf(options.sni),
      });
      if (!await answered(all)) {
        warn(`not every worker took the new layout within ${LAYOUT_WAIT_MS / 1000}s; answering anyway`);
      }
    },
    async endConnections() {
      if (!onConnectionEnd) return;
      // A worker's connection lines come before its `ended`: all are logged once this resolves.
      const all = workers.map((_, w) => new Promise<void>((resolve) => ended[w].push(resolve)));
      post({ kind: "end" });
      await answered(all);
    },
  };
}

/** `--sni` as plain data, for a message: the lookup table does not survive a copy. */
type SniSpec = { routes: readonly SniRoute[]; defaultService: string };

function specOf(sni: SniRouting | undefined): SniSpec | undefined {
  return sni && { routes: sni.routes, defaultService: sni.defaultService };
}

function routingOf(spec: SniSpec | undefined): SniRouting | undefined {
  return spec && sniRouting(spec.routes, spec.defaultService);
}

/** Whether every worker answered within {@link LAYOUT_WAIT_MS}: a worker too busy must not hold the caller. */
async function answered(answers: Promise<void>[]): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), LAYOUT_WAIT_MS)));
  try {
    return await Promise.race([Promise.all(answers).then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The parts of a worker's global scope used here (Deno and Bun both have them). */
interface WorkerScope {
  postMessage(message: FromWorker): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
}

/**
 * The body of a worker thread: waits for its start message, serves with
 * `adapter` on its own listener, and follows layout and stop messages.
 *
 * @example
 * ```ts
 * // worker.ts
 * runWorker(await import("./adapter/bun/mod.ts"));
 * ```
 */
export function runWorker(adapter: Adapter): void {
  const scope = globalThis as unknown as WorkerScope;
  const send = (message: FromWorker) => scope.postMessage(message);
  let balancer: Balancer | undefined;
  let server: Server | undefined;
  let serving: ServeOptions | undefined;
  let connections: ConnectionBatch | undefined;
  // Messages sent before a worker's module has finished loading can be lost
  // (Bun): the main thread sends `start` only once asked.
  scope.onmessage = async ({ data }) => {
    switch (data.kind) {
      case "start": {
        const trace = data.trace ? (message: string) => send({ kind: "trace", message }) : undefined;
        balancer = new Balancer([], data.selection, trace, new SharedState(data.state, data.writer));
        balancer.adopt(data.layout);
        balancer.warn = (message, key) => send({ kind: "warn", message, key });
        if (data.observe) {
          balancer.onConnectFailed = (channel, reason) =>
            send({ kind: "connectFailed", slot: channel.cells.slot, reason });
        }
        if (data.logConnections) connections = new ConnectionBatch((records) => send({ kind: "connections", records }));
        try {
          const warn = (message: string, key?: string) => send({ kind: "warn", message, key });
          serving = {
            ...data.serve,
            trace,
            warn,
            sni: routingOf(data.sni),
            gate: data.access &&
              new ClientGate(new ClientTable(data.access.table), balancer.state, warn, data.access.settings),
            dump: data.dump ? (direction, chunk) => send({ kind: "dump", direction, chunk }) : undefined,
            onConnectionEnd: data.logConnections ? (record) => connections!.add(record) : undefined,
          };
          // Without SO_REUSEPORT on datagram sockets, the first worker alone serves UDP.
          server = await listen(adapter, balancer, serving, adapter.datagramReusePort || data.writer === 0);
          send({ kind: "listening", port: server.port, wakeFd: server.wakeFd });
        } catch (err) {
          const exitCode = err instanceof ExitError ? err.exitCode : EX_SOFTWARE;
          send({ kind: "failed", message: (err as Error).message, exitCode });
        }
        return;
      }
      case "layout":
        balancer?.adopt(data.layout);
        if (serving) serving.connectTimeoutMs = data.connectTimeoutMs;
        if (data.access) serving?.gate?.configure(data.access);
        if (serving) serving.sni = routingOf(data.sni);
        return send({ kind: "adopted" });
      case "stop":
        server?.close();
        return send({ kind: "stopped" });
      case "end":
        await server?.endConnections();
        connections?.flush();
        return send({ kind: "ended" });
    }
  };
  send({ kind: "ready" });
}
