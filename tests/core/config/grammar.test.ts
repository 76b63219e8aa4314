import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import { ExitError, parseChannel, parseGroups, parsePort, parseServices } from "../../../src/core/mod.ts";

const services = parseServices("# comment\nsmtp\t\t25/tcp\t\tmail\nhttp 80/tcp www # web\nsyslog 514/udp\n");

function usageFails(fn: () => unknown, message: RegExp | ((m: string) => boolean)) {
  const matches = typeof message === "function" ? message : (m: string) => message.test(m);
  assert.throws(fn, (err: unknown) => err instanceof ExitError && err.exitCode === 64 && matches(err.message));
}

test("ports: numbers 1-65535", () => {
  assert.equal(parsePort("1", services), 1);
  assert.equal(parsePort("65535", services), 65535);
  usageFails(() => parsePort("0", services), /invalid port '0'/);
  usageFails(() => parsePort("65536", services), /1-65535/);
  usageFails(() => parsePort("", services), /invalid port/);
  usageFails(() => parsePort("-5", services), /invalid port/);
});
test("ports: service names and aliases, tcp only", () => {
  assert.equal(parsePort("smtp", services), 25);
  assert.equal(parsePort("mail", services), 25);
  assert.equal(parsePort("www", services), 80);
  usageFails(() => parsePort("syslog", services), /not a number or known service/);
  usageFails(() => parsePort("nosuch", services), /nosuch/);
});

test("channels: host alone uses the listen port and no limit", () => {
  assert.deepEqual(parseChannel("web1", 8080, services), { host: "web1", port: 8080, maxc: 0 });
});
test("channels: host:port and host:port:maxc", () => {
  assert.deepEqual(parseChannel("10.0.0.1:81", 80, services), { host: "10.0.0.1", port: 81, maxc: 0 });
  assert.deepEqual(parseChannel("10.0.0.1:81:7", 80, services), { host: "10.0.0.1", port: 81, maxc: 7 });
});
test("channels: host::maxc means the listen port", () => {
  assert.deepEqual(parseChannel("web::16", 443, services), { host: "web", port: 443, maxc: 16 });
});
test("channels: service name as channel port", () => {
  assert.deepEqual(parseChannel("mx:smtp:3", 80, services), { host: "mx", port: 25, maxc: 3 });
});
test("channels: bracketed IPv6", () => {
  assert.deepEqual(parseChannel("[::1]:8080:10", 80, services), { host: "::1", port: 8080, maxc: 10 });
  assert.deepEqual(parseChannel("[::1]", 80, services), { host: "::1", port: 80, maxc: 0 });
  assert.deepEqual(parseChannel("[fe80::1]::4", 80, services), { host: "fe80::1", port: 80, maxc: 4 });
});
test("channels: malformed channels are usage errors", () => {
  usageFails(() => parseChannel("a:80:x", 80, services), /maxc/);
  usageFails(() => parseChannel("a:80:-1", 80, services), /maxc/);
  usageFails(() => parseChannel("a:0", 80, services), /port/);
  usageFails(() => parseChannel(":80", 80, services), /missing host/);
  usageFails(() => parseChannel("::1", 80, services), /brackets/);
  usageFails(() => parseChannel("[::1", 80, services), /missing '\]'/);
  usageFails(() => parseChannel("[::1]x", 80, services), /expected ':'/);
  usageFails(() => parseChannel("[::1]:1:2:3:4", 80, services), /too many/);
  usageFails(() => parseChannel("a:1:2:3:4", 80, services), /brackets/);
  usageFails(() => parseChannel("2001:db8::1", 80, services), /brackets/);
  usageFails(() => parseChannel("a:1:99999999999", 80, services), /maxc/);
});
test("channels: a word that cannot be a host is a usage error naming it, not a name to resolve", () => {
  for (
    const [spec, host] of [
      ["!!", "!!"],
      ["%%", "%%"],
      ["!+", "!+"],
      ["-", "-"],
      ["...", "..."],
      ["_:80", "_"],
      ["!:80:0:2", "!"],
      ["a/b", "a/b"],
      ["web 1", "web 1"],
      ["[:::1]:80", ":::1"],
      ["[::1::2]", "::1::2"],
      ["[!!]", "!!"],
    ]
  ) {
    usageFails(
      () => parseChannel(spec, 80, services),
      (m) => m === `invalid channel '${spec}': '${host}' is not a host name or address`,
    );
  }
  usageFails(() => parseGroups(["a", "!!", "b"], 80, services), /^invalid channel '!!': '!!' is not a host/);
});
test("channels: host names with '-', '.' and '_', addresses and IPv6 in brackets are hosts", () => {
  for (
    const [spec, host] of [
      ["web-1.example.com:8080", "web-1.example.com"],
      ["web_1", "web_1"],
      ["example.com.", "example.com."],
      ["xn--bcher-kva.example", "xn--bcher-kva.example"],
      ["b\u00fccher.example", "b\u00fccher.example"],
      ["10.0.0.1", "10.0.0.1"],
      ["1e100.net", "1e100.net"],
      ["[::1]:80", "::1"],
      ["[::]:80", "::"],
      ["[fe80::1%eth0]:80", "fe80::1%eth0"],
      ["[::ffff:10.0.0.1]:80", "::ffff:10.0.0.1"],
      ["[10.0.0.1]:80", "10.0.0.1"],
    ]
  ) {
    assert.equal(parseChannel(spec, 80, services).host, host, spec);
  }
  assert.deepEqual(parseChannel("db-2::64:2", 80, services), { host: "db-2", port: 80, maxc: 64, weight: 2 });
  assert.deepEqual(parseChannel("[::1]:81:5:3:dis", 80, services), {
    host: "::1",
    port: 81,
    maxc: 5,
    weight: 3,
    enabled: false,
  });
});
test("channels: a fourth field is the weight, 0-256; left out it is absent (1)", () => {
  assert.deepEqual(parseChannel("10.0.0.1:80:0:3", 80, services), { host: "10.0.0.1", port: 80, maxc: 0, weight: 3 });
  assert.deepEqual(parseChannel("[::1]:80:256:2", 80, services), { host: "::1", port: 80, maxc: 256, weight: 2 });
  assert.deepEqual(parseChannel("web::64:2", 443, services), { host: "web", port: 443, maxc: 64, weight: 2 });
  assert.deepEqual(parseChannel("web:81::0", 443, services), { host: "web", port: 81, maxc: 0, weight: 0 });
  assert.deepEqual(parseChannel("web:81::256", 443, services), { host: "web", port: 81, maxc: 0, weight: 256 });
  assert.deepEqual(parseChannel("web:81:5:", 443, services), { host: "web", port: 81, maxc: 5 });
  assert.deepEqual(parseChannel("[fe80::1]:::7", 80, services), { host: "fe80::1", port: 80, maxc: 0, weight: 7 });
});
test("channels: a bad weight is one usage error naming the channel", () => {
  for (const spec of ["a:80:0:257", "a:80:0:-1", "a:80:0:x", "a:80:0:1.5", "[::1]:80:0:999999999999"]) {
    const weight = spec.slice(spec.lastIndexOf(":") + 1);
    usageFails(
      () => parseChannel(spec, 80, services),
      (m) => m === `invalid weight in channel '${spec}' '${weight}': must be 0-256`,
    );
  }
});
test("channels: four fields that also read as an IPv6 address are the fields (host names like db)", () => {
  assert.deepEqual(parseChannel("db::64:2", 80, services), { host: "db", port: 80, maxc: 64, weight: 2 });
  usageFails(() => parseChannel("2001:db8:1:2", 80, services), /port in channel/);
});

