import type { GroupSpec } from "../core/config/grammar.ts";
import type { HealthSettings } from "../core/health/health.ts";
import type { AccessSettings } from "../core/access/gate.ts";
import type { SniRoute } from "../core/tls/sni_routes.ts";
import type { FtpSettings } from "../core/ftp/sessions.ts";
import type { EngineName } from "../core/commands/control.ts";

/** What a command line asks for. */
export type Mode = "serve" | "control" | "interactive" | "list" | "help" | "version";

/**
 * Everything a command line says, with balance 3.54's defaults explicit.
 *
 * @example
 * ```ts
 * const config: Config = { ...DEFAULTS, mode: "serve", listenPort: 80, groups };
 * ```
 */
export interface Config {
  mode: Mode;
  listenPort: number;
  /** `-b`: listen address; undefined = all addresses. */
  bindAddress?: string;
  /** `-B`: source address of outgoing connections. */
  sourceAddress?: string;
  /** `-t`: connect timeout in seconds. */
  connectTimeout: number;
  /** `-T`: idle timeout in seconds, 0 = never. */
  idleTimeout: number;
  autodisable: boolean;
  debug: boolean;
  foreground: boolean;
  packetDump: boolean;
  hashFailover: boolean;
  ipv6: boolean;
  /** `-c`: the one control command. */
  command?: string;
  /** `--log-file`: where balance logs (too, with `-f`) instead of syslog. */
  logFile?: string;
  /** `--log-connections`: one info line per connection when it ends. */
  logConnections: boolean;
  /** `--syslog HOST[:PORT]`: a syslog server to send the log to over UDP. */
  syslog?: { host: string; port: number };
  /** `--grace`: seconds open connections may finish after SIGTERM/SIGINT. */
  graceSeconds: number;
  /** `-w`: worker threads accepting on the port; 1 = the main thread alone. */
  workers: number;
  /** `--check` and its options; undefined = no health checks. */
  check?: HealthSettings;
  /** `--resolve-interval`: seconds between lookups of channels given by name; 0 = only at start. */
  resolveInterval: number;
  /** `--metrics [ADDR:]PORT`: where to serve /metrics and /status; undefined = nowhere. */
  metrics?: { host: string; port: number };
  /** `--resolver ADDR[:PORT]`: the DNS server to ask; undefined = the system's resolver. */
  resolver?: { host: string; port: number };
  /** `--proxy-protocol v1|v2`: the PROXY header version sent to channels; undefined = none. */
  proxyProtocol?: 1 | 2;
  /** `--accept-proxy`: every client must begin with a PROXY header. */
  acceptProxy: boolean;
  /** `--allow`/`--deny`, `--proxy-from`, `--max-per-client`, `--rate-per-client`. */
  access: AccessSettings;
  /** `--sni PATTERN=@NAME`, in the order given; none = nothing is read ahead. */
  sni: SniRoute[];
  /** `--sni-default @NAME`: the service of clients no `--sni` places; absent, the default service. */
  sniDefault?: string;
  /** `--ftp`, `--ftp-address`, `--ftp-data-ports`; undefined = bytes pass untouched. */
  ftp?: FtpSettings;
  /** `--client-table`: clients the per-client limits remember. */
  clientTable: number;
  /** `--engine`: what moves TCP bytes; `native` only where it can run (else the runtime's). */
  engine: EngineName;
  /** `--udp`/`--udp-only` and their options; undefined = TCP only. */
  udp?: UdpConfig;
  groups: GroupSpec[];
  /** `--check-config`: parse and resolve, then exit 0 without serving. */
  checkConfig: boolean;
  /** The files `-F`/`--config` named, read again by a reload; none = nothing to reload. */
  configFiles: string[];
  /**
   * The options in force as command-line words (no `-f`, `-d`, `-L`, `-F`,
   * `--check-config`), for `dump`: what describes the service, not how this
   * process runs.
   */
  optionWords: string[];
}

/**
 * `--udp` (UDP as well as TCP) or `--udp-only`, as the command line gives them.
 *
 * @example
 * ```ts
 * const udp: UdpConfig = { only: false, timeout: 30, responses: 1 };
 * ```
 */
export interface UdpConfig {
  /** `--udp-only`: no TCP listener. */
  only: boolean;
  /** `--udp-timeout`: seconds without a datagram either way before a session ends. */
  timeout: number;
  /** `--udp-responses`: datagrams from the channel that end a session; 0 = none does. */
  responses: number;
  /** `--udp-max-sessions`: most sessions at once; undefined = as descriptors allow. */
  maxSessions?: number;
}

/** `--udp-timeout` without a value: nginx's `proxy_timeout` is 10 minutes, which is long for DNS. */
export const UDP_TIMEOUT = 30;

/** balance's defaults, for everything a command line may leave out. */
export const DEFAULTS: Omit<Config, "mode" | "listenPort" | "groups"> = {
  connectTimeout: 5,
  idleTimeout: 0,
  autodisable: false,
  debug: false,
  foreground: false,
  packetDump: false,
  hashFailover: false,
  ipv6: false,
  graceSeconds: 10,
  logConnections: false,
  workers: 1,
  resolveInterval: 30,
  acceptProxy: false,
  access: { rules: [] },
  clientTable: 65_536,
  engine: "runtime",
  sni: [],
  checkConfig: false,
  configFiles: [],
  optionWords: [],
};
