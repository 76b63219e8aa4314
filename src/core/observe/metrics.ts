/**
 * The Prometheus exposition (text format 0.0.4) of a balancer: read from the
 * shared state at scrape time, so that every worker's numbers are summed and
 * nothing is kept or pushed between scrapes.
 *
 * @module
 */
import { type Balancer, formatHostPort } from "../model/balancer.ts";
import { type Channel, type ChannelCounts, CONNECT_BUCKETS } from "../model/channel.ts";
import { DROP_REASONS } from "../model/state.ts";

/** The `Content-Type` of {@link renderMetrics}'s text. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** The figures of the standard `process_*` metrics; a figure the platform does not tell is left out. */
export interface ProcessFigures {
  residentBytes: number;
  /** User and system CPU time. */
  cpuSeconds: number;
  /** Since the Unix epoch. */
  startTimeSeconds: number;
  openFds?: number;
  maxFds?: number;
}

/** What one scrape reads. */
export interface MetricsSources {
  balancer: Balancer;
  /** `balance_build_info`'s labels. */
  version: string;
  runtime: string;
  process: ProcessFigures;
  /** `--udp`/`--udp-only`: the datagram and session families are written too. */
  udp?: boolean;
}

// One channel as a scrape sees it: read once, written by every family.
interface Row {
  channel: Channel;
  labels: string;
  counts: ChannelCounts;
}

type Family = [name: string, type: "gauge" | "counter", help: string, value: (row: Row) => number];

const CHANNEL_FAMILIES: Family[] = [
  ["balance_channel_connections", "gauge", "Connections open to the channel (c).", (r) => r.channel.c],
  ["balance_channel_max_connections", "gauge", "Most connections at once (maxc); 0 = no limit.", (r) => r.channel.maxc],
  ["balance_channel_connections_total", "counter", "Connections made to the channel.", (r) => r.counts.connections],
  [
    "balance_channel_connect_failures_total",
    "counter",
    "Connects to the channel that failed or timed out.",
    (r) => r.counts.connectFailures,
  ],
  ["balance_channel_sent_bytes_total", "counter", "Bytes sent to the channel.", (r) => r.counts.sent],
  ["balance_channel_received_bytes_total", "counter", "Bytes received from the channel.", (r) => r.counts.rcvd],
  ["balance_channel_enabled", "gauge", "1 if the channel is enabled, 0 if disabled.", (r) => Number(r.channel.enabled)],
  ["balance_channel_up", "gauge", "Health: 1 up (always without --check), 0 down.", (r) => Number(r.channel.up)],
  ["balance_channel_weight", "gauge", "The channel's weight (0-256).", (r) => r.channel.weight],
];

const HISTOGRAM = "balance_channel_connect_duration_seconds";
// The `le` label of each bucket, +Inf last.
const LE = [...CONNECT_BUCKETS.map(String), "+Inf"].map((le) => `,le="${le}"`);

/**
 * The metrics text of one scrape: every channel's gauges, counters and
 * connect-time histogram (labels `group`, `channel`, `address`), the
 * balancer's totals, build information and the process figures. Counters are
 * the raw sums since the start: `reset` only moves what `show` reports.
 *
 * @example
 * ```ts
 * const text = renderMetrics({ balancer, version: "4.0.0", runtime: "deno 2.9.6", process: processFigures() });
 * text.includes('balance_channel_connections_total{group="0",channel="0",address="127.0.0.1:81"}'); // true
 * ```
 */
