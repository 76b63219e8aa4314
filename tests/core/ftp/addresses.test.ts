import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  findEpsvPort,
  findSixNumbers,
  formatEprt,
  formatSixNumbers,
  parseEprt,
  plainAddress,
  sameHost,
} from "../../../src/core/ftp/addresses.ts";

test("ftp addresses: a 227 reply's six numbers, found where they stand", () => {
  const text = "227 Entering Passive Mode (198,18,0,2,195,80).";
  const found = findSixNumbers(text)!;
  assert.deepEqual(found.end, { address: "198.18.0.2", port: 50000 });
  assert.equal(text.slice(found.index, found.index + found.length), "198,18,0,2,195,80");
  assert.equal(findSixNumbers("227 =198,18,0,2,195,80")?.end.port, 50000, "no parentheses (RFC 1123)");
  assert.equal(findSixNumbers("227 (198,18,0,256,195,80)"), undefined, "a number above 255");
  assert.equal(findSixNumbers("227 Entering Passive Mode"), undefined);
});

test("ftp addresses: PORT numbers and EPRT round-trip every IPv4 end", () => {
  fc.assert(
    fc.property(fc.ipV4(), fc.integer({ min: 1, max: 65535 }), (address, port) => {
      const six = formatSixNumbers({ address, port })!;
      assert.deepEqual(findSixNumbers(six)?.end, { address, port });
      assert.deepEqual(parseEprt(formatEprt({ address, port })), { address, port });
    }),
  );
  assert.equal(formatSixNumbers({ address: "::1", port: 21 }), undefined, "PORT cannot carry IPv6");
  assert.equal(formatSixNumbers({ address: "::ffff:10.0.0.1", port: 21 }), "10,0,0,1,0,21");
});

test("ftp addresses: EPRT with IPv6, other delimiters, and what is malformed", () => {
  assert.deepEqual(parseEprt("|2|::1|50000|"), { address: "::1", port: 50000 });
  assert.deepEqual(parseEprt("!1!10.0.0.1!21!"), { address: "10.0.0.1", port: 21 });
  assert.equal(formatEprt({ address: "2001:db8::1", port: 2121 }), "|2|2001:db8::1|2121|");
  for (
    const bad of [
      "",
      "|1|10.0.0.1|21",
      "|2|10.0.0.1|21|",
      "|1|::1|21|",
      "|1|10.0.0.1|0|",
      "|3|10.0.0.1|21|",
      "|1|x|21|",
    ]
  ) {
    assert.equal(parseEprt(bad), undefined, bad);
  }
});

test("ftp addresses: a 229 reply's port, any delimiter", () => {
  const text = "229 Entering Extended Passive Mode (|||50000|)";
  const found = findEpsvPort(text)!;
  assert.equal(found.port, 50000);
  assert.equal(text.slice(found.index, found.index + found.length), "50000");
  assert.equal(findEpsvPort("229 ok (!!!21!)")?.port, 21);
  assert.equal(findEpsvPort("229 ok (|||70000|)"), undefined);
  assert.equal(findEpsvPort("229 ok (||50000|)"), undefined);
});

test("ftp addresses: one host whatever its spelling", () => {
  assert.ok(sameHost("::ffff:198.18.0.1", "198.18.0.1"));
  assert.ok(sameHost("2001:db8::1", "2001:0db8:0:0:0:0:0:1"));
  assert.ok(!sameHost("198.18.0.1", "198.18.0.2"));
  assert.ok(!sameHost("198.18.0.1", "not an address"));
  assert.equal(plainAddress("::ffff:127.0.0.1"), "127.0.0.1");
  assert.equal(plainAddress("::1"), "::1");
});
