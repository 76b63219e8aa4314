import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import { until } from "../../support/wait.ts";
import {
  Balancer,
  type CheckResult,
  executeCommand,
  HealthChecker,
  type HealthSettings,
  parseServices,
  pickChannels,
  type ProbeTarget,
  resolveCommand,
  showJson,
} from "../../../src/core/mod.ts";

/** A balancer with `n` channels in group 0, a fake probe whose answers a test sets per port, and the log. */
function setup(n: number, settings: Partial<HealthSettings> = {}, random = Math.random) {
  const specs = [{
    type: "RR" as const,
    channels: Array.from({ length: n }, (_, i) => ({ host: "10.0.0.1", port: 1000 + i, maxc: 0 })),
  }];
  const balancer = Balancer.fromSpecs(specs, { autodisable: false, hashFailover: false });
  const answers = new Map<number, CheckResult>();
  const calls: { target: ProbeTarget; at: number }[] = [];
  const logged: string[] = [];
  const probe = (target: ProbeTarget) => {
    calls.push({ target, at: Date.now() });
    const answer = answers.get(target.port) ?? { ok: true, reason: "connected" };
    return answer.reason === "throw" ? Promise.reject(new Error("probe broke")) : Promise.resolve(answer);
  };
  const checker = new HealthChecker(
    balancer,
    { interval: 0.1, timeout: 0.1, rise: 2, fall: 3, ...settings },
    probe,
    { info: (m) => logged.push(`info ${m}`), warning: (m) => logged.push(`warning ${m}`) },
    Date.now,
    random,
  );
  const ch = (i: number) => balancer.groups[0].channels[i];
  const ctx = { balancer, version: "4", lookupPort: parseServices(""), health: checker };
  return { balancer, checker, answers, calls, logged, ch, ctx };
}

test("health checker: every channel (disabled ones too) is checked at once, then again and again", async () => {
  const { checker, calls, ch } = setup(3);
  ch(2).enabled = false;
  const started = Date.now();
  checker.start();
  try {
    await until(() => calls.length, (n) => n >= 3, "first checks");
    assert.ok(calls.slice(0, 3).every((c) => c.at - started < 50), "at once");
    assert.deepEqual(
      calls.slice(0, 3).map((c) => c.target),
      [0, 1, 2].map((i) => ({
        address: "10.0.0.1",
        port: 1000 + i,
        group: 0,
        channel: i,
      })),
    );
    await until(() => calls.filter((c) => c.target.channel === 2).length, (n) => n >= 3, "disabled channel checked");
    assert.equal(ch(2).enabled, false, "checks never touch the administrative state");
  } finally {
    checker.stop();
  }
});

test("health checker: a failing channel goes down (logged at warning), is skipped, and comes back up (info)", async () => {
  const { checker, answers, logged, ch, balancer } = setup(2);
  answers.set(1001, { ok: false, reason: "connect timed out" });
  checker.start();
  try {
    await until(() => ch(1).up, (up) => !up, "channel 1 down");
    assert.deepEqual(logged, [
      "warning group 0 channel 1 (10.0.0.1:1001) is DOWN: connect timed out (3 of 3 checks failed)",
    ]);
    assert.equal(ch(1).isUsable(), false);
    assert.equal(ch(1).tryClaim(), false);
    assert.equal(ch(1).enabled, true, "still enabled");
    const picked = [...pickChannels(balancer.groups, "10.9.9.9", false)];
    assert.deepEqual(picked, [ch(0)], "only the up channel is picked");
    assert.equal(checker.status(ch(1))?.up, false);
    answers.delete(1001);
    await until(() => ch(1).up, (up) => up, "channel 1 up again");
    assert.equal(logged[1], "info group 0 channel 1 (10.0.0.1:1001) is UP: connected (2 of 2 checks passed)");
    assert.equal(logged.length, 2);
    const status = checker.status(ch(1))!;
    assert.deepEqual([status.up, status.passes, status.failures, status.checkFailures], [true, 2, 0, 3]);
    assert.ok(status.sinceChange >= 0 && status.sinceChange < 1);
  } finally {
    checker.stop();
  }
});

test("health checker: a probe that throws counts as a failed check with its message", async () => {
  const { checker, answers, ch } = setup(1, { fall: 1 });
  answers.set(1000, { ok: false, reason: "throw" });
  checker.start();
  try {
    await until(() => ch(0).up, (up) => !up, "down");
    assert.equal(checker.status(ch(0))?.lastCheck, "failed: probe broke");
  } finally {
    checker.stop();
  }
});

