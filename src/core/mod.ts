/**
 * The runtime-agnostic core of balance: groups, channels, selection and
 * failover, hashing, counters and the command-line grammar. Nothing here
 * touches a socket, a file or a runtime API; adapters do that.
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
export * from "./balancer.ts";
export * from "./channel.ts";
export * from "./errors.ts";
export * from "./exit_error.ts";
export * from "./config_file.ts";
export * from "./connection_log.ts";
export * from "./dump.ts";
export * from "./reload.ts";
export * from "./grammar.ts";
export * from "./escapes.ts";
export * from "./health.ts";
export * from "./health_checker.ts";
export * from "./name_watch.ts";
export * from "./timer_queue.ts";
export * from "./group.ts";
export * from "./hash.ts";
export * from "./idle.ts";
export * from "./metrics.ts";
export * from "./packet_dump.ts";
export * from "./proxy_protocol.ts";
export * from "./proxy_header_reader.ts";
export * from "./bytes.ts";
export * from "./select.ts";
export * from "./schedule/least_connection.ts";
export * from "./schedule/round_robin.ts";
export * from "./sysexits.ts";
export * from "./control.ts";
export * from "./shown.ts";
export * from "./state.ts";
export * from "./throttle.ts";
