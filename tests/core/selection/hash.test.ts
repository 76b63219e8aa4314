import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import { addressBytes, hashClientAddress } from "../../../src/core/mod.ts";

test("addressBytes: IPv4", () => assert.deepEqual([...addressBytes("10.1.2.3")!], [10, 1, 2, 3]));
test("addressBytes: IPv4-mapped IPv6 reduces to IPv4", () => {
  assert.deepEqual([...addressBytes("::ffff:10.1.2.3")!], [10, 1, 2, 3]);
  assert.deepEqual([...addressBytes("::FFFF:0a01:0203")!], [10, 1, 2, 3]);
});
test("addressBytes: IPv6 forms", () => {
  assert.deepEqual([...addressBytes("::1")!], [...new Array(15).fill(0), 1]);
  assert.deepEqual([...addressBytes("2001:db8::")!].slice(0, 4), [0x20, 0x01, 0x0d, 0xb8]);
  assert.equal(addressBytes("1:2:3:4:5:6:7:8")!.length, 16);
  assert.equal(addressBytes("fe80::1%eth0")!.length, 16);
});
test("addressBytes: garbage is undefined", () => {
  for (const bad of ["", "1.2.3", "1.2.3.256", "1::2::3", "12345::", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "a.b.c.d"]) {
    assert.equal(addressBytes(bad), undefined, bad);
  }
});

test("hashClientAddress: stable: known values never change (clients keep their channel across restarts)", () => {
  // Changing these moves every hashed client to another channel on upgrade.
  assert.deepEqual(
    ["10.0.0.1", "10.0.0.2", "192.168.1.77", "::1"].map(hashClientAddress),
    [4242520943, 4217716570, 3689982066, 2095541077],
  );
});
test("hashClientAddress: an IPv4 client and its IPv4-mapped form hash alike", () => {
  assert.equal(hashClientAddress("1.2.3.4"), hashClientAddress("::ffff:1.2.3.4"));
  assert.equal(hashClientAddress("127.0.0.9"), hashClientAddress("::ffff:7f00:9"));
});
test("hashClientAddress: spreads neighbouring IPv4 clients evenly over 2..16 channels", () => {
  // balance 3.54 sent every IPv4 client to the same channel: the test it fails.
  const clients = Array.from({ length: 4096 }, (_, i) => `10.0.${i >> 8}.${i & 255}`);
  for (let n = 2; n <= 16; n++) {
    const counts = new Array(n).fill(0);
    for (const c of clients) counts[hashClientAddress(c) % n]++;
    const expected = clients.length / n;
    const chiSquare = counts.reduce((s, k) => s + (k - expected) ** 2 / expected, 0);
    // 99.9th percentile of chi-square with n-1 <= 15 degrees of freedom is < 38.
    assert.ok(chiSquare < 38, `n=${n}: counts ${counts} chi2=${chiSquare.toFixed(1)}`);
  }
});
test("hashClientAddress: spreads IPv6 clients too", () => {
  const counts = [0, 0, 0];
  for (let i = 0; i < 3000; i++) counts[hashClientAddress(`2001:db8::${i.toString(16)}`) % 3]++;
  for (const k of counts) assert.ok(k > 850 && k < 1150, `${counts}`);
});
