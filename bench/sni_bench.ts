/**
 * Micro-benchmarks of `--sni` (`deno bench bench/sni_bench.ts`): reading
 * real ClientHellos (curl's 517 bytes in one read; Bun's 1,475, which a
 * 1,460-byte MSS cuts in two reads), and routing a host name against 1,000
 * patterns, half exact and half wildcards, for an exact hit, a wildcard hit
 * three labels down and a miss. Routing costs at most a map lookup per
 * label of the name, so the pattern count does not show.
 */
import { ClientHelloReader, parseSniRoute, SniRoutes } from "../src/core/mod.ts";
import { BUN, CURL, helloBytes } from "../tests/core/tls/fixtures.ts";

const curl = helloBytes(CURL);
const bun = helloBytes(BUN);
const [bunFirst, bunSecond] = [bun.subarray(0, 1460), bun.subarray(1460)];

Deno.bench("ClientHello: curl's 517 bytes in one read", { group: "hello" }, () => {
  new ClientHelloReader().push(curl);
});
Deno.bench("ClientHello: Bun's 1,475 bytes in two reads (1,460 + 15)", { group: "hello" }, () => {
  const reader = new ClientHelloReader();
  reader.push(bunFirst);
  reader.push(bunSecond);
});

const routes = new SniRoutes(
  Array.from(
    { length: 1000 },
    (_, i) => parseSniRoute(i % 2 ? `svc-${i}.example.com=@s${i}` : `*.svc-${i}.example.com=@s${i}`),
  ),
);
let k = 0;
const exactNames = Array.from({ length: 500 }, (_, i) => `svc-${2 * i + 1}.example.com`);
const wildcardNames = Array.from({ length: 500 }, (_, i) => `a.b.c.svc-${2 * i}.example.com`);

Deno.bench("route: exact hit among 1,000 patterns", { group: "route" }, () => {
  routes.route(exactNames[k++ % 500]);
});
Deno.bench("route: wildcard hit 3 labels down among 1,000 patterns", { group: "route" }, () => {
  routes.route(wildcardNames[k++ % 500]);
});
Deno.bench("route: miss among 1,000 patterns", { group: "route" }, () => {
  routes.route("www.nowhere.example.org");
});
