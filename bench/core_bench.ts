/**
 * Micro-benchmarks of the core's per-connection work: picking a channel
 * (RR and Hash, with 3 and 1,000 channels), hashing a client address and the
 * counter updates of the relay. `deno bench bench/` runs them; the cost of a
 * pick must not grow with the channel count (O(1) amortised).
 */
import { Balancer, Channel, Group, hashClientAddress, pickChannels } from "../src/core/mod.ts";

function groupOf(type: "RR" | "Hash", n: number): Group {
  return new Group(type, Array.from({ length: n }, (_, i) => new Channel("127.0.0.1", 1 + (i % 65535))));
}

const clients = Array.from({ length: 1024 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.7`);
let k = 0;

for (const n of [3, 1000]) {
  const rr = [groupOf("RR", n)];
  Deno.bench(`pick RR, ${n} channels`, { group: "pick RR" }, () => {
    pickChannels(rr, clients[k++ & 1023], false).next();
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
  if (i % 10 !== 0) Object.assign(c, { maxc: 1, c: 1 });
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
  balancer.release(got!.channel);
});

const channel = new Channel("127.0.0.1", 80);
Deno.bench("count a relayed chunk", { group: "counters" }, () => {
  channel.countSent(1460);
});
