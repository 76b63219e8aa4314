import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import { formatPacketDump } from "../../../src/core/mod.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

test("printable ASCII as is, backslash doubled, other bytes as \\XX", () => {
  assert.equal(formatPacketDump("->", bytes("a\\b\t\x7f")), "-> 5\na\\\\b\\09\\7F\n");
  assert.equal(formatPacketDump("-<", new Uint8Array([0, 0xff, 0x1b])), "-< 3\n\\00\\FF\\1B\n");
});

test("a line break after \\0A", () => {
  assert.equal(formatPacketDump("->", bytes("GET / HTTP/1.0\r\n\r\n")), "-> 18\nGET / HTTP/1.0\\0D\\0A\n\\0D\\0A\n");
});

test("a line break after about 80 columns", () => {
  const out = formatPacketDump("->", bytes("x".repeat(200)));
  assert.deepEqual(out.split("\n"), ["-> 200", "x".repeat(80), "x".repeat(80), "x".repeat(40), ""]);
  const hex = formatPacketDump("->", new Uint8Array(30).fill(1)).split("\n");
  assert.equal(hex[1], "\\01".repeat(27), "wraps once a line reaches 80 columns");
  assert.equal(hex[2], "\\01".repeat(3));
});

test("an empty chunk is just the header", () => {
  assert.equal(formatPacketDump("-<", new Uint8Array()), "-< 0\n");
});