test("groups: channels alone form one RR group", () => {
  const groups = parseGroups(["a", "b"], 80, services);
  assert.deepEqual(groups.map((g) => [g.type, g.channels.map((c) => c.host)]), [["RR", ["a", "b"]]]);
});
test("groups: ! ends an RR group, % a Hash group", () => {
  const groups = parseGroups(["a", "b", "%", "c", "!", "d"], 80, services);
  assert.deepEqual(groups.map((g) => [g.type, g.channels.map((c) => c.host)]), [
    ["Hash", ["a", "b"]],
    ["RR", ["c"]],
    ["RR", ["d"]],
  ]);
});
test("groups: a trailing % makes a single hash group", () => {
  assert.deepEqual(parseGroups(["alpha", "beta", "%"], 80, services).map((g) => g.type), ["Hash"]);
});
test("groups: a separator with no channel before it is an error", () => {
  usageFails(() => parseGroups(["!", "a"], 80, services), /separator '!' with no channel/);
  usageFails(() => parseGroups(["a", "%", "%"], 80, services), /separator '%'/);
  usageFails(() => parseGroups([], 80, services), /no channel/);
});

test("channels: a fifth field `dis` makes a channel start disabled (as dump writes it); anything else is an error", () => {
  assert.deepEqual(parseChannel("10.0.0.1:81:0:1:dis", 80, services), {
    host: "10.0.0.1",
    port: 81,
    maxc: 0,
    weight: 1,
    enabled: false,
  });
  assert.deepEqual(parseChannel("[::1]:81:5:2:dis", 80, services), {
    host: "::1",
    port: 81,
    maxc: 5,
    weight: 2,
    enabled: false,
  });
  assert.equal(parseChannel("web:81:::dis", 80, services).enabled, false);
  usageFails(() => parseChannel("10.0.0.1:81:0:1:off", 80, services), /ipv6|too many/i);
  usageFails(() => parseChannel("[::1]:81:0:1:ena", 80, services), /too many ':' fields/);
});

test("groups: + ends a least-connection group, the last one too", () => {
  assert.deepEqual(parseGroups(["a", "b", "+", "c", "!", "d", "+"], 80, services).map((g) => g.type), [
    "LC",
    "RR",
    "LC",
  ]);
  usageFails(() => parseGroups(["+", "a"], 80, services), /group separator '\+' with no channel before it/);
});

test("services: @NAME starts a service; groups before the first are the default service's", () => {
  const groups = parseGroups(
    ["fallback:443", "@a", "web1:443", "web2:443", "!", "webbackup:443", "@api", "api1:443", "api2:443", "%"],
    443,
    services,
  );
  assert.deepEqual(
    groups.map((g) => [g.service, g.type, g.channels.map((c) => c.host).join(" ")]),
    [
      [undefined, "RR", "fallback"],
      ["a", "RR", "web1 web2"],
      ["a", "RR", "webbackup"],
      ["api", "Hash", "api1 api2"],
    ],
  );
  assert.deepEqual(parseGroups(["@only", "x"], 80, services).map((g) => g.service), ["only"]);
});

test("services: a bad NAME, a service named twice or left empty is one usage error blaming its word", () => {
  usageFails(() => parseGroups(["a", "@"], 80, services), /^invalid service '@': must be @NAME/);
  usageFails(() => parseGroups(["a", "@a/b", "b"], 80, services), /^invalid service '@a\/b'/);
  usageFails(() => parseGroups(["@a", "x", "@a", "y"], 80, services), /^service '@a' given twice$/);
  usageFails(() => parseGroups(["@a", "@b", "y"], 80, services), /^service '@a' has no channel$/);
  usageFails(() => parseGroups(["x", "@b"], 80, services), /^service '@b' has no channel$/);
  assert.throws(() => parseGroups(["x", "@a", "@b", "y"], 80, services), (e: ExitError) => e.word === 1);
});
