/**
 * The runtime-agnostic core of balance, one folder per concept: `model/`
 * (groups, channels, shared state), `selection/` (choice, failover, hashing),
 * `session/` (one connection's life), `access/` (who may connect: rules and
 * per-client limits), `proxy/` (PROXY headers), `tls/` (the ClientHello's
 * server name and `--sni` routes), `udp/` (datagram sessions), `ftp/` (FTP
 * control lines and the data connections that follow them), `health/`,
 * `config/` (grammar, files, reload), `commands/` (control), `observe/`
 * (metrics, logs, dumps), `dns/` and `util/`. Nothing here touches a socket,
 * a file or a runtime API; adapters do that.
 *
 * @example
 * ```ts
 * import { Balancer, parseGroups } from "./mod.ts";
 * const balancer = Balancer.fromSpecs(parseGroups(["127.0.0.1:81", "127.0.0.1:82"], 80, () => undefined),
 *   { autodisable: false, hashFailover: false });
 * ```
 *
 * @module
 */
export * from "./model/balancer.ts";
export * from "./model/channel.ts";
export * from "./model/group.ts";
export * from "./model/state.ts";
export * from "./selection/hash.ts";
export * from "./selection/schedule/least_connection.ts";
export * from "./selection/schedule/round_robin.ts";
export * from "./selection/select.ts";
export * from "./session/idle.ts";
export * from "./access/rules.ts";
export * from "./access/client_table.ts";
export * from "./access/gate.ts";
export * from "./proxy/proxy_header_reader.ts";
export * from "./proxy/proxy_protocol.ts";
export * from "./tls/client_hello.ts";
export * from "./tls/sni_routes.ts";
export * from "./udp/relay.ts";
export * from "./udp/flow.ts";
export * from "./ftp/addresses.ts";
export * from "./ftp/control.ts";
export * from "./ftp/data.ts";
export * from "./ftp/sessions.ts";
export * from "./health/health.ts";
export * from "./health/health_checker.ts";
export * from "./config/config_file.ts";
export * from "./config/dump.ts";
export * from "./config/escapes.ts";
export * from "./config/grammar.ts";
export * from "./config/reload.ts";
export * from "./commands/control.ts";
export * from "./observe/connection_log.ts";
export * from "./observe/metrics.ts";
export * from "./observe/packet_dump.ts";
export * from "./observe/throttle.ts";
export * from "./dns/name_watch.ts";
export * from "./util/bytes.ts";
export * from "./util/errors.ts";
export * from "./util/exit_error.ts";
export * from "./util/shown.ts";
export * from "./util/sysexits.ts";
export * from "./util/timer_queue.ts";
