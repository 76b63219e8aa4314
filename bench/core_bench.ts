/**
 * Micro-benchmarks of the core's per-connection work: picking a channel
 * (RR with all weights 1 and with mixed weights, least connection, Hash,
 * with 3 and 1,000 channels), hashing a client address and the counter
 * updates of the relay. `deno bench bench/` runs them; the cost of an RR or
 * Hash pick must not grow with the channel count (O(1) amortised), a least
 * connection pick looks at every channel once (O(n)).
 */
import { Balancer, Channel, Group, type GroupType, hashClientAddress, pickChannels } from "../src/core/mod.ts";

/** `n` channels, laid out as the balancer lays them (one shared state); `weight(i)` 1 by default. */
function groupOf(type: GroupType, n: number, weight: (i: number) => number = () => 1): Group {
  const channels = Array.from({ length: n }, (_, i) => ({ host: "127.0.0.1", port: 1 + (i % 65535), maxc: 0 }));
  const balancer = Balancer.fromSpecs(
    [{ type, channels: channels.map((c, i) => ({ ...c, weight: weight(i) })) }],
    { autodisable: false, hashFailover: false },
  );
  return balancer.groups[0];
}

/** The per-connection path: walk the picks, claim the first that takes it; released at once here. */
function claimOne(groups: Group[], client: string): void {
  for (const channel of pickChannels(groups, client, false)) {
    if (channel.tryClaim()) return channel.release();
  }
}

const clients = Array.from({ length: 1024 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.7`);
let k = 0;

for (const n of [3, 1000]) {
  const rr = [groupOf("RR", n)];
  Deno.bench(`pick RR, ${n} channels`, { group: "pick RR" }, () => {
    pickChannels(rr, clients[k++ & 1023], false).next();
  });
  const rrClaim = [groupOf("RR", n)];
  Deno.bench(`pick + claim RR, weights 1, ${n} channels`, { group: "pick + claim" }, () => {
    claimOne(rrClaim, clients[k++ & 1023]);
  });
  const wrr = [groupOf("RR", n, (i) => 1 + (i % 4))];
  Deno.bench(`pick + claim RR, weights 1-4, ${n} channels`, { group: "pick + claim" }, () => {
    claimOne(wrr, clients[k++ & 1023]);
  });
  const lc = [groupOf("LC", n)];
  Deno.bench(`pick + claim LC, ${n} channels`, { group: "pick + claim" }, () => {
    claimOne(lc, clients[k++ & 1023]);
  });
  const hash = [groupOf("Hash", n)];
  Deno.bench(`pick Hash, ${n} channels`, { group: "pick Hash" }, () => {
    pickChannels(hash, clients[k++ & 1023], false).next();
  });
}

// RR with most channels full: the walk skips them, so the cost is that of
// the skipped run, not of the group size.
const mostlyFull = groupOf("RR", 1000);
mostlyFull.channels.forEach((c, i) => {
  if (i % 10 !== 0) {
    c.maxc = 1;
    c.tryClaim();
  }
});
Deno.bench("pick RR, 1000 channels, 9 in 10 full", { group: "pick RR" }, () => {
  pickChannels([mostlyFull], "10.0.0.1", false).next();
});

Deno.bench("hash IPv4 client", { group: "hash" }, () => {
  hashClientAddress(clients[k++ & 1023]);
});
Deno.bench("hash IPv6 client", { group: "hash" }, () => {
  hashClientAddress("2001:db8::1:2:3");
});

const balancer = new Balancer([groupOf("RR", 1000)]);
const connected = Promise.resolve("conn");
Deno.bench("connect + release (claim, counters), 1000 channels", async () => {
  const got = await balancer.connect("10.0.0.1", () => connected);
  balancer.release(got.channel!);
});

const channel = new Channel("127.0.0.1", 80);
Deno.bench("count a relayed chunk", { group: "counters" }, () => {
  channel.countSent(1460);
});
