import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import {
  Balancer,
  CONNECT_BUCKETS,
  escapeLabelValue,
  parseGroups,
  renderMetrics,
  SharedState,
} from "../../../src/core/mod.ts";

const options = { autodisable: false, hashFailover: false };
const figures = { residentBytes: 1000, cpuSeconds: 1.5, startTimeSeconds: 1700000000, openFds: 7, maxFds: 1024 };

function render(balancer: Balancer, process: typeof figures | Omit<typeof figures, "openFds" | "maxFds"> = figures) {
  return renderMetrics({ balancer, version: "4.0.0", runtime: "deno 2.9.6", process });
}

// A connect through the balancer whose dial takes `ms` (the clock is faked) and fails when `fail` is set.
async function connectTaking(balancer: Balancer, ms: number[], fail: boolean[] = []) {
  const realNow = performance.now;
  let now = 0;
  let attempt = 0;
  performance.now = () => now;
  try {
    return await balancer.connect("10.0.0.1", () => {
      now += ms[attempt];
      if (fail[attempt++]) return Promise.reject(new Error("refused"));
      return Promise.resolve("conn");
    });
  } finally {
    performance.now = realNow;
  }
}

test("metrics: the exact text for one channel, one connection and one failure", async () => {
  const balancer = Balancer.fromSpecs(
    parseGroups(["127.0.0.1:81:5:3", "[::1]:82"], 80, () => undefined),
    options,
  );
  // The first client fails over from channel 0 (3 ms) to channel 1 (0.75 ms).
  const first = await connectTaking(balancer, [3, 0.75], [true, false]);
  assert.equal(first.channel, balancer.groups[0].channels[1]);
  balancer.groups[0].channels[1].countSent(10);
  balancer.groups[0].channels[1].countRcvd(20);
  const labels = (ch: number) => `group="0",channel="${ch}",address="${ch === 0 ? "127.0.0.1:81" : "[::1]:82"}"`;
  const hist = "balance_channel_connect_duration_seconds";
  const buckets = (ch: number, below: number) =>
    [...CONNECT_BUCKETS.map(String), "+Inf"].map((le, i) =>
      `${hist}_bucket{${labels(ch)},le="${le}"} ${i >= below ? 1 : 0}\n`
    )
      .join("");
  const expected = [
    "# HELP balance_channel_connections Connections open to the channel (c).\n",
    "# TYPE balance_channel_connections gauge\n",
    `balance_channel_connections{${labels(0)}} 0\n`,
    `balance_channel_connections{${labels(1)}} 1\n`,
    "# HELP balance_channel_max_connections Most connections at once (maxc); 0 = no limit.\n",
    "# TYPE balance_channel_max_connections gauge\n",
    `balance_channel_max_connections{${labels(0)}} 5\n`,
    `balance_channel_max_connections{${labels(1)}} 0\n`,
    "# HELP balance_channel_connections_total Connections made to the channel.\n",
    "# TYPE balance_channel_connections_total counter\n",
    `balance_channel_connections_total{${labels(0)}} 0\n`,
    `balance_channel_connections_total{${labels(1)}} 1\n`,
    "# HELP balance_channel_connect_failures_total Connects to the channel that failed or timed out.\n",
    "# TYPE balance_channel_connect_failures_total counter\n",
    `balance_channel_connect_failures_total{${labels(0)}} 1\n`,
    `balance_channel_connect_failures_total{${labels(1)}} 0\n`,
    "# HELP balance_channel_sent_bytes_total Bytes sent to the channel.\n",
    "# TYPE balance_channel_sent_bytes_total counter\n",
    `balance_channel_sent_bytes_total{${labels(0)}} 0\n`,
    `balance_channel_sent_bytes_total{${labels(1)}} 10\n`,
    "# HELP balance_channel_received_bytes_total Bytes received from the channel.\n",
    "# TYPE balance_channel_received_bytes_total counter\n",
    `balance_channel_received_bytes_total{${labels(0)}} 0\n`,
    `balance_channel_received_bytes_total{${labels(1)}} 20\n`,
    "# HELP balance_channel_enabled 1 if the channel is enabled, 0 if disabled.\n",
    "# TYPE balance_channel_enabled gauge\n",
    `balance_channel_enabled{${labels(0)}} 1\n`,
    `balance_channel_enabled{${labels(1)}} 1\n`,
    "# HELP balance_channel_up Health: 1 up (always without --check), 0 down.\n",
    "# TYPE balance_channel_up gauge\n",
    `balance_channel_up{${labels(0)}} 1\n`,
    `balance_channel_up{${labels(1)}} 1\n`,
    "# HELP balance_channel_weight The channel's weight (0-256).\n",
    "# TYPE balance_channel_weight gauge\n",
    `balance_channel_weight{${labels(0)}} 3\n`,
    `balance_channel_weight{${labels(1)}} 1\n`,
    "# HELP balance_channel_connect_duration_seconds Time to connect to the channel, failed attempts included.\n",
    "# TYPE balance_channel_connect_duration_seconds histogram\n",
    buckets(0, 3), // 3 ms: first in le="0.005"
    `${hist}_sum{${labels(0)}} 0.003\n`,
    `${hist}_count{${labels(0)}} 1\n`,
    buckets(1, 1), // 0.75 ms: first in le="0.001"
    `${hist}_sum{${labels(1)}} 0.00075\n`,
    `${hist}_count{${labels(1)}} 1\n`,
    "# HELP balance_clients_total Clients accepted.\n",
    "# TYPE balance_clients_total counter\n",
    "balance_clients_total 1\n",
    "# HELP balance_clients_rejected_total Clients closed because no channel took them.\n",
    "# TYPE balance_clients_rejected_total counter\n",
    "balance_clients_rejected_total 0\n",
    "# HELP balance_clients_proxy_refused_total Clients closed for a missing or malformed PROXY header (--accept-proxy).\n",
    "# TYPE balance_clients_proxy_refused_total counter\n",
    "balance_clients_proxy_refused_total 0\n",
    "# HELP balance_clients_denied_total Clients closed by an access rule (--deny, or a peer --proxy-from does not name).\n",
    "# TYPE balance_clients_denied_total counter\n",
    "balance_clients_denied_total 0\n",
    "# HELP balance_clients_sni_refused_total Clients closed for a malformed, oversized or late TLS ClientHello (--sni).\n",
    "# TYPE balance_clients_sni_refused_total counter\n",
    "balance_clients_sni_refused_total 0\n",
    "# HELP balance_ftp_data_refused_total Connections to an FTP data listener from another address than the client's or the channel's (--ftp).\n",
    "# TYPE balance_ftp_data_refused_total counter\n",
    "balance_ftp_data_refused_total 0\n",
    "# HELP balance_open_connections Proxied connections open or connecting now.\n",
    "# TYPE balance_open_connections gauge\n",
    "balance_open_connections 1\n",
    "# HELP balance_build_info Always 1: the version and runtime as labels.\n",
    "# TYPE balance_build_info gauge\n",
    'balance_build_info{version="4.0.0",runtime="deno 2.9.6"} 1\n',
    "# HELP process_resident_memory_bytes Resident memory size in bytes.\n",
    "# TYPE process_resident_memory_bytes gauge\n",
    "process_resident_memory_bytes 1000\n",
    "# HELP process_cpu_seconds_total User and system CPU time spent in seconds.\n",
    "# TYPE process_cpu_seconds_total counter\n",
    "process_cpu_seconds_total 1.5\n",
    "# HELP process_open_fds Number of open file descriptors.\n",
    "# TYPE process_open_fds gauge\n",
    "process_open_fds 7\n",
    "# HELP process_max_fds Maximum number of open file descriptors.\n",
    "# TYPE process_max_fds gauge\n",
    "process_max_fds 1024\n",
    "# HELP process_start_time_seconds Start time of the process since the Unix epoch in seconds.\n",
    "# TYPE process_start_time_seconds gauge\n",
    "process_start_time_seconds 1700000000\n",
    "# HELP balance_clients_limited_total Clients closed by a per-client limit (--max-per-client: concurrent, --rate-per-client: rate).\n",
    "# TYPE balance_clients_limited_total counter\n",
    'balance_clients_limited_total{limit="concurrent"} 0\n',
    'balance_clients_limited_total{limit="rate"} 0\n',
  ].join("");
  assert.equal(render(balancer), expected);
});

