import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import { syslogLine, unixSocketAddress } from "../../../src/core/observe/syslog.ts";

test("syslog: RFC 3164 line, facility daemon, tag balance[pid], day padded with a space", () => {
  const at = new Date(2024, 0, 5, 9, 3, 7);
  assert.equal(syslogLine("warning", "connect failed", 4242, at), "<28>Jan  5 09:03:07 balance[4242]: connect failed");
  assert.equal(
    syslogLine("info", "started", 1, new Date(2024, 11, 24, 23, 59, 0)),
    "<30>Dec 24 23:59:00 balance[1]: started",
  );
  assert.equal(syslogLine("debug", "x", 1, at).slice(0, 4), "<31>");
  assert.equal(syslogLine("error", "x", 1, at).slice(0, 4), "<27>");
});

test("syslog: a message with line breaks stays one line", () => {
  const line = syslogLine("info", "a\nb\r\nc", 7, new Date(2024, 5, 30, 0, 0, 0));
  assert.equal(line, "<30>Jun 30 00:00:00 balance[7]: a b c");
});

test("syslog: sockaddr_un for Linux (2-byte family) and macOS (length, family)", () => {
  const linux = unixSocketAddress("/dev/log", "linux");
  assert.equal(linux.length, 2 + 8 + 1);
  assert.deepEqual([...linux.bytes.slice(0, 11)], [1, 0, ...new TextEncoder().encode("/dev/log"), 0]);
  const mac = unixSocketAddress("/var/run/syslog", "darwin");
  assert.equal(mac.length, 2 + 15 + 1);
  assert.deepEqual([...mac.bytes.slice(0, 3)], [18, 1, "/".charCodeAt(0)]);
  assert.throws(() => unixSocketAddress(`/${"x".repeat(200)}`, "linux"), /too long/);
});
