/**
 * Health checks (`--check`, issue 11) on real sockets and processes: dead
 * channels leave by themselves and come back by themselves, clients never
 * wait on them, and every new option is checked on the command line.
 *
 * Short intervals keep the file fast: `--check-interval 0.2 --rise 2
 * --fall 2` (the timeout is then the interval). Detection and recovery
 * times are measured from balance's own log timestamps and printed.
 */
import { onTimeout, test } from "../support/test.ts";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { type Backend, freePort, startBackend, whoAnswers } from "../support/net.ts";
import { runBalance, type Running, startBalance, withBalancer } from "../support/balance.ts";
import { type Answering, answering, healthLine, healthRows, logged, loggedAt, synDropper } from "../support/health.ts";
import { until } from "../support/wait.ts";
import { control, status, type StatusRow } from "../support/helpers.ts";

const at = (b: Backend) => `${b.host}:${b.port}`;

const INTERVAL = 0.2;
const RISE = 2;
const FALL = 2;
const FAST = ["--check", "--check-interval", String(INTERVAL), "--rise", String(RISE), "--fall", String(FALL)];
const SEND_EXPECT = ["--check-send", "PING\\r\\n", "--check-expect", "PONG"];
/** The bounds: down within fall × interval + timeout, up within rise × interval of the fix. */
const detectMs = (interval: number, timeout = interval) => Math.round((FALL * interval + timeout) * 1000);
const recoverMs = (interval: number) => Math.round(RISE * interval * 1000);
/** What a loaded 2-core CI machine may add to either bound. */
const SLACK_MS = 2000;

const down = (channel: number, port: number, where: { group?: number; host?: string } = {}) =>
  healthLine("DOWN", channel, port, { fall: FALL, ...where });
const up = (channel: number, port: number, where: { group?: number; host?: string } = {}) =>
  healthLine("UP", channel, port, where);

/** Waits for the UP line of a channel fixed at `fixedAt`; checks and prints the time it took. */
async function cameBack(
  lb: Running,
  channel: number,
  port: number,
  fixedAt: number,
  what: string,
  { interval = INTERVAL, ...where }: { interval?: number; group?: number; host?: string } = {},
) {
  const { at } = await logged(lb, up(channel, port, where), 15_000);
  const ms = at - fixedAt;
  console.log(`health: ${what} channel up ${ms} ms after its fix (rise × interval = ${recoverMs(interval)} ms)`);
  assert.ok(ms <= recoverMs(interval) + SLACK_MS, `${what}: up after ${ms} ms`);
}

/** Whether a `show --json` row has a check result (before the first: `""` or `null`). */
const checked = (row: StatusRow) => typeof row.lastCheck === "string" && row.lastCheck !== "";

/** The first `listening on` line's time: when checks have begun. */
function startedAt(lb: Running): number {
  const found = loggedAt(lb.stderr(), /listening on/);
  assert.ok(found, `a timestamped 'listening on' line in:\n${lb.stderr()}`);
  return found.at;
}

