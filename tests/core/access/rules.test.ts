import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import fc from "fast-check";
import { AccessRules, addressBytes, ipv4Value, parsePrefixList } from "../../../src/core/mod.ts";

const verdict = (rules: AccessRules, address: string) => rules.match(addressBytes(address)!)?.rule ?? "none";

test("rules: the first match decides, with overlapping rules either way round", () => {
  const hostFirst = new AccessRules([
    { action: "deny", spec: "10.0.0.7" },
    { action: "allow", spec: "10.0.0.0/8" },
    { action: "deny", spec: "all" },
  ]);
  assert.equal(verdict(hostFirst, "10.0.0.7"), "--deny 10.0.0.7");
  assert.equal(verdict(hostFirst, "10.0.0.8"), "--allow 10.0.0.0/8");
  assert.equal(verdict(hostFirst, "192.0.2.1"), "--deny all");
  assert.equal(verdict(hostFirst, "2001:db8::1"), "--deny all");
  const prefixFirst = new AccessRules([{ action: "allow", spec: "10.0.0.0/8" }, { action: "deny", spec: "10.0.0.7" }]);
  assert.equal(verdict(prefixFirst, "10.0.0.7"), "--allow 10.0.0.0/8");
  assert.equal(verdict(prefixFirst, "11.0.0.7"), "none");
});

test("rules: IPv6 prefixes, IPv4-mapped clients match IPv4 rules, lists name the prefix that matched", () => {
  const rules = new AccessRules([
    { action: "deny", spec: "192.0.2.0/24,2001:db8::/32" },
    { action: "allow", spec: "::1" },
    { action: "deny", spec: "::ffff:198.51.100.0/120" },
  ]);
  assert.equal(verdict(rules, "::ffff:192.0.2.9"), "--deny 192.0.2.0/24");
  assert.equal(verdict(rules, "2001:db8:ffff::1"), "--deny 2001:db8::/32");
  assert.equal(verdict(rules, "2001:db9::1"), "none");
  assert.equal(verdict(rules, "::1"), "--allow ::1");
  assert.equal(verdict(rules, "198.51.100.77"), "--deny ::ffff:198.51.100.0/120");
  assert.equal(rules.match(addressBytes("::1")!)?.action, "allow");
});

test("rules: malformed prefixes and empty lists are usage errors naming the option and the text", () => {
  const cases: [string, RegExp][] = [
    ["10.0.0.0/33", /^invalid address \(--deny\) '10\.0\.0\.0\/33': prefix length must be 0-32$/],
    ["::1/129", /^invalid address \(--deny\) '::1\/129': prefix length must be 0-128$/],
    ["1.2.3", /'1\.2\.3' is not an IPv4 or IPv6 address or prefix$/],
    ["", /an address, a prefix or 'all' is needed$/],
    ["10.0.0.1,", /'' is not an IPv4 or IPv6 address/],
    ["10.0.0.0/x", /prefix length must be 0-32$/],
    ["fe80::1%eth0", /is not an IPv4 or IPv6 address/],
  ];
  for (const [spec, message] of cases) {
    assert.throws(() => parsePrefixList(spec, "--deny"), (err: Error & { exitCode?: number }) => {
      assert.match(err.message, message);
      assert.equal(err.exitCode, 64);
      return true;
    });
  }
});

// The tree against the obvious definition: the first rule with a prefix
// that holds the address, over random rules and addresses.
test("rules: the prefix tree agrees with a scan of the rules in order (property)", () => {
  const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255));
  const prefix = fc.tuple(v4, fc.nat(32)).map(([b, len]) => ({ bytes: Uint8Array.from(b), len }));
  const rule = fc.tuple(fc.boolean(), fc.array(prefix, { minLength: 1, maxLength: 3 }));
  fc.assert(
    fc.property(fc.array(rule, { maxLength: 30 }), fc.array(v4, { minLength: 1, maxLength: 20 }), (spec, clients) => {
      const rules = new AccessRules(spec.map(([allow, prefixes]) => ({
        action: allow ? "allow" : "deny",
        spec: prefixes.map((p) => `${p.bytes.join(".")}/${p.len}`).join(","),
      })));
      for (const client of clients) {
        const bytes = Uint8Array.from(client);
        const inside = (p: { bytes: Uint8Array; len: number }) => {
          for (let i = 0; i < p.len; i++) {
            const bit = (b: Uint8Array) => (b[i >> 3] >> (7 - (i & 7))) & 1;
            if (bit(p.bytes) !== bit(bytes)) return false;
          }
          return true;
        };
        const first = spec.find(([, prefixes]) => prefixes.some(inside));
        const expected = first === undefined ? undefined : first[0] ? "allow" : "deny";
        assert.equal(rules.match(bytes)?.action, expected);
      }
    }),
    { numRuns: 300 },
  );
});

test("rules: an IPv4 client read as a number matches as its bytes do", () => {
  assert.equal(ipv4Value("10.0.0.7"), 0x0a000007);
  assert.equal(ipv4Value("255.255.255.255"), 0xffffffff);
  assert.equal(ipv4Value("::ffff:10.0.0.7"), 0x0a000007);
  for (const bad of ["::1", "10.0.0", "10.0.0.7.1", "10.0.0.256", "1.2.3.4 ", "", "a.b.c.d", "1..2.3"]) {
    assert.equal(ipv4Value(bad), -1, bad);
  }
  const rules = new AccessRules([
    { action: "deny", spec: "128.0.0.0/1" },
    { action: "allow", spec: "10.0.0.0/8,0.0.0.0/32" },
    { action: "deny", spec: "all" },
  ]);
  fc.assert(fc.property(fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)), (b) => {
    const text = b.join(".");
    assert.deepEqual(rules.match4(ipv4Value(text)), rules.match(addressBytes(text)!));
  }));
});
