import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import {
  AF_INET,
  AF_INET6,
  decodeSockaddr,
  encodeSockaddr,
  epollLayout,
  errnoError,
  nativePlatform,
  SOCKADDR_SIZE,
  sockaddrFamily,
} from "../../../src/adapter/linux/sys.ts";
import { errorText } from "../../../src/core/util/errors.ts";

test("native sys: IPv4 and IPv6 socket addresses are written as the kernel reads them", () => {
  const out = new Uint8Array(SOCKADDR_SIZE);
  assert.equal(encodeSockaddr("127.0.0.1", 8080, out), 16);
  assert.deepEqual([...out.subarray(0, 8)], [AF_INET, 0, 0x1f, 0x90, 127, 0, 0, 1]);
  assert.equal(sockaddrFamily(out), AF_INET);
  assert.equal(encodeSockaddr("::1", 443, out), 28);
  assert.equal(sockaddrFamily(out), AF_INET6);
  assert.deepEqual([...out.subarray(2, 4)], [0x01, 0xbb]);
  assert.deepEqual([...out.subarray(8, 24)], [...new Uint8Array(15), 1]);
  // An IPv4-mapped address connects as IPv4, as the runtimes do.
  assert.equal(encodeSockaddr("::ffff:10.0.0.1", 80, out), 16);
  assert.deepEqual([...out.subarray(4, 8)], [10, 0, 0, 1]);
});

test("native sys: what is no address, a port out of range or a short buffer writes nothing", () => {
  const out = new Uint8Array(SOCKADDR_SIZE);
  assert.equal(encodeSockaddr("localhost", 80, out), 0);
  assert.equal(encodeSockaddr("127.0.0.1", 65536, out), 0);
  assert.equal(encodeSockaddr("127.0.0.1", -1, out), 0);
  assert.equal(encodeSockaddr("127.0.0.1", 80, new Uint8Array(16)), 0);
});

test("native sys: addresses the kernel filled in read back as the runtimes show clients", () => {
  const out = new Uint8Array(SOCKADDR_SIZE);
  for (const [address, port] of [["127.0.0.1", 40312], ["::1", 1], ["2001:db8::5", 65535], ["0.0.0.0", 0]] as const) {
    encodeSockaddr(address, port, out);
    assert.deepEqual(decodeSockaddr(out), { address, port });
  }
  // An IPv4 client of an IPv6 socket: the kernel writes it mapped.
  out.fill(0);
  out[0] = AF_INET6;
  out.set([0xff, 0xff, 192, 0, 2, 7], 18);
  assert.deepEqual(decodeSockaddr(out), { address: "::ffff:192.0.2.7", port: 0 });
});

test("native sys: epoll_event is packed on x86-64 only", () => {
  assert.deepEqual(epollLayout("x64"), { size: 12, data: 4 });
  assert.deepEqual(epollLayout("arm64"), { size: 16, data: 8 });
});

test("native sys: the engine runs on Linux x86-64 and arm64 only, and says why not elsewhere", () => {
  assert.equal(nativePlatform("linux", "x64"), true);
  assert.equal(nativePlatform("linux", "arm64"), true);
  assert.equal(nativePlatform("darwin", "arm64"), "needs Linux on x86-64 or arm64, not darwin arm64");
  assert.equal(nativePlatform("linux", "riscv64"), "needs Linux on x86-64 or arm64, not linux riscv64");
});

test("native sys: errno becomes the words the core logs on every runtime", () => {
  assert.equal(errorText(errnoError(111)), "connection refused");
  assert.equal(errorText(errnoError(104)), "connection reset");
  assert.equal(errorText(errnoError(110)), "timed out");
  assert.equal(errnoError(24, "accept4").message, "accept4 failed: EMFILE");
  assert.equal(errnoError(9999).code, "errno 9999");
});
