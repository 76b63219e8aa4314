import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import { IdleTimer } from "../../../src/core/mod.ts";

test("a quiet connection closes after the timeout, an active one does not", () => {
  const idle = new IdleTimer(1000);
  assert.equal(idle.tickMs, 100);
  const closed: string[] = [];
  const quiet = { active: false, closeIdle: () => closed.push("quiet") };
  const busy = { active: false, closeIdle: () => closed.push("busy") };
  idle.add(quiet);
  idle.add(busy);
  for (let t = 0; t < 9; t++) {
    busy.active = true;
    idle.tick();
  }
  assert.deepEqual(closed, []);
  busy.active = true;
  idle.tick();
  assert.deepEqual(closed, ["quiet"], "closed on the 10th quiet tick");
  for (let t = 0; t < 10; t++) idle.tick();
  assert.deepEqual(closed, ["quiet", "busy"]);
  idle.tick();
  assert.deepEqual(closed, ["quiet", "busy"], "each closes once");
});

test("tick is clamped: 50 ms minimum, 1 s maximum", () => {
  assert.equal(new IdleTimer(100).tickMs, 50);
  assert.equal(new IdleTimer(3_600_000).tickMs, 1000);
});