test("metrics: histogram buckets are cumulative and bounds are inclusive", async () => {
  const balancer = Balancer.fromSpecs(parseGroups(["127.0.0.1:81"], 80, () => undefined), options);
  // 0.5 ms exactly (le="0.0005"), 2 ms, 2 ms, 10 s exactly, 11 s (only +Inf).
  for (const ms of [0.5, 2, 2, 10_000, 11_000]) await connectTaking(balancer, [ms]);
  const text = render(balancer);
  const bucket = (le: string) =>
    Number(new RegExp(`_bucket\\{[^}]*,le="${le.replace("+", "\\+")}"\\} (\\d+)`).exec(text)![1]);
  assert.deepEqual(
    ["0.0005", "0.001", "0.0025", "0.005", "5", "10", "+Inf"].map(bucket),
    [1, 1, 3, 3, 3, 4, 5],
  );
  assert.match(text, /_count\{[^}]*\} 5\n/);
  assert.match(text, /_sum\{[^}]*\} 21\.0045\n/);
});

test("metrics: label values are escaped; a figure the platform lacks is left out", () => {
  assert.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  const balancer = new Balancer([]);
  balancer.addChannel(0, 'odd"host\\\n', 81, 0, true);
  const text = render(balancer, { residentBytes: 1, cpuSeconds: 0, startTimeSeconds: 2 });
  assert.match(text, /^balance_channel_connections\{group="0",channel="0",address="odd\\"host\\\\\\n:81"\} 0$/m);
  assert.doesNotMatch(text, /process_open_fds|process_max_fds/);
  assert.match(text, /^process_start_time_seconds 2$/m);
});

test("metrics: counters add up over writers and never go back with reset", async () => {
  const main = Balancer.fromSpecs(parseGroups(["127.0.0.1:81"], 80, () => undefined), options, undefined, undefined, 2);
  const worker = new Balancer([], options, undefined, new SharedState(main.state.handle, 1));
  worker.adopt(main.layout());
  await connectTaking(main, [1]);
  await connectTaking(worker, [1]);
  worker.groups[0].channels[0].countSent(5);
  const channel = main.groups[0].channels[0];
  assert.equal(channel.totalc, 2);
  channel.totalc = 0;
  channel.sent = 0;
  assert.deepEqual([channel.totalc, channel.sent], [0, 0], "show reads from the baseline");
  const text = render(main);
  assert.match(text, /^balance_channel_connections_total\{[^}]*\} 2$/m);
  assert.match(text, /^balance_channel_sent_bytes_total\{[^}]*\} 5$/m);
  assert.match(text, /^balance_clients_total 2$/m);
});