export function renderMetrics(sources: MetricsSources): string {
  const { balancer, process } = sources;
  const rows: Row[] = balancer.groups.flatMap((g, gi) =>
    g.channels.map((channel, ci) => ({
      channel,
      // The default service's label is left out: an empty label is no label.
      labels: `${g.service ? `service="${escapeLabelValue(g.service)}",` : ""}group="${gi}",channel="${ci}",address="${
        escapeLabelValue(formatHostPort(channel.address, channel.port))
      }"`,
      counts: channel.counts(),
    }))
  );
  const out: string[] = [];
  const header = (name: string, type: string, help: string) =>
    out.push(`# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`);
  for (const [name, type, help, value] of CHANNEL_FAMILIES) {
    header(name, type, help);
    for (const row of rows) out.push(`${name}{${row.labels}} ${formatValue(value(row))}\n`);
  }
  header(HISTOGRAM, "histogram", "Time to connect to the channel, failed attempts included.");
  for (const { labels, counts } of rows) {
    let cumulative = 0;
    counts.connectBuckets.forEach((n, i) => {
      cumulative += n;
      out.push(`${HISTOGRAM}_bucket{${labels}${LE[i]}} ${cumulative}\n`);
    });
    out.push(`${HISTOGRAM}_sum{${labels}} ${formatValue(counts.connectSeconds)}\n`);
    out.push(`${HISTOGRAM}_count{${labels}} ${cumulative}\n`);
  }
  const state = balancer.state;
  const build = `{version="${escapeLabelValue(sources.version)}",runtime="${escapeLabelValue(sources.runtime)}"}`;
  const singles: [name: string, type: string, help: string, value: number | undefined, labels?: string][] = [
    ["balance_clients_total", "counter", "Clients accepted.", state.clients],
    ["balance_clients_rejected_total", "counter", "Clients closed because no channel took them.", state.rejected],
    [
      "balance_clients_proxy_refused_total",
      "counter",
      "Clients closed for a missing or malformed PROXY header (--accept-proxy).",
      state.proxyRefused,
    ],
    [
      "balance_clients_denied_total",
      "counter",
      "Clients closed by an access rule (--deny, or a peer --proxy-from does not name).",
      state.denied,
    ],
    [
      "balance_clients_sni_refused_total",
      "counter",
      "Clients closed for a malformed, oversized or late TLS ClientHello (--sni).",
      state.sniRefused,
    ],
    [
      "balance_ftp_data_refused_total",
      "counter",
      "Connections to an FTP data listener from another address than the client's or the channel's (--ftp).",
      state.ftpDataRefused,
    ],
    ["balance_open_connections", "gauge", "Proxied connections open or connecting now.", state.open],
    ["balance_build_info", "gauge", "Always 1: the version and runtime as labels.", 1, build],
    ["process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", process.residentBytes],
    ["process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.", process.cpuSeconds],
    ["process_open_fds", "gauge", "Number of open file descriptors.", process.openFds],
    ["process_max_fds", "gauge", "Maximum number of open file descriptors.", process.maxFds],
    [
      "process_start_time_seconds",
      "gauge",
      "Start time of the process since the Unix epoch in seconds.",
      process.startTimeSeconds,
    ],
  ];
  for (const [name, type, help, value, labels = ""] of singles) {
    // A figure the platform does not tell is left out, family and all.
    if (value === undefined) continue;
    header(name, type, help);
    out.push(`${name}${labels} ${formatValue(value)}\n`);
  }
  header(
    "balance_clients_limited_total",
    "counter",
    "Clients closed by a per-client limit (--max-per-client: concurrent, --rate-per-client: rate).",
  );
  for (const limit of ["concurrent", "rate"] as const) {
    out.push(`balance_clients_limited_total{limit="${limit}"} ${state.limited(limit)}\n`);
  }
  if (sources.udp) {
    header(
      "balance_channel_datagrams_total",
      "counter",
      "UDP datagrams relayed to (sent) and from (received) the channel.",
    );
    for (const { labels, counts } of rows) {
      out.push(`balance_channel_datagrams_total{${labels},direction="sent"} ${counts.datagramsSent}\n`);
      out.push(`balance_channel_datagrams_total{${labels},direction="received"} ${counts.datagramsRcvd}\n`);
    }
    header("balance_udp_sessions", "gauge", "UDP sessions open now.");
    out.push(`balance_udp_sessions ${state.udpSessions}\n`);
    header(
      "balance_udp_dropped_total",
      "counter",
      "Client datagrams dropped: over-cap (--udp-max-sessions, descriptors), no-channel, too-large.",
    );
    for (const reason of DROP_REASONS) {
      out.push(`balance_udp_dropped_total{reason="${reason}"} ${state.udpDropped(reason)}\n`);
    }
  }
  return out.join("");
}

/**
 * A label value as the text format writes it between double quotes:
 * backslash, double quote and line feed escaped.
 *
 * @example
 * ```ts
 * escapeLabelValue('a"b\\c\n'); // 'a\\"b\\\\c\\n'
 * ```
 */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

// Go's ParseFloat, which Prometheus uses, reads JavaScript's number text
// except for the infinities.
function formatValue(n: number): string {
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}