test("health: a refusing, a SYN-dropping and a wrongly answering channel go down, cost no client a wait, come back", async () => {
  const good = await answering("good");
  const wrong = await answering("wrong", "ERR");
  const refusedPort = await freePort();
  const hole = await synDropper();
  const fixed: Backend[] = [];
  let lb: Running | undefined;
  try {
    const port = await freePort();
    const channels = [at(good), `127.0.0.1:${refusedPort}`, `127.0.0.1:${hole.port}`, at(wrong)];
    lb = await startBalance([...FAST, ...SEND_EXPECT, "-t", "5", String(port), ...channels], port);
    const started = startedAt(lb);
    const broken = [[1, refusedPort, "refusing"], [2, hole.port, "SYN-dropping"], [3, wrong.port, "wrong-bytes"]];
    const reasons: string[] = [];
    for (const [channel, channelPort, what] of broken as [number, number, string][]) {
      const { at, line } = await logged(lb, down(channel, channelPort), 15_000);
      reasons.push(line.match(down(channel, channelPort))![1]);
      const ms = at - started;
      console.log(
        `health: ${what} channel down ${ms} ms after start (fall × interval + timeout = ${detectMs(INTERVAL)} ms)`,
      );
      console.log(`health:   ${line.slice(line.indexOf("group"))}`);
      assert.ok(ms <= detectMs(INTERVAL) + SLACK_MS, `${what}: down after ${ms} ms`);
    }
    assert.match(reasons[1], /timed out/, "the SYN-dropping channel's reason");
    assert.doesNotMatch(lb.stderr(), /channel 0 \(.*\) is DOWN/, "the good channel passed every check");

    // With -t 5, one client sent to the SYN-dropping channel would wait 5 s.
    const from = lb.stderr().length;
    for (let i = 0; i < 10; i++) {
      const t0 = Date.now();
      assert.equal(await whoAnswers(port), "good", `client ${i}`);
      const ms = Date.now() - t0;
      assert.ok(ms < 2500, `client ${i} took ${ms} ms, half the -t 5 wait or more`);
    }
    const tried = lb.stderr().slice(from).split("\n").filter((l) => /\d: connect to group 0 channel [1-3] /.test(l));
    assert.deepEqual(tried, [], "no client was sent to a down channel");

    // Fixed one at a time, each comes back with no control command.
    fixed.push(await answering("refused", "PONG", refusedPort));
    await cameBack(lb, 1, refusedPort, Date.now(), "refusing");
    await hole.close();
    fixed.push(await answering("dropping", "PONG", hole.port));
    await cameBack(lb, 2, hole.port, Date.now(), "SYN-dropping");
    wrong.reply = "PONG";
    await cameBack(lb, 3, wrong.port, Date.now(), "wrong-bytes");

    const names = new Set<string>();
    for (let i = 0; i < 8; i++) names.add(await whoAnswers(port));
    assert.deepEqual([...names].sort(), ["dropping", "good", "refused", "wrong"], "all four picked again");
  } finally {
    await lb?.stop();
    await hole.close();
    await Promise.all([good, wrong, ...fixed].map((b) => b.close()));
  }
});

/** The pids of processes whose command line matches `pattern` (pgrep -f). */
function pgrep(pattern: string): number[] {
  const r = spawnSync("pgrep", ["-f", pattern], { encoding: "utf8" });
  return r.stdout.split("\n").filter(Boolean).map(Number);
}

