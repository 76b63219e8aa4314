import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import { shown } from "../../../src/core/mod.ts";

test("shown: printable text is unchanged", () => {
  assert.equal(shown("web1:80:10"), "web1:80:10");
  assert.equal(shown('say "hi" \\ there'), 'say "hi" \\\\ there');
});

test("shown: control and non-ASCII characters are escaped", () => {
  assert.equal(shown("a\nb\r\t"), "a\\nb\\r\\t");
  assert.equal(shown("\x1b[31mred"), "\\u001b[31mred");
  assert.equal(shown("caf\u00e9 \ufffd"), "caf\\u00e9 \\ufffd");
});

test("shown: long text is cut", () => {
  assert.equal(shown("x".repeat(100), 10), "xxxxxxxxxx...");
});