test("health checker: a failed client connect counts as a failed check and brings the next check forward", async () => {
  // Settled, the next check would come 5 s later.
  const { checker, calls, ch } = setup(1, { interval: 5, timeout: 1 }, () => 0.999999);
  checker.start();
  try {
    await until(() => calls.length, (n) => n === 1, "first check");
    await until(() => checker.status(ch(0))?.lastCheck, (s) => s !== undefined, "first result");
    checker.observeFailure(ch(0).cells.slot, "Connection refused");
    const s = checker.status(ch(0))!;
    assert.deepEqual([s.failures, s.checkFailures, s.lastCheck], [
      1,
      1,
      "failed: client connect failed: Connection refused",
    ]);
    await until(() => calls.length, (n) => n === 2, "next check brought forward", { ms: 1000 });
    assert.equal(checker.status(ch(0))?.failures, 0, "it passed");
    checker.observeFailure(12345, "unknown slot: ignored");
  } finally {
    checker.stop();
  }
});

test("health checker: channels checked together at start part ways (no lockstep)", async () => {
  const { checker, calls } = setup(40, { interval: 0.5 });
  checker.start();
  try {
    await until(() => calls.length, (n) => n >= 80, "second round");
    const second = new Map<number, number>();
    for (const c of calls.slice(40)) if (!second.has(c.target.channel)) second.set(c.target.channel, c.at);
    const times = [...second.values()];
    assert.ok(Math.max(...times) - Math.min(...times) > 100, `second checks spread: ${times.join(",")}`);
  } finally {
    checker.stop();
  }
});

test("health checker: create and enable make a channel up and check it at once; stop ends every check", async () => {
  const { checker, calls, ctx, balancer, ch, answers, logged } = setup(1, { interval: 30, fall: 1 });
  answers.set(99, { ok: false, reason: "connection refused" });
  checker.start();
  try {
    await until(() => calls.length, (n) => n === 1, "first check");
    assert.equal(executeCommand(ctx, 0, "create 10.0.0.9 99").output, "channel created");
    await until(() => calls.length, (n) => n === 2, "the new channel checked");
    assert.deepEqual(calls[1].target, { address: "10.0.0.9", port: 99, group: 0, channel: 1 });
    await until(() => ch(1).up, (up) => !up, "down after its failed check");
    answers.delete(99);
    assert.equal(executeCommand(ctx, 0, "enable 1").output, "channel 1 enabled");
    assert.equal(ch(1).up, true, "up as soon as enabled");
    assert.ok(
      logged.includes("info group 0 channel 1 (10.0.0.9:99) is UP: enabled, checked at once"),
      logged.join("\n"),
    );
    await until(() => calls.length, (n) => n === 3, "checked at once after enable");
    assert.equal(ch(1).enabled, true);
    assert.equal(balancer.groups[0].channels.length, 2);
  } finally {
    checker.stop();
  }
  const n = calls.length;
  checker.checkNow(ch(0), "enabled");
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(calls.length, n, "nothing after stop");
});

test("control: `health` is last in the abbreviation order and prints a table per channel", async () => {
  assert.equal(resolveCommand("h"), "help");
  assert.equal(resolveCommand("he"), "help");
  assert.equal(resolveCommand("hea"), "health");
  const { checker, answers, ctx, ch } = setup(2, { fall: 1 });
  answers.set(1001, { ok: false, reason: "connection refused" });
  const plain = { ...ctx, health: undefined };
  assert.deepEqual(executeCommand(plain, 0, "health").output.split("\n"), [
    "GRP  # ip-address       port health passed failed   since last check",
    "  0  0 10.0.0.1         1000 none        -      -       - -",
    "  0  1 10.0.0.1         1001 none        -      -       - -",
  ]);
  assert.deepEqual(
    showJson(ctx.balancer).map((r) => [r.health, r.checkFailures, r.lastCheck]),
    [["none", 0, null], ["none", 0, null]],
  );
  checker.start();
  try {
    await until(() => ch(1).up, (up) => !up, "down");
    const rows = executeCommand(ctx, 0, "health").output.split("\n");
    assert.match(rows[1], /^ {2}0 {2}0 10\.0\.0\.1 {9}1000 up +\d+ +0 +\d+\.\d passed: connected$/);
    assert.match(rows[2], /^ {2}0 {2}1 10\.0\.0\.1 {9}1001 down +0 +\d+ +\d+\.\d failed: connection refused$/);
    const json = JSON.parse(executeCommand(ctx, 0, "show --json").output);
    assert.equal(json[1].health, "down");
    assert.ok(json[1].checkFailures >= 1);
    assert.equal(json[1].lastCheck, "failed: connection refused");
    assert.equal(json[0].health, "up");
    assert.equal(executeCommand(ctx, 0, "health 1").output, "syntax error");
  } finally {
    checker.stop();
  }
});
