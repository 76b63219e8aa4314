import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import {
  fastInterval,
  HEALTH_DEFAULTS,
  HealthRecord,
  healthSettings,
  MIN_CHECK_INTERVAL,
  nextCheckDelay,
} from "../../../src/core/mod.ts";

const fail = (reason = "connection refused") => ({ ok: false, reason });
const pass = (reason = "connected") => ({ ok: true, reason });

test("health settings: HAProxy's defaults; the timeout is the interval, at most -t", () => {
  assert.deepEqual(HEALTH_DEFAULTS, { interval: 2, rise: 2, fall: 3 });
  assert.deepEqual(healthSettings({}, 5), { interval: 2, timeout: 2, rise: 2, fall: 3 });
  assert.equal(healthSettings({ interval: 10 }, 5).timeout, 5);
  assert.equal(healthSettings({ interval: 10, timeout: 7 }, 5).timeout, 7, "an explicit timeout stays");
  assert.deepEqual(healthSettings({ rise: 1, fall: 9 }, 5), { interval: 2, timeout: 2, rise: 1, fall: 9 });
});

test("health: up at start; down after fall consecutive failures, logged at warning with the reason", () => {
  const h = new HealthRecord({ rise: 2, fall: 3 }, 0);
  assert.equal(h.up, true);
  assert.equal(h.lastCheck, undefined);
  assert.equal(h.record(fail(), 1), undefined);
  assert.equal(h.record(fail(), 2), undefined);
  assert.equal(h.transitioning, true);
  const t = h.record(fail("connect timed out"), 3);
  assert.deepEqual(t, { up: false, level: "warning", text: "is DOWN: connect timed out (3 of 3 checks failed)" });
  assert.deepEqual([h.up, h.failures, h.passes, h.checkFailures, h.changedAt], [false, 3, 0, 3, 3]);
  assert.equal(h.transitioning, false, "settled down");
  assert.equal(h.lastCheck, "failed: connect timed out");
  assert.equal(h.record(fail(), 4), undefined, "no second DOWN");
});

test("health: a pass in between starts the count of failures again", () => {
  const h = new HealthRecord({ rise: 2, fall: 3 }, 0);
  h.record(fail(), 1);
  h.record(fail(), 2);
  h.record(pass(), 3);
  assert.equal(h.transitioning, false);
  h.record(fail(), 4);
  h.record(fail(), 5);
  assert.equal(h.up, true);
  assert.equal(h.checkFailures, 4, "the total counts every failure");
});

test("health: up again after rise consecutive passes, logged at info", () => {
  const h = new HealthRecord({ rise: 2, fall: 1 }, 0);
  h.record(fail(), 1);
  assert.equal(h.up, false);
  assert.equal(h.record(pass(), 2), undefined);
  assert.equal(h.transitioning, true);
  h.record(fail(), 3);
  assert.equal(h.record(pass(), 4), undefined, "the failure reset the passes");
  assert.deepEqual(h.record(pass("connected"), 5), {
    up: true,
    level: "info",
    text: "is UP: connected (2 of 2 checks passed)",
  });
  assert.equal(h.changedAt, 5);
});

test("health: delays: the interval when settled, the fast pace in a transition, never more", () => {
  const settings = { interval: 2 };
  assert.equal(fastInterval(settings), 0.5);
  assert.equal(fastInterval({ interval: 0.2 }), MIN_CHECK_INTERVAL, "at least 0.1 s");
  const h = new HealthRecord({ rise: 2, fall: 3 }, 0);
  h.record(pass(), 0);
  h.record(pass(), 0);
  assert.equal(nextCheckDelay(h, settings, () => 0), 2);
  assert.ok(Math.abs(nextCheckDelay(h, settings, () => 0.999999) - 1.8) < 1e-3, "up to 10 % less");
  h.record(fail(), 0);
  assert.equal(nextCheckDelay(h, settings, () => 0), 0.5);
  for (let i = 0; i < 1000; i++) {
    const d = nextCheckDelay(h, settings, Math.random);
    assert.ok(d > 0.45 && d <= 0.5, String(d));
  }
});

test("health: after its first check a channel's next one lands anywhere in the interval (no lockstep)", () => {
  const h = new HealthRecord({ rise: 2, fall: 3 }, 0);
  h.record(pass(), 0);
  const delays = [0, 0.5, 0.999999].map((r) => nextCheckDelay(h, { interval: 2 }, () => r));
  assert.deepEqual(delays.map((d) => Math.round(d * 100) / 100), [0.5, 1.25, 2]);
});