test("health: --check-exec: health follows the exit status, BALANCE_CHECK_* reach it, a hung one is killed at the timeout", async () => {
  const dir = mkdtempSync(join(tmpdir(), "balance-health-exec-"));
  // A duration no other process on the machine sleeps: what pgrep looks for.
  const nap = `29.${process.pid}${Date.now() % 1_000_000}`;
  const script = join(dir, "check.sh");
  writeFileSync(
    script,
    [
      "#!/bin/sh",
      'echo "$BALANCE_CHECK_HOST $BALANCE_CHECK_PORT $BALANCE_CHECK_GROUP $BALANCE_CHECK_CHANNEL" >> "$1/seen"',
      'state=$(cat "$1/state-$BALANCE_CHECK_GROUP-$BALANCE_CHECK_CHANNEL")',
      // Not exec: the sleep is the script's child, as in a real script that hangs.
      'if [ "$state" = hang ]; then sleep "$2"; exit 1; fi',
      'exit "$state"',
      "",
    ].join("\n"),
  );
  chmodSync(script, 0o755);
  // Renamed into place: the script never reads a half-written state.
  const setState = (group: number, channel: number, state: string) => {
    writeFileSync(join(dir, "next"), state);
    renameSync(join(dir, "next"), join(dir, `state-${group}-${channel}`));
  };
  setState(0, 0, "0");
  setState(0, 1, "1");
  setState(1, 0, "0");
  onTimeout(() => pgrep(`sleep ${nap}`).forEach((pid) => process.kill(pid, "SIGKILL")));
  const interval = 0.5;
  let lb: Running | undefined;
  try {
    const port = await freePort();
    lb = await startBalance(
      [
        "--check",
        "--check-interval",
        String(interval),
        "--rise",
        String(RISE),
        "--fall",
        String(FALL),
        "--check-exec",
        `${script} ${dir} ${nap}`,
        String(port),
        "127.0.0.1:1001",
        "127.0.0.2:1002",
        "!",
        "127.0.0.3:1003",
      ],
      port,
    );
    const started = startedAt(lb);
    const failing = await logged(lb, down(1, 1002, { host: "127.0.0.2" }), 15_000);
    console.log(`health: exec exit 1 down ${failing.at - started} ms after start (bound ${detectMs(interval)} ms)`);
    assert.ok(failing.at - started <= detectMs(interval) + SLACK_MS);
    const seen = () => existsSync(join(dir, "seen")) ? readFileSync(join(dir, "seen"), "utf8") : "";
    await until(
      seen,
      (s) => ["127.0.0.1 1001 0 0", "127.0.0.2 1002 0 1", "127.0.0.3 1003 1 0"].every((l) => s.includes(`${l}\n`)),
      "every channel's BALANCE_CHECK_HOST, _PORT, _GROUP and _CHANNEL in the script's environment",
    );
    const rows = await until(
      async () => healthRows(await control(port, "health")),
      (r) => r.length === 3 && r[0].passes >= RISE && r[2].passes >= RISE,
      "the passing channels to pass repeatedly",
    );
    assert.deepEqual(rows.map((r) => r.health), ["up", "down", "up"]);
    assert.doesNotMatch(lb.stderr(), /channel 0 \(.*\) is DOWN/, "exit 0 passes");

    // The health follows the script's answer both ways.
    let fixedAt = Date.now();
    setState(0, 1, "0");
    setState(0, 0, "1");
    await cameBack(lb, 1, 1002, fixedAt, "exec exit 0", { interval, host: "127.0.0.2" });
    await logged(lb, down(0, 1001), 15_000);

    // A hung check is killed at the timeout: the channel goes down, and no sleep outlives it.
    const hungAt = Date.now();
    setState(1, 0, "hang");
    await until(() => pgrep(`sleep ${nap}`), (pids) => pids.length > 0, "the script to hang in sleep", { ms: 5000 });
    const hung = await logged(lb, down(0, 1003, { group: 1, host: "127.0.0.3" }), 15_000);
    console.log(
      `health: exec hanging down ${hung.at - hungAt} ms after it began to hang (bound ${detectMs(interval)} ms)`,
    );
    console.log(`health:   ${hung.line.slice(hung.line.indexOf("group"))}`);
    assert.ok(hung.at - hungAt <= detectMs(interval) + SLACK_MS);
    fixedAt = Date.now();
    setState(1, 0, "0");
    await cameBack(lb, 0, 1003, fixedAt, "exec hanging", { interval, group: 1, host: "127.0.0.3" });
    // Every hung check ended before the channel could pass twice; a sleep still running was left behind.
    await until(
      () => pgrep(`sleep ${nap}`),
      (pids) => pids.length === 0,
      `no 'sleep ${nap}' left after the hung checks were killed at the timeout`,
      { ms: 3000 },
    );
  } finally {
    await lb?.stop();
    pgrep(`sleep ${nap}`).forEach((pid) => process.kill(pid, "SIGKILL"));
    rmSync(dir, { recursive: true, force: true });
  }
});

test("health: passive: one failed client connect brings the next check forward", async () => {
  const a = await startBackend("a");
  const b = await startBackend("b");
  let lb: Running | undefined;
  try {
    const port = await freePort();
    // At 30 s, no active check fails during the test unless one is brought forward.
    lb = await startBalance(
      ["--check", "--check-interval", "30", "--rise", "2", "--fall", "2", String(port), at(a), at(b)],
      port,
    );
    const first = await until(
      () => status(port),
      (s) => s.every(checked),
      "the checks at start to pass",
    );
    assert.deepEqual(first.map((r) => [r.health, r.checkFailures]), [["up", 0], ["up", 0]]);
    const aPort = a.port;
    await a.close();
    const t0 = Date.now();
    // Round robin sends one of the two to a, which now refuses; both fail over to b.
    assert.deepEqual([await whoAnswers(port), await whoAnswers(port)], ["b", "b"]);
    const rows = await until(
      async () => healthRows(await control(port, "health")),
      (r) => r[0].fails >= 2,
      "channel 0's next check to come at once and fail (the passive failure and one check)",
      { ms: 8000 },
    );
    console.log(`health: passive: channel 0 at ${rows[0].fails} failures ${Date.now() - t0} ms after the client`);
    assert.equal(rows[0].health, "down");
    assert.notEqual(rows[0].last, first[0].lastCheck, "the last result changed");
    const json = await status(port);
    assert.ok(json[0].checkFailures >= 2, `checkFailures ${json[0].checkFailures}`);
    assert.deepEqual([json[1].health, json[1].checkFailures], ["up", 0]);
    await logged(lb, down(0, aPort));
  } finally {
    await lb?.stop();
    await Promise.all([a.close(), b.close()]);
  }
});

