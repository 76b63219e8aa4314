/**
 * `--sni` routes: an exact pattern beats a wildcard, the longest wildcard
 * wins, `*` stands for one or more labels, case and a trailing dot never
 * count; every malformed word and every pattern given twice is one usage
 * line (exit 64); and the maps agree with a scan of every pattern.
 */
import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import fc from "fast-check";
import { parseSniRoute, type SniRoute, SniRoutes } from "../../../src/core/tls/sni_routes.ts";
import { shown } from "../../../src/core/util/shown.ts";

const routesOf = (...words: string[]) => new SniRoutes(words.map(parseSniRoute));
const serviceFor = (routes: SniRoutes, name: string) => routes.route(name)?.service ?? "none";

test("SniRoutes: an exact pattern beats a wildcard, the longest wildcard wins, whatever the order given", () => {
  const words = ["*.example=@web", "*.api.example=@api", "admin.api.example=@admin", "api.example=@bare"];
  for (const order of [words, [...words].reverse()]) {
    const routes = routesOf(...order);
    assert.equal(serviceFor(routes, "admin.api.example"), "admin");
    assert.equal(serviceFor(routes, "x.admin.api.example"), "api", "an exact pattern covers no name below it");
    assert.equal(serviceFor(routes, "v1.api.example"), "api");
    assert.equal(serviceFor(routes, "api.example"), "bare");
    assert.equal(serviceFor(routes, "www.example"), "web");
    assert.equal(serviceFor(routes, "example"), "none");
    assert.equal(serviceFor(routes, "example.org"), "none");
    assert.deepEqual(routes.route("v1.api.example"), { pattern: "*.api.example", service: "api" });
  }
});

test("SniRoutes: '*.suffix' stands for one or more labels, never none", () => {
  const routes = routesOf("*.api.example=@api");
  assert.equal(serviceFor(routes, "a.api.example"), "api");
  assert.equal(serviceFor(routes, "x.y.api.example"), "api");
  assert.equal(serviceFor(routes, "a.b.c.d.api.example"), "api");
  assert.equal(serviceFor(routes, "api.example"), "none");
  assert.equal(serviceFor(routes, "xapi.example"), "none", "a suffix matches whole labels");
  assert.equal(serviceFor(routes, "a.api.example.org"), "none");
  assert.equal(serviceFor(routes, ""), "none");
});

test("SniRoutes: case and one trailing dot count neither in patterns nor in names", () => {
  const routes = routesOf("WWW.Example.COM.=@web", "*.API.example.=@Api");
  assert.deepEqual(routes.route("www.example.com"), { pattern: "www.example.com", service: "web" });
  assert.equal(serviceFor(routes, "WWW.EXAMPLE.COM."), "web");
  assert.deepEqual(
    routes.route("V1.api.EXAMPLE."),
    { pattern: "*.api.example", service: "Api" },
    "NAME keeps its case",
  );
  assert.equal(serviceFor(routes, "www.example.com.."), "none");
  // Patterns built by hand are put in the same form.
  assert.equal(serviceFor(new SniRoutes([{ pattern: "*.A.test.", service: "a" }]), "x.a.TEST"), "a");
});

test("parseSniRoute: PATTERN=@NAME, the pattern lowercase without a trailing dot", () => {
  const label63 = "a".repeat(63);
  const longest = `${label63}.${label63}.${label63}.${"b".repeat(61)}`;
  const cases: [string, SniRoute][] = [
    ["a.test=@web", { pattern: "a.test", service: "web" }],
    ["*.A.Test.=@Api_1.x-2", { pattern: "*.a.test", service: "Api_1.x-2" }],
    ["localhost=@local", { pattern: "localhost", service: "local" }],
    ["*.com=@com", { pattern: "*.com", service: "com" }],
    ["_acme-challenge.a.test=@acme", { pattern: "_acme-challenge.a.test", service: "acme" }],
    [`${label63}.test=@x`, { pattern: `${label63}.test`, service: "x" }],
    [`${longest}=@x`, { pattern: longest, service: "x" }],
    [`${longest}.=@x`, { pattern: longest, service: "x" }],
    [`a.test=@${"n".repeat(64)}`, { pattern: "a.test", service: "n".repeat(64) }],
  ];
  for (const [word, route] of cases) assert.deepEqual(parseSniRoute(word), route, word);
});

/** Asserts that `fn` throws one usage line, `message`, with exit code 64. */
function usage(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: Error & { exitCode?: number }) => {
    assert.equal(err.message, message);
    assert.equal(err.exitCode, 64);
    return true;
  });
}

