/**
 * The listening sockets of one thread: TCP unless `--udp-only`, and UDP with
 * `--udp` or `--udp-only`, on the same address and port, seen by the rest
 * of the application as one {@link Server}.
 *
 * @module
 */
import type { Balancer } from "../core/model/balancer.ts";
import type { Adapter, ServeOptions, Server } from "../adapter/types.ts";
import { tcpServe } from "./engine.ts";

/**
 * Listens as `options` ask, in this thread. `datagrams: false` leaves UDP to
 * another thread (a runtime without SO_REUSEPORT on datagram sockets serves
 * UDP in one). With port 0, UDP takes the port TCP was given. Throws the
 * first listen's ExitError, after closing what was already listening.
 *
 * @example
 * ```ts
 * const server = await listen(adapter, balancer, options, true);
 * server.close(); await server.finished;
 * ```
 */
export async function listen(
  adapter: Adapter,
  balancer: Balancer,
  options: ServeOptions,
  datagrams: boolean,
): Promise<Server> {
  const { udp } = options;
  const servers: Server[] = [];
  try {
    if (!udp?.only) servers.push(await tcpServe(adapter, options)(balancer, options));
    if (udp && datagrams) {
      const port = servers[0]?.port ?? options.port;
      servers.push(await adapter.serveDatagrams(balancer, { ...options, port, udp }));
    }
  } catch (err) {
    for (const server of servers) server.close();
    throw err;
  }
  return servers.length === 1 ? servers[0] : together(servers, options.port);
}

// Several servers as one: closed together, finished when all are. None at
// all (a thread that serves only the UDP another thread has) is finished
// once closed.
function together(servers: Server[], port: number): Server {
  let stop!: () => void;
  const closed = new Promise<void>((resolve) => (stop = resolve));
  return {
    port: servers[0]?.port ?? port,
    wakeFd: servers.find((s) => s.wakeFd !== undefined)?.wakeFd,
    finished: Promise.all([closed, ...servers.map((s) => s.finished)]).then(() => {}),
    close() {
      for (const server of servers) server.close();
      stop();
    },
    async endConnections() {
      await Promise.all(servers.map((s) => s.endConnections()));
    },
  };
}