/**
 * Runs `body` against a balancer (`FAST` checks) over channel 0, a port where
 * nothing listens yet, and channel 1, backend "b"; `revive` starts backend
 * "a" on channel 0's port. Stops everything after.
 */
async function withDeadChannel(
  debug: boolean,
  body: (lb: Running, port: number, aPort: number, revive: () => Promise<void>) => Promise<void>,
): Promise<void> {
  const aPort = await freePort();
  let a: Backend | undefined;
  try {
    await withBalancer(
      { backends: ["b"], options: FAST, channels: ([b]) => [`127.0.0.1:${aPort}`, at(b)], debug },
      ({ lb, port }) =>
        body(lb, port, aPort, async () => {
          a = await startBackend("a", undefined, "127.0.0.1", aPort);
        }),
    );
  } finally {
    await a?.close();
  }
}

test("health: the administrative and the health state are independent", () =>
  withDeadChannel(true, async (lb, port, aPort, revive) => {
    await logged(lb, down(0, aPort));
    assert.equal(await control(port, "disable 0"), "channel 0 disabled\n");
    await revive();
    await logged(lb, up(0, aPort), 15_000);
    const show = (await control(port, "show")).trim().split("\n").slice(1).map((l) => l.trim().split(/\s+/));
    assert.deepEqual(show.map((r) => r[3]), ["dis", "ENA"], "a disabled channel that came up stays disabled");
    assert.deepEqual(healthRows(await control(port, "health")).map((r) => r.health), ["up", "up"]);
    assert.deepEqual((await status(port)).map((r) => [r.enabled, r.health]), [[false, "up"], [true, "up"]]);
    for (let i = 0; i < 4; i++) assert.equal(await whoAnswers(port), "b", "disabled: not picked though up");
    assert.equal(await control(port, "enable 0"), "channel 0 enabled\n");
    const names = new Set<string>();
    for (let i = 0; i < 4; i++) names.add(await whoAnswers(port));
    assert.ok(names.has("a"), `enabled and up: picked (${[...names]})`);
  }));

test("health: -w 2: a channel marked down is skipped by both threads", async () => {
  const good = await answering("good");
  const wrong: Answering = await answering("wrong", "ERR");
  let lb: Running | undefined;
  try {
    const port = await freePort();
    lb = await startBalance(["-w", "2", ...FAST, ...SEND_EXPECT, String(port), at(good), at(wrong)], port);
    await lb.waitForTrace("in 2 thread(s)");
    await logged(lb, down(1, wrong.port));
    const from = lb.stderr().length;
    const answers = [];
    for (let i = 0; i < 40; i++) answers.push(await whoAnswers(port));
    assert.deepEqual(answers, Array(40).fill("good"), "no client reached the down channel");
    const accepted = [0, 1].map((w) =>
      lb!.stderr().slice(from).split("\n").filter((l) => l.includes(`worker ${w}: accepted`)).length
    );
    assert.ok(accepted[0] > 0 && accepted[1] > 0, `clients came through both threads (${accepted})`);
  } finally {
    await lb?.stop();
    await Promise.all([good.close(), wrong.close()]);
  }
});

test("health: without -d, DOWN is logged at warning and UP at info, once each, with the reason and the counts", () =>
  withDeadChannel(false, async (lb, _port, aPort, revive) => {
    const where = `group 0 channel 0 \\(127\\.0\\.0\\.1:${aPort}\\)`;
    await lb.waitForTrace(new RegExp(`balance WRN: ${where} is DOWN: \\S.* \\(${FALL} of ${FALL} checks failed\\)\n`));
    await revive();
    await lb.waitForTrace(new RegExp(`balance INF: ${where} is UP\\b.*\n`), 15_000);
    const lines = lb.stderr().split("\n");
    assert.equal(lines.filter((l) => / is (DOWN|UP)\b/.test(l)).length, 2, lb.stderr());
    assert.deepEqual(lines.filter((l) => / DBG: /.test(l)), [], "no traces without -d");
  }));

