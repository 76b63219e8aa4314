import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeEscapes, ExitError } from "../../../src/core/mod.ts";

const bytes = (text: string) => [...decodeEscapes(text, "--check-send")];

test("escapes: \\r \\n \\t \\\\ and \\xNN are decoded, the rest is UTF-8", () => {
  assert.deepEqual(bytes("PING\\r\\n"), [80, 73, 78, 71, 13, 10]);
  assert.deepEqual(bytes("a\\tb\\\\c"), [97, 9, 98, 92, 99]);
  assert.deepEqual(bytes("\\x00\\xff\\xAb"), [0, 255, 0xab]);
  assert.deepEqual(bytes("é"), [0xc3, 0xa9]);
  assert.deepEqual(bytes(""), []);
});

test("escapes: anything else after a backslash is a one-line usage error naming the option", () => {
  for (const text of ["\\q", "a\\", "\\x4", "\\xg0", "\\0", "\\u0041"]) {
    assert.throws(
      () => decodeEscapes(text, "--check-expect"),
      (e: unknown) =>
        e instanceof ExitError && e.exitCode === 64 && /^invalid --check-expect '.*': unknown escape/.test(e.message) &&
        !e.message.includes("\n"),
      text,
    );
  }
});

test("escapes: fuzz: any text decodes or fails cleanly; escaping any bytes round-trips", () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), (text) => {
      try {
        decodeEscapes(text, "--check-send");
      } catch (err) {
        assert.ok(err instanceof ExitError && err.exitCode === 64 && /^[\x20-\x7e]+$/.test(err.message), String(err));
      }
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (data) => {
      const escaped = [...data].map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join("");
      assert.deepEqual(decodeEscapes(escaped, "--check-send"), data);
    }),
  );
});
