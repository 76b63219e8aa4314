import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import { Throttle } from "../../../src/core/mod.ts";

test("throttle: once per interval, counting what was held back", () => {
  let now = 0;
  const t = new Throttle(1000, () => now);
  assert.equal(t.pass(), 0);
  now = 10;
  assert.equal(t.pass(), undefined);
  now = 999;
  assert.equal(t.pass(), undefined);
  now = 1000;
  assert.equal(t.pass(), 2);
  now = 5000;
  assert.equal(t.pass(), 0);
});
