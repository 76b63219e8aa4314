/**
 * Control that scripts can rely on: `-c` exit codes, finding the running
 * instances (`--list`, the hint when none answers, root's view of another
 * user's), host names and bracketed IPv6 in `create`/`assign`, and `show`
 * aligned whatever the address length.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { type Backend, freePort, startBackend, whoAnswers } from "../support/net.ts";
import { runBalance, type Running, startBalance, withBalancer } from "../support/balance.ts";
import { prepareNobody } from "../support/nobody.ts";

const at = (b: Backend) => `${b.host}:${b.port}`;

/**
 * A private control directory and a private TMPDIR (root also looks in
 * `<tmpdir>/balance-*`), so that a listing sees only this test's instances.
 */
function privateDirs() {
  const dir = mkdtempSync(join(tmpdir(), "balance-inst-"));
  const tmp = mkdtempSync(join(tmpdir(), "balance-insttmp-"));
  chmodSync(tmp, 0o1777);
  return {
    dir,
    tmp,
    env: { BALANCE_CONTROL_DIR: dir, TMPDIR: tmp },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

/** One balancer in front of backends a and b (group 0), with private directories. */
async function withInstance(
  fn: (f: { port: number; lb: Running; env: Record<string, string>; backends: Backend[] }) => Promise<void>,
) {
  const dirs = privateDirs();
  try {
    await withBalancer({ backends: ["a", "b"], env: dirs.env }, fn);
  } finally {
    dirs.cleanup();
  }
}

/** `--list` rows as fields, leaving out instances of the machine's own (root also sees /run). */
function listed(stdout: string): string[][] {
  const [header, ...rows] = stdout.trimEnd().split("\n");
  assert.deepEqual(header.split(/\s+/), ["PORT", "ADDRESS", "PID", "USER", "CONTROL"]);
  return rows.map((r) => r.split(/\s+/)).filter((r) => !r[4].startsWith("/run/"));
}

// Where each field of a `show` line ends: right-aligned columns end alike.
const fieldEnds = (line: string) => [...line.matchAll(/\S+/g)].map((m) => m.index! + m[0].length);

test("instances: -c exits 0 on success and 65 on an error answer, the answers word for word", () =>
  withInstance(async ({ port, env, lb }) => {
    const ctl = (command: string) => runBalance(["-c", command, String(port)], { env });
    for (
      const [command, answer] of [
        ["disable 0", "channel 0 disabled"],
        ["disable 0", "channel 0 already disabled"],
        ["enable 0", "channel 0 enabled"],
        ["maxc 1 5", "maxc of channel 1 changed to 5"],
        ["version", undefined],
        ["show", undefined],
      ] as const
    ) {
      const r = await ctl(command);
      assert.deepEqual([r.code, r.stderr], [0, ""], command);
      if (answer) assert.equal(r.stdout, `${answer}\n`, command);
    }
    for (
      const [command, answer] of [
        ["bogus", "syntax error"],
        ["disable x", "syntax error"],
        ["disable 7", "no such channel 7"],
        ["group 99", "value out of range"],
        ["create 127.0.0.1 0", "invalid address"],
        ["create nosuchhost.invalid 80", "invalid address"],
        ["assign 0 127.0.0.1 80", "channel must be disabled to assign new address"],
        ["mrtg-conns 5 0", "no such channel 0"],
      ]
    ) {
      const r = await ctl(command);
      assert.deepEqual([r.code, r.stdout, r.stderr], [65, `${answer}\n`, ""], command);
    }
    // The shell keeps going past errors, and ends 0.
    const shell = await runBalance(["-i", String(port)], { env, input: "bogus\ndisable 7\nshow\n" });
    assert.equal(shell.code, 0, shell.stderr);
    assert.match(shell.stdout, /^syntax error\nno such channel 7\nGRP /);
    // Every change reached the log (here -f -d: stderr), errors did not.
    for (
      const line of [
        "control: channel 0 of group 0 disabled",
        "control: channel 0 of group 0 enabled",
        "control: maxc of channel 1 of group 0 changed to 5",
      ]
    ) {
      assert.ok(lb.stderr().includes(line), `${line} in:\n${lb.stderr()}`);
    }
    assert.equal(lb.stderr().match(/control: /g)?.length, 3, "one line per change, none for errors");
  }));

test("instances: --list shows every running instance (port, address, pid, user), and none", async () => {
  const dirs = privateDirs();
  const backend = await startBackend("a");
  const started: Running[] = [];
  try {
    const none = await runBalance(["--list"], { env: dirs.env });
    assert.equal(none.code, 0, none.stderr);
    assert.deepEqual(listed(none.stdout), []);
    const [p1, p2] = [await freePort(), await freePort()];
    started.push(await startBalance([String(p1), at(backend)], p1, { env: dirs.env }));
    started.push(await startBalance(["-b", "127.0.0.1", String(p2), at(backend)], p2, { env: dirs.env }));
    const r = await runBalance(["--list"], { env: dirs.env });
    assert.deepEqual([r.code, r.stderr], [0, ""]);
    const me = userInfo().username;
    assert.deepEqual(
      listed(r.stdout).sort((a, b) => Number(a[0]) - Number(b[0])),
      [
        [String(p1), "any", String(started[0].child.pid), me, join(dirs.dir, `any-${p1}.sock`)],
        [String(p2), "127.0.0.1", String(started[1].child.pid), me, join(dirs.dir, `127.0.0.1-${p2}.sock`)],
      ].sort((a, b) => Number(a[0]) - Number(b[0])),
    );
    // A stale socket (kill -9) is no instance.
    process.kill(started[0].child.pid!, "SIGKILL");
    await started.shift()!.exited;
    const after = await runBalance(["--list"], { env: dirs.env });
    assert.deepEqual(listed(after.stdout).map((row) => row[0]), [String(p2)]);
  } finally {
    for (const lb of started) await lb.stop();
    await backend.close();
    dirs.cleanup();
  }
});

test("instances: -c finding none on the port names those that run, with the -b that reaches them", async () => {
  const dirs = privateDirs();
  const backend = await startBackend("a");
  const started: Running[] = [];
  try {
    const [p1, p2] = [await freePort(), await freePort()];
    started.push(await startBalance(["-b", "127.0.0.1", String(p1), at(backend)], p1, { env: dirs.env }));
    started.push(await startBalance([String(p2), at(backend)], p2, { env: dirs.env }));
    const missed = await runBalance(["-c", "show", String(p1)], { env: dirs.env });
    assert.equal(missed.code, 69);
    assert.equal(missed.stdout, "");
    assert.equal(missed.stderr.split("\n").length, 2, `one line: ${missed.stderr}`);
    assert.match(
      missed.stderr,
      new RegExp(
        `^balance: no balance instance running on port ${p1}; running: port ${p1} on 127\\.0\\.0\\.1 ` +
          `\\(use -b 127\\.0\\.0\\.1\\), .*port ${p2}`,
      ),
    );
    const hinted = await runBalance(["-b", "127.0.0.1", "-c", "show", String(p1)], { env: dirs.env });
    assert.equal(hinted.code, 0, "the hint works");
    const wrongB = await runBalance(["-b", "127.0.0.1", "-c", "show", String(p2)], { env: dirs.env });
    assert.equal(wrongB.code, 69);
    assert.match(wrongB.stderr, new RegExp(`running: port ${p2} \\(use without -b\\)`));
  } finally {
    for (const lb of started) await lb.stop();
    await backend.close();
  }
  // With none running at all, the message says only that.
  const none = await runBalance(["-c", "show", "1"], { env: dirs.env });
  dirs.cleanup();
  assert.equal(none.code, 69);
  assert.match(none.stderr, /^balance: no balance instance running on port 1 \(no control socket at /);
});

const nobody = await prepareNobody();

test(
  "instances: root finds and controls another user's instance; that user lists only its own",
  { skip: typeof nobody === "string" && nobody },
  async () => {
    if (typeof nobody === "string") return;
    const dirs = privateDirs();
    const backend = await startBackend("a");
    const started: Running[] = [];
    try {
      const [theirs, mine] = [await freePort(), await freePort()];
      // nobody's default place, in the shared (private to this test) TMPDIR.
      const nobodyEnv = { ...nobody.env, TMPDIR: dirs.tmp };
      started.push(
        await startBalance([String(theirs), at(backend)], theirs, { command: nobody.command, env: nobodyEnv }),
      );
      started.push(await startBalance([String(mine), at(backend)], mine, { env: dirs.env }));
      const theirDir = join(dirs.tmp, "balance-65534");

      const rootList = await runBalance(["--list"], { env: dirs.env });
      assert.equal(rootList.code, 0, rootList.stderr);
      const rows = listed(rootList.stdout);
      assert.deepEqual(rows.find((r) => r[0] === String(theirs)), [
        String(theirs),
        "any",
        String(started[0].child.pid),
        "nobody",
        join(theirDir, `any-${theirs}.sock`),
      ]);
      assert.ok(rows.some((r) => r[0] === String(mine) && r[3] === "root"), rootList.stdout);

      const missed = await runBalance(["-c", "show", String(theirs)], { env: dirs.env });
      assert.equal(missed.code, 69);
      assert.match(missed.stderr, new RegExp(`port ${theirs} \\(use BALANCE_CONTROL_DIR=${theirDir}\\)`));
      const reached = await runBalance(["-c", "disable 0", String(theirs)], { env: { BALANCE_CONTROL_DIR: theirDir } });
      assert.deepEqual([reached.code, reached.stdout], [0, "channel 0 disabled\n"], reached.stderr);

      const theirList = await runBalance(["--list"], { command: nobody.command, env: nobodyEnv, cwd: nobody.home });
      assert.equal(theirList.code, 0, theirList.stderr);
      assert.deepEqual(listed(theirList.stdout).map((r) => [r[0], r[3]]), [[String(theirs), "nobody"]]);
    } finally {
      for (const lb of started) await lb.stop();
      await backend.close();
      dirs.cleanup();
      nobody.cleanup();
    }
  },
);
if (typeof nobody !== "string") process.on("exit", () => nobody.cleanup());

test("instances: create and assign take host names and bracketed IPv6; the new channels serve", () =>
  withInstance(async ({ port, env, lb }) => {
    const ctl = async (command: string, answer: string, code = 0) => {
      const r = await runBalance(["-c", command, String(port)], { env });
      assert.deepEqual([r.code, r.stdout, r.stderr], [code, `${answer}\n`, ""], command);
    };
    // localhost may resolve to either loopback: a backend "d" listens on both.
    const d4 = await startBackend("d", undefined, "127.0.0.1");
    const d6 = await startBackend("d", undefined, "::1", d4.port);
    const e = await startBackend("e", undefined, "::1");
    try {
      await ctl(`create localhost ${d4.port}`, "channel created");
      await ctl(`create [::1] ${e.port}`, "channel created");
      await ctl(`create nosuchhost.invalid ${e.port}`, "invalid address", 65);
      const show = await runBalance(["-c", "show --json", String(port)], { env });
      const created = JSON.parse(show.stdout).slice(2);
      assert.ok(["127.0.0.1", "::1"].includes(created[0].address), `localhost resolved: ${created[0].address}`);
      assert.deepEqual([created[1].address, created[1].port], ["::1", e.port]);
      await ctl("disable 0", "channel 0 disabled");
      await ctl("disable 1", "channel 1 disabled");
      await ctl("enable 2", "channel 2 enabled");
      assert.equal(await whoAnswers(port), "d", "the channel made from a host name serves");
      await ctl("disable 2", "channel 2 disabled");
      await ctl("enable 3", "channel 3 enabled");
      assert.equal(await whoAnswers(port), "e", "the channel made from [::1] serves");
      // assign: a name, then bracketed IPv6, resolved at the command.
      await ctl(`assign 2 localhost ${e.port}`, "channel reassigned");
      await ctl(`assign 2 [::1] ${e.port}`, "channel reassigned");
      await ctl(`assign 2 nosuchhost.invalid ${e.port}`, "invalid address", 65);
      const row = JSON.parse((await runBalance(["-c", "show --json", String(port)], { env })).stdout)[2];
      assert.deepEqual([row.address, row.port], ["::1", e.port]);
      assert.match(
        lb.stderr(),
        new RegExp(`control: channel 3 of group 0 created for \\[::1\\]:${e.port} \\(disabled\\)`),
      );
      assert.match(lb.stderr(), new RegExp(`control: channel 2 of group 0 reassigned to \\[::1\\]:${e.port}`));
    } finally {
      await Promise.all([d4.close(), d6.close(), e.close()]);
    }
  }));

test("instances: show keeps its columns aligned with a long IPv6 address", () =>
  withInstance(async ({ port, env }) => {
    const long = "fd00:1234:5678:9abc:def0:1234:5678:9abc";
    const created = await runBalance(["-c", `create [${long}] 8080`, String(port)], { env });
    assert.equal(created.stdout, "channel created\n", created.stderr);
    const lines = (await runBalance(["-c", "show", String(port)], { env })).stdout.trimEnd().split("\n");
    const [header, ...rows] = lines;
    assert.equal(rows.length, 3);
    assert.ok(rows[2].includes(long));
    const columnEnds = fieldEnds(header).slice(5);
    for (const row of rows) {
      assert.deepEqual(fieldEnds(row).slice(5), columnEnds, `aligned:\n${header}\n${row}`);
      assert.equal(row.indexOf(row.trim().split(/\s+/)[4]), header.indexOf("ip-address"));
    }
  }));