test("metrics: a client no channel takes is rejected; a failed connect is no connection", async () => {
  const balancer = Balancer.fromSpecs(parseGroups(["127.0.0.1:81"], 80, () => undefined), options);
  const failed = await connectTaking(balancer, [1], [true]);
  assert.deepEqual(failed, { channel: undefined, reason: "connect-failed" });
  balancer.groups[0].channels[0].enabled = false;
  const none = await connectTaking(balancer, []);
  assert.deepEqual(none, { channel: undefined, reason: "no-channel" });
  const text = render(balancer);
  assert.match(text, /^balance_clients_total 2$/m);
  assert.match(text, /^balance_clients_rejected_total 2$/m);
  assert.match(text, /^balance_channel_connections_total\{[^}]*\} 0$/m);
  assert.match(text, /^balance_channel_connect_failures_total\{[^}]*\} 1$/m);
  assert.match(text, /^balance_channel_enabled\{[^}]*\} 0$/m);
  assert.equal(balancer.groups[0].channels[0].totalc, 0);
});

// A scrape's cost grows with the channels and no faster: 1,000 channels cost
// about ten times what 100 do. Compared in one run, best of 5 each, so that a
// busy machine slows both alike; an absolute bound would fail under load.
test("metrics: a scrape of 1,000 channels costs at most 30 times one of 100 (linear, not worse)", async () => {
  const scrape = async (channels: number) => {
    const balancer = new Balancer([]);
    for (let i = 0; i < channels; i++) balancer.addChannel(Math.floor(i / 100), "10.0.0.1", 1000 + i, 0, true);
    for (let i = 0; i < 200; i++) await connectTaking(balancer, [i % 20]);
    render(balancer); // warm up
    const times: number[] = [];
    let text = "";
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      text = render(balancer);
      times.push(performance.now() - started);
    }
    assert.equal(text.split("\n").filter((l) => l.startsWith("balance_channel_connections_total{")).length, channels);
    return Math.min(...times);
  };
  const small = await scrape(100);
  const large = await scrape(1000);
  console.log(`scrape of 100 channels: ${small.toFixed(2)} ms, of 1,000: ${large.toFixed(2)} ms (best of 5)`);
  assert.ok(large < 30 * small + 5, `1,000 channels took ${large.toFixed(1)} ms, 100 took ${small.toFixed(1)} ms`);
});