test("health: show keeps its table, show --json gains health/checkFailures/lastCheck, the health table, h is help", async () => {
  const good = await startBackend("good");
  const deadPort = await freePort();
  let lb: Running | undefined;
  try {
    const port = await freePort();
    lb = await startBalance([...FAST, String(port), at(good), `127.0.0.1:${deadPort}`], port);
    await logged(lb, down(1, deadPort));
    const json = await until(() => status(port), (s) => checked(s[0]), "a check of channel 0");
    assert.equal(json[0].health, "up");
    assert.equal(json[0].checkFailures, 0);
    assert.equal(json[1].health, "down");
    assert.ok(json[1].checkFailures >= FALL, `checkFailures ${json[1].checkFailures}`);
    assert.equal(typeof json[1].lastCheck, "string");
    assert.notEqual(json[1].lastCheck, "");
    // good greets every connection: a check counted as a client would show in totalc and rcvd.
    assert.deepEqual(
      json.map((r) => [r.c, r.totalc, r.sent, r.rcvd]),
      [[0, 0, 0, 0], [0, 0, 0, 0]],
      "checks count nowhere",
    );

    const show = await control(port, "show");
    assert.match(show, /^GRP Type {2}# S {3}ip-address {7}port {5}c totalc {2}maxc {9}sent {9}rcvd\n/);
    assert.deepEqual(show.trim().split("\n").slice(1).map((l) => l.trim().split(/\s+/).length), [11, 11]);

    const table = await control(port, "health");
    assert.match(table.split("\n")[0], /^GRP\s+#\s+ip-address\s+port\s+health\s/);
    const rows = healthRows(table);
    assert.deepEqual(
      rows.map((r) => [r.group, r.channel, r.address, r.port, r.health]),
      [[0, 0, "127.0.0.1", good.port, "up"], [0, 1, "127.0.0.1", deadPort, "down"]],
    );
    assert.ok(rows[0].passes >= 1 && rows[0].fails === 0, JSON.stringify(rows[0]));
    assert.ok(rows[1].passes === 0 && rows[1].fails >= FALL, JSON.stringify(rows[1]));
    assert.ok(rows.every((r) => r.since >= 0 && r.since < 60), `seconds since the last change:\n${table}`);
    assert.equal(rows[1].last, json[1].lastCheck, "the last result as in show --json");

    const help = await control(port, "help");
    assert.equal(await control(port, "h"), help, "h is still help");
    assert.equal(await control(port, "he"), help);
    assert.match(help, /^health\b/m);
    assert.match((await control(port, "hea")).split("\n")[0], /^GRP\s+#\s+ip-address/, "hea is health");
  } finally {
    await lb?.stop();
    await good.close();
  }

  const port = await freePort();
  const plain = await startBalance([String(port), at(good)], port);
  try {
    const json = await status(port);
    assert.equal(json[0].health, "none", "without --check");
    assert.ok("checkFailures" in json[0] && "lastCheck" in json[0], JSON.stringify(json[0]));
    // The issue leaves this answer open: a line saying so, or every channel `none`.
    const table = await control(port, "health");
    assert.ok(/^health checks are off\b/.test(table) || healthRows(table)[0]?.health === "none", table);
  } finally {
    await plain.stop();
  }
});

/** What balance said on its `balance:` lines. */
const errorLines = (stderr: string) => stderr.split("\n").filter((l) => l.startsWith("balance:"));

/**
 * Runs balance with `args` before a port and an unresolvable channel: an
 * accepted command line gets as far as resolving (68), a rejected one exits
 * 64 first.
 */
async function commandLine(args: string[]) {
  const r = await runBalance(["-f", ...args, String(await freePort()), "nosuchhost.invalid:80"]);
  return { code: r.code, lines: errorLines(r.stderr), stderr: r.stderr };
}

/** Runs `jobs` at most `n` at a time. */
async function pooled<T>(jobs: (() => Promise<T>)[], n = 4): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]();
    }
  }));
  return results;
}

const NUMERIC = ["--check-interval", "--check-timeout", "--rise", "--fall"];

