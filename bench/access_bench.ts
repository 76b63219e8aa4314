/**
 * Micro-benchmarks of who-may-connect (`deno bench bench/access_bench.ts`):
 * matching a client against 1,000 and 10,000 `--allow`/`--deny` rules (a
 * prefix tree: the cost follows the address length, not the rule count),
 * and the per-client limits' admit and release on the shared table. The
 * issue's budget is 1 µs for each.
 */
import { AccessRules, addressBytes, ClientGate, clientKey, ClientTable, SharedState } from "../src/core/mod.ts";

function rulesOf(n: number): AccessRules {
  const rules = Array.from({ length: n }, (_, i) => ({
    action: i % 2 ? "allow" as const : "deny" as const,
    spec: i % 3 ? `${10 + (i % 200)}.${(i >> 8) & 255}.${i & 255}.0/24` : `2001:db8:${i.toString(16)}::/48`,
  }));
  return new AccessRules([...rules, { action: "deny", spec: "all" }]);
}

const clients4 = Array.from({ length: 1024 }, (_, i) => addressBytes(`10.${(i >> 8) & 255}.${i & 255}.7`)!);
const clients6 = Array.from({ length: 1024 }, (_, i) => addressBytes(`2001:db8:${i.toString(16)}::7`)!);
let k = 0;

for (const n of [1_000, 10_000]) {
  const rules = rulesOf(n);
  Deno.bench(`rules: match an IPv4 client against ${n} rules`, () => {
    rules.match(clients4[k++ & 1023]);
  });
  Deno.bench(`rules: match an IPv6 client against ${n} rules`, () => {
    rules.match(clients6[k++ & 1023]);
  });
}

const table = ClientTable.create(65_536);
const limits = { maxOpen: 100, rate: { connections: 1e9, seconds: 1 } };
const keys = clients4.map(clientKey);
Deno.bench("client table: admit and release (both limits, 1,024 clients)", () => {
  const slot = table.admit(keys[k++ & 1023], limits, performance.now());
  if (typeof slot === "number") table.release(slot);
});

const state = SharedState.create({ groups: 1, channels: 1, writers: 1 });
const gate = new ClientGate(table, state, () => {}, {
  rules: [{ action: "deny", spec: "192.0.2.0/24" }],
  maxPerClient: 100,
  ratePerClient: { connections: 1_000_000, seconds: 1 },
});
const texts = Array.from({ length: 1024 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.7`);
Deno.bench("gate: a connection's whole check from the address text (rule, both limits), and its release", () => {
  const slot = gate.admit(texts[k++ & 1023]);
  if (typeof slot === "number") gate.release(slot);
});