test("parseSniRoute: each malformed word is one usage line quoting it (exit 64)", () => {
  const label64 = "a".repeat(64);
  const long = `${"a".repeat(63)}.${"a".repeat(63)}.${"a".repeat(63)}.${"a".repeat(62)}`;
  const cases: [string, string][] = [
    ["a.test", "must be PATTERN=@NAME"],
    ["a.test=web", "must be PATTERN=@NAME"],
    ["a.test@web", "must be PATTERN=@NAME"],
    ["=@web", "must be PATTERN=@NAME"],
    ["", "must be PATTERN=@NAME"],
    ["a.test=@", "NAME must be 1-64 letters, digits, '-', '_' or '.'"],
    ["a.test=@a b", "NAME must be 1-64 letters, digits, '-', '_' or '.'"],
    ["a.test=@@web", "NAME must be 1-64 letters, digits, '-', '_' or '.'"],
    ["a.test=@x=@y", "NAME must be 1-64 letters, digits, '-', '_' or '.'"],
    [`a.test=@${"n".repeat(65)}`, "NAME must be 1-64 letters, digits, '-', '_' or '.'"],
    ["*=@web", "'*' needs a suffix, as in *.example.com"],
    ["*.=@web", "'*' needs a suffix, as in *.example.com"],
    ["a.*.test=@web", "'*' may only be the whole first label, as in *.example.com"],
    ["*a.test=@web", "'*' may only be the whole first label, as in *.example.com"],
    ["*.*.test=@web", "'*' may only be the whole first label, as in *.example.com"],
    ["a..test=@web", "PATTERN has an empty label"],
    [".a.test=@web", "PATTERN has an empty label"],
    ["a.test..=@web", "PATTERN has an empty label"],
    ["*..test=@web", "PATTERN has an empty label"],
    ["a b.test=@web", "label 'a b' is not 1-63 letters, digits, '-' or '_'"],
    ["a:443=@web", "label 'a:443' is not 1-63 letters, digits, '-' or '_'"],
    ["café.test=@web", "label 'caf\\u00e9' is not 1-63 letters, digits, '-' or '_'"],
    [`${label64}.test=@web`, `label '${label64}' is not 1-63 letters, digits, '-' or '_'`],
    [`${long}=@web`, "PATTERN is longer than 253 characters"],
  ];
  // The word is quoted as shown() puts it: control characters escaped, cut after 80, one line whatever it holds.
  for (const [word, why] of cases) usage(() => parseSniRoute(word), `invalid --sni '${shown(word)}': ${why}`);
  usage(
    () => parseSniRoute("a\n.test=@web"),
    "invalid --sni 'a\\n.test=@web': label 'a\\n' is not 1-63 letters, digits, '-' or '_'",
  );
});

test("SniRoutes: a pattern given twice, however written, is a usage error naming it", () => {
  usage(() => routesOf("a.test=@x", "b.test=@y", "A.Test.=@z"), "--sni pattern 'a.test' given twice");
  usage(() => routesOf("*.a.test=@x", "*.A.TEST=@x"), "--sni pattern '*.a.test' given twice");
  // An exact name and the wildcard on it are two patterns.
  assert.equal(serviceFor(routesOf("a.test=@x", "*.a.test=@y"), "a.test"), "x");
});

/** The definition, one pattern at a time: the exact one, else the matching wildcard with the longest suffix. */
function scan(routes: SniRoute[], name: string): SniRoute | undefined {
  const bare = (text: string) => text.toLowerCase().replace(/\.$/, "");
  const n = bare(name);
  const patterns = routes.map((r) => ({ pattern: bare(r.pattern), service: r.service }));
  const exact = patterns.find((r) => r.pattern === n);
  if (exact) return exact;
  const matching = patterns.filter((r) => r.pattern.startsWith("*.") && n.endsWith(r.pattern.slice(1)));
  return matching.sort((a, b) => b.pattern.length - a.pattern.length)[0];
}

test("SniRoutes: the maps agree with a scan of every pattern (property)", () => {
  // Few labels, so that names and patterns meet often.
  const label = fc.constantFrom("a", "b", "api", "x-1", "_s");
  const cased = (text: string) => fc.constantFrom(text, text.toUpperCase(), `${text}.`);
  const host = fc.array(label, { minLength: 1, maxLength: 4 }).map((labels) => labels.join("."));
  const pattern = fc.tuple(fc.boolean(), host).chain(([wild, h]) => cased(wild ? `*.${h}` : h));
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.tuple(pattern, label), {
        selector: ([p]) => p.toLowerCase().replace(/\.$/, ""),
        maxLength: 30,
      }),
      fc.array(host.chain(cased), { minLength: 1, maxLength: 20 }),
      (given, names) => {
        const routes = given.map(([p, service]) => ({ pattern: p, service }));
        const sni = new SniRoutes(routes);
        for (const name of names) assert.deepEqual(sni.route(name), scan(routes, name), name);
      },
    ),
    { numRuns: 2000 },
  );
});