test("health: every --check-* option, --rise and --fall without --check exit 64 naming the option", async () => {
  const options = [...NUMERIC, "--check-send", "--check-expect", "--check-exec"];
  const value: Record<string, string> = { "--check-send": "x", "--check-expect": "x", "--check-exec": "/bin/true" };
  const results = await pooled(options.map((o) => () => commandLine([o, value[o] ?? "2"])));
  options.forEach((option, i) => {
    const { code, lines, stderr } = results[i];
    assert.equal(code, 64, `${option} without --check: ${stderr}`);
    assert.equal(lines.length, 1, `one balance: line: ${stderr}`);
    assert.ok(lines[0].includes(option), `the line names ${option}: ${lines[0]}`);
  });
});

/** A tiny deterministic generator, so a failing fuzzed value shows up again on the next run. */
function* fuzzed(seed: number, count: number): Generator<string> {
  const chars = "0123456789.-+eExX ,_abn\\";
  let s = seed;
  for (let i = 0; i < count; i++) {
    let v = "";
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const length = s % 6;
    for (let j = 0; j < length; j++) {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      v += chars[s % chars.length];
    }
    yield v;
  }
}

/** Whether an accepted value means a valid setting: seconds ≥ 0.1, or a whole count ≥ 1. */
function valid(option: string, v: string): boolean {
  const n = v.trim() === "" ? NaN : Number(v);
  return option === "--rise" || option === "--fall" ? Number.isInteger(n) && n >= 1 : Number.isFinite(n) && n >= 0.1;
}

test("health: option values: good ones parse, bad ones exit 64 with one line naming the option, fuzzed ones either", async () => {
  const good: [string, string][] = [
    ...["0.1", "2", "1.5", "30"].map((v): [string, string] => ["--check-interval", v]),
    ...["0.1", "1", "2.5"].map((v): [string, string] => ["--check-timeout", v]),
    ...["1", "2", "10"].flatMap((v): [string, string][] => [["--rise", v], ["--fall", v]]),
    ["--check-send", "PING\\r\\n"],
    ["--check-send", "\\x00\\xff\\t\\\\"],
    ["--check-expect", "+PONG"],
    ["--check-exec", "/bin/true -x --y"],
  ];
  const bad: [string, string][] = [
    ...["0", "0.09", "-1", "abc", "", "1s", "NaN", "2,5"].map((v): [string, string] => ["--check-interval", v]),
    ...["0", "-1", "abc", "", "NaN"].map((v): [string, string] => ["--check-timeout", v]),
    ...["0", "-1", "1.5", "abc", "", "NaN"].flatMap((v): [string, string][] => [["--rise", v], ["--fall", v]]),
  ];
  // Either a clear error or a parse that is correct (see `valid`; escapes and programs are the user's).
  const either: [string, string][] = [
    ...NUMERIC.flatMap((o, k) => [...fuzzed(k + 1, 5)].map((v): [string, string] => [o, v])),
    ...["0x2", "1e1", " 2", "+2", "99999999999"].flatMap((v) => NUMERIC.map((o): [string, string] => [o, v])),
    ...["\\xZZ", "\\x4", "\\q", "abc\\", ""].flatMap((v) =>
      ["--check-send", "--check-expect"].map((o): [string, string] => [o, v])
    ),
    ["--check-exec", ""],
    ["--check-exec", " "],
  ];
  const all = [...good, ...bad, ...either];
  const results = await pooled(all.map(([o, v]) => () => commandLine(["--check", o, v])));
  all.forEach(([option, v], i) => {
    const { code, lines, stderr } = results[i];
    const said = `${option} ${JSON.stringify(v)}: exit ${code}: ${stderr.slice(0, 300)}`;
    const kind = i < good.length ? "good" : i < good.length + bad.length ? "bad" : "either";
    if (kind === "good") assert.equal(code, 68, `parses: ${said}`);
    if (kind === "bad") assert.equal(code, 64, `rejected: ${said}`);
    assert.ok(code === 64 || code === 68, said);
    if (code === 64) {
      assert.equal(lines.length, 1, `exactly one balance: line: ${said}`);
      assert.ok(lines[0].includes(option), `the line names the option: ${said}`);
    } else if (NUMERIC.includes(option) && kind === "either") {
      assert.ok(valid(option, v), `accepted, so it must be a correct value: ${said}`);
    }
  });
  // A value missing at the end of the line.
  for (const option of NUMERIC) {
    const r = await runBalance(["-f", "--check", option]);
    assert.equal(r.code, 64, `${option} without a value: ${r.stderr}`);
    assert.equal(errorLines(r.stderr).length, 1, r.stderr);
  }
});
