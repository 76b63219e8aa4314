import { onTimeout, test } from "../support/test.ts";
import assert from "node:assert/strict";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as net from "node:net";
import process from "node:process";
import { type Backend, connect, freePort, startBackend, whoAnswers } from "../support/net.ts";
import { type Nobody, prepareNobody } from "../support/nobody.ts";
import {
  balanceCommand,
  pidsListeningOn,
  runBalance,
  type Running,
  type RunOptions,
  startBalance,
  withBalancer,
} from "../support/balance.ts";
import { privateRun } from "../support/private_run.ts";
import { until, within } from "../support/wait.ts";
import { sleep } from "../support/helpers.ts";

const at = (b: Backend) => `${b.host}:${b.port}`;

/** A private control directory per test, so tests never see each other's instances. */
function controlDir(): { dir: string; env: Record<string, string>; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), "balance-ctl-"));
  return { dir, env: { BALANCE_CONTROL_DIR: dir }, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

interface Fixture {
  port: number;
  backends: Backend[];
  lb: Running;
  env: Record<string, string>;
  dir: string;
  ctl(command: string): Promise<string>;
}

/** balance in front of a, b (group 0, RR) and c (group 1), with its own control directory. */
function withControlled(fn: (f: Fixture) => Promise<void>, extraArgs: string[] = []) {
  return withBalancer({
    backends: ["a", "b", "c"],
    options: extraArgs,
    channels: ([a, b, c]) => [at(a), at(b), "!", at(c)],
    controlDir: true,
  }, ({ port, backends, lb, env }) => {
    const ctl = async (command: string) => {
      const r = await runBalance(["-c", command, String(port)], { env });
      // An error answer exits 65 (see instances.test.ts); the answer is the same.
      const error = /^(syntax error|no such channel \d+|invalid address|channel must be disabled .*)\n$/.test(r.stdout);
      assert.equal(r.code, error ? 65 : 0, `balance -c '${command}': ${r.stderr}`);
      assert.equal(r.stderr, "");
      return r.stdout;
    };
    return fn({ port, backends, lb, env, dir: env.BALANCE_CONTROL_DIR, ctl });
  });
}

const rows = (show: string) => show.trim().split("\n").slice(1).map((l) => l.trim().split(/\s+/));

test("control: show lists every channel with balance's columns", () =>
  withControlled(async ({ ctl, backends, port }) => {
    await whoAnswers(port);
    await sleep(50);
    const out = await ctl("show");
    assert.match(out, /^GRP Type {2}# S {3}ip-address {7}port {5}c totalc {2}maxc {9}sent {9}rcvd\n/);
    const r = rows(out);
    assert.deepEqual(r.map((x) => x.slice(0, 6)), [
      ["0", "RR", "0", "ENA", "127.0.0.1", String(backends[0].port)],
      ["0", "RR", "1", "ENA", "127.0.0.1", String(backends[1].port)],
      ["1", "RR", "0", "ENA", "127.0.0.1", String(backends[2].port)],
    ]);
    assert.deepEqual(r[0].slice(6), ["0", "1", "0", "0", "2"], "c totalc maxc sent rcvd after one greeting");
    const json = JSON.parse(await ctl("show --json"));
    assert.equal(json[0].rcvd, 2);
    assert.equal(json[0].totalc, 1);
  }));

test("control: disable and enable steer live traffic, answers word for word", () =>
  withControlled(async ({ ctl, port }) => {
    assert.equal(await ctl("disable 0"), "channel 0 disabled\n");
    assert.equal(await ctl("dis 0"), "channel 0 already disabled\n");
    assert.deepEqual([await whoAnswers(port), await whoAnswers(port)], ["b", "b"]);
    assert.equal(await ctl("d 1"), "channel 1 disabled\n");
    assert.equal(await whoAnswers(port), "c", "group 0 all disabled: group 1");
    assert.equal(await ctl("en 0"), "channel 0 enabled\n");
    assert.equal(await ctl("enable 0"), "channel 0 already enabled\n");
    assert.equal(await whoAnswers(port), "a");
    assert.equal(await ctl("disable x"), "syntax error\n");
    assert.equal(await ctl("disable 7"), "no such channel 7\n");
    assert.equal(await ctl("frobnicate"), "syntax error\n");
    assert.equal(rows(await ctl("sh"))[0][3], "ENA", "disable x changed nothing");
  }));

test("control: maxc, reset, mrtg-bytes, mrtg-conns, version, help", () =>
  withControlled(async ({ ctl, port }) => {
    assert.equal(await ctl("maxc 0 1"), "maxc of channel 0 changed to 1\n");
    const held = await connect(port);
    await held.waitFor((d) => d.toString() === "a\n");
    assert.equal(await whoAnswers(port), "b");
    assert.equal(await whoAnswers(port), "b", "a is full at maxc 1");
    held.socket.destroy();
    await sleep(100);
    // b greeted twice ("b\n"): 4 bytes received from it, none sent.
    assert.equal(await ctl("mrtg-bytes 0 1"), "4\n0\nUNKNOWN\ngroup 0 channel 1\n");
    assert.equal(await ctl("mrtg-conns 0 1"), "2\nUNKNOWN\nUNKNOWN\ngroup 0 channel 1\n");
    assert.equal(await ctl("reset 1"), "channel 1 counters reset\n");
    assert.equal(await ctl("mrtg-conns 0 1"), "0\nUNKNOWN\nUNKNOWN\ngroup 0 channel 1\n");
    assert.match(await ctl("version"), /^This is balance \d+\.\d+\.\d+\nMAXGROUPS=\d+\nMAXCHANNELS=\d+\n$/);
    const help = await ctl("?");
    for (
      const c of ["quit", "show", "help", "kill", "disable", "group", "reset", "enable", "create", "assign", "maxc"]
    ) {
      assert.match(help, new RegExp(`^${c}`, "m"));
    }
  }));

test("control: create (disabled), assign (only when disabled), enable: the new channel serves", () =>
  withControlled(async ({ ctl, port }) => {
    const d = await startBackend("d");
    const e = await startBackend("e");
    try {
      assert.equal(await ctl(`create 127.0.0.1 ${d.port}`), "channel created\n");
      assert.equal(rows(await ctl("show"))[2].slice(0, 6).join(" "), `0 RR 2 dis 127.0.0.1 ${d.port}`);
      assert.equal(await ctl(`create not-an-address ${d.port}`), "invalid address\n");
      assert.equal(await ctl(`assign 0 127.0.0.1 ${e.port}`), "channel must be disabled to assign new address\n");
      assert.equal(await ctl(`assign 2 127.0.0.1 ${e.port}`), "channel reassigned\n");
      await ctl("disable 0");
      await ctl("disable 1");
      await ctl("enable 2");
      assert.equal(await whoAnswers(port), "e");
    } finally {
      await d.close();
      await e.close();
    }
  }));

test("control: -i through a pipe: group, hash, rr, answers only, quit ends", () =>
  withControlled(async ({ port, env }) => {
    const r = await runBalance(["-i", String(port)], {
      env,
      input: "group 1\nhash\nshow\nrr\ngroup 99999\nquit\nshow\n",
    });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    assert.equal(lines[0], "group 1 set to hash");
    assert.match(r.stdout, /^ {2}1 Hash {2}0 ENA/m);
    assert.match(r.stdout, /^group 1 set to round robin$/m);
    assert.match(r.stdout, /^value out of range$/m);
    assert.equal(r.stdout.match(/^GRP/gm)?.length, 1, "nothing runs after quit");
    assert.doesNotMatch(r.stdout, /balance\[/, "no prompts on a pipe");
  }));

test(
  "control: -i on a terminal prompts balance[G] and follows group",
  { skip: !existsSync("/usr/bin/script") && "script (bsdutils) is not installed" },
  () =>
    withControlled(async ({ port, env }) => {
      const command = [...balanceCommand(), "-i", String(port)].map((a) => `'${a}'`).join(" ");
      // `script` gives balance a pseudo-terminal; the input arrives typed.
      const r = await runBalance(["-qfec", command, "/dev/null"], {
        command: ["script"],
        env,
        input: "group 1\nshow\nquit\n",
      });
      const out = r.stdout.replaceAll("\r", "");
      assert.match(out, /balance\[0\] /);
      assert.match(out, /balance\[1\] /);
      assert.match(out, /^ {2}1 RR {4}0 ENA/m);
    }),
);

test("control: changes never cut existing connections", () =>
  withControlled(async ({ ctl, port }) => {
    const c = await connect(port);
    await c.waitFor((d) => d.toString() === "a\n");
    for (const command of ["disable 0", "maxc 0 1", "hash", "rr", "create 127.0.0.9 1", "assign 2 127.0.0.8 2"]) {
      await ctl(command);
    }
    c.socket.write("still here");
    await c.waitFor((d) => d.toString() === "a\nstill here");
    c.socket.destroy();
  }));

test("control: garbage on the control socket is answered 'syntax error' and changes nothing", () =>
  withControlled(async ({ ctl, port, dir }) => {
    const before = await ctl("show --json");
    const socketPath = join(dir, `any-${port}.sock`);
    const garbage = [
      "disable 0\n",
      '{"group":0}\n',
      '{"group":-1,"command":"disable 0"}\n',
      '{"group":"0","command":"disable 0"}\n',
      "[1,2,3]\n",
      "\xff\xfe\x00\x01\n",
      '{"group":0,"command":"disable 0"',
    ];
    let got = "";
    const replies = await within(
      new Promise<string>((resolve) => {
        const s = net.connect(socketPath);
        onTimeout(() => s.destroy());
        s.on("data", (d) => (got += d));
        s.on("connect", () => s.end(garbage.join("")));
        s.on("close", () => resolve(got));
      }),
      10_000,
      () => `the balancer to answer the garbage and close; got ${JSON.stringify(got)}`,
    );
    const answers = replies.trim().split("\n").map((l) => JSON.parse(l).output);
    assert.deepEqual(answers, new Array(6).fill("syntax error"));
    // A line longer than the protocol allows ends the connection.
    await within(
      new Promise<void>((resolve) => {
        const s = net.connect(socketPath);
        onTimeout(() => s.destroy());
        s.on("error", () => {});
        s.on("connect", () => s.write("x".repeat(200_000)));
        s.on("close", () => resolve());
      }),
      10_000,
      "the balancer to close a connection sending a 200,000-byte line",
    );
    assert.equal(await ctl("show --json"), before);
  }));

test("control: the control socket is owner-only, and -c without an instance exits 69", () =>
  withControlled(async ({ port, dir, env }) => {
    const socketPath = join(dir, `any-${port}.sock`);
    assert.equal(statSync(socketPath).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700, "in an owner-only directory");
    const other = await freePort();
    const r = await runBalance(["-c", "show", String(other)], { env });
    assert.equal(r.code, 69);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, new RegExp(`^balance: no balance instance running on port ${other}`));
  }));

const nobody = await prepareNobody();
const nobodySkip = typeof nobody === "string" && nobody;
if (typeof nobody !== "string") process.on("exit", nobody.cleanup);
const asNobody = (args: string[], extraEnv: Record<string, string> = {}) => {
  const { command, env, home } = nobody as Nobody;
  return runBalance(args, { command, env: { ...env, ...extraEnv }, cwd: home });
};

test(
  "control: another user cannot read or change the balancer",
  { skip: nobodySkip },
  () =>
    withControlled(async ({ port, dir }) => {
      // Looking where its own instances would be, nobody finds none.
      const own = await asNobody(["-c", "disable 0", String(port)]);
      assert.equal(own.code, 69, own.stderr);
      // Pointed at the owner's directory, it is refused.
      const pointed = await asNobody(["-c", "disable 0", String(port)], { BALANCE_CONTROL_DIR: dir });
      assert.equal(pointed.code, 77, pointed.stderr);
      assert.match(pointed.stderr, /permission denied/);
    }),
);

/** {@link withRootBesideUnit}: root's balancer runs; how to run the unit's. */
interface BesideUnit {
  /** `/run/balance` and `/run/balance/example`, seen from outside. */
  rootDir: string;
  unitDir: string;
  /** Root's control socket. */
  rootSocket: string;
  /** balance as the unit's user, with the unit's `BALANCE_CONTROL_DIR`: a command and its options. */
  unit: RunOptions & { args: string[]; port: number };
  /** balance as root: a command and its options. */
  root: RunOptions;
}

/**
 * Root's balancer (default directory, `/run/balance`, started with `umask`)
 * beside `balance@example` (the unit's user, `BALANCE_CONTROL_DIR=
 * /run/balance/example`) in a private `/run`; `before` makes `/run` as found.
 * The unit's directory is made as systemd makes it, if `before` did not.
 */
async function withRootBesideUnit(
  before: (rootDir: string, unitDir: string) => void,
  umask: string,
  fn: (it: BesideUnit) => Promise<void>,
): Promise<void> {
  const run = await privateRun();
  if (typeof run === "string") throw new Error(run);
  const backend = await startBackend("a");
  const rootPort = await freePort();
  const unitPort = await freePort();
  let lb: Running | undefined;
  try {
    const rootDir = join(run.dir, "balance");
    const unitDir = join(rootDir, "example");
    before(rootDir, unitDir);
    const root = {
      command: [...run.command, "sh", "-c", `umask ${umask} && exec "$@"`, "sh", ...balanceCommand()],
      env: { BALANCE_CONTROL_DIR: "" },
    };
    lb = await startBalance([String(rootPort), at(backend)], rootPort, root);
    if (!existsSync(unitDir)) {
      mkdirSync(unitDir, { mode: 0o700 });
      chownSync(unitDir, 65534, 65534);
    }
    const { command, env } = nobody as Nobody;
    const unit = {
      args: [String(unitPort), at(backend)],
      port: unitPort,
      command: [...run.command, ...command],
      env: { ...env, BALANCE_CONTROL_DIR: "/run/balance/example" },
    };
    await fn({ rootDir, unitDir, rootSocket: join(rootDir, `any-${rootPort}.sock`), unit, root });
  } finally {
    await lb?.stop();
    await backend.close();
    run.cleanup();
  }
}

// What systemd makes for balance@example: /run/balance, and the unit's own directory.
const asSystemdMakes = (rootMode: number) => (rootDir: string, unitDir: string) => {
  mkdirSync(rootDir, { mode: rootMode });
  chmodSync(rootDir, rootMode);
  mkdirSync(unitDir, { mode: 0o700 });
  chownSync(unitDir, 65534, 65534);
};

// The unit's balancer serves, and root's -c finds it in /run/balance/example.
async function unitServes({ unit, root }: BesideUnit): Promise<void> {
  const lb = await startBalance(unit.args, unit.port, unit);
  try {
    const show = await runBalance(["-c", "show", String(unit.port)], root);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /^ {2}0 RR {4}0 ENA/m);
  } finally {
    assert.equal(await lb.stop(), 0);
  }
}

test(
  "control: root's balancer leaves /run/balance as systemd made it; balance@NAME starts beside it",
  { skip: nobodySkip },
  () =>
    withRootBesideUnit(asSystemdMakes(0o755), "022", async (it) => {
      assert.equal(statSync(it.rootDir).mode & 0o777, 0o755, "/run/balance as it was");
      assert.equal(statSync(it.rootSocket).mode & 0o777, 0o600, "root's socket owner-only by itself");
      await unitServes(it);
      assert.equal(statSync(it.unitDir).mode & 0o777, 0o700, "the unit's directory as it was");
    }),
);

test(
  "control: root's balancer makes a missing /run/balance 0755 whatever its umask; balance@NAME starts after it",
  { skip: nobodySkip },
  () =>
    withRootBesideUnit(() => {}, "077", async (it) => {
      assert.equal(statSync(it.rootDir).mode & 0o777, 0o755);
      assert.equal(statSync(it.rootSocket).mode & 0o777, 0o600);
      await unitServes(it);
    }),
);

test(
  "control: a control directory that cannot be made: exit 71 naming the directory that refused",
  { skip: nobodySkip },
  // /run/balance as an older balance left it: owner-only.
  () =>
    withRootBesideUnit(asSystemdMakes(0o700), "022", async ({ unit }) => {
      const r = await runBalance(["-f", ...unit.args], unit);
      assert.equal(r.code, 71, r.stderr);
      assert.equal(
        r.stderr,
        "balance: cannot create control directory /run/balance/example: permission denied on /run/balance " +
          "(mode 0700, owner uid 0)\n",
      );
    }),
);

const unprivilegedFrom = Number(readFileSync("/proc/sys/net/ipv4/ip_unprivileged_port_start", "utf8"));
test(
  "command line: a privileged port (80) as an unprivileged user: one line, exit 77",
  { skip: nobodySkip || (unprivilegedFrom <= 80 && `port 80 is not privileged here (${unprivilegedFrom})`) },
  async () => {
    const r = await asNobody(["-f", "-b", "127.0.0.1", "80", "127.0.0.1:1"], {
      BALANCE_CONTROL_DIR: join((nobody as Nobody).home, "control"),
    });
    assert.equal(r.code, 77, r.stderr);
    assert.equal(r.stderr, "balance: cannot listen on 127.0.0.1:80: permission denied\n");
  },
);

test("control: a stale socket after kill -9 is detected, not obeyed, and replaced", async () => {
  const { dir, env, cleanup } = controlDir();
  const backend = await startBackend("a");
  const port = await freePort();
  try {
    const first = await startBalance([String(port), at(backend)], port, { env });
    process.kill(first.child.pid!, "SIGKILL");
    await first.stop();
    const socketPath = join(dir, `any-${port}.sock`);
    assert.ok(existsSync(socketPath), "kill -9 leaves the socket file behind");
    const r = await runBalance(["-c", "show", String(port)], { env });
    assert.equal(r.code, 69, "a dead socket is no instance");
    // Then the instances that do run, if any (root sees other users' too).
    const stale = `balance: no balancer answers at ${socketPath} (left by one that was killed)`;
    assert.ok(r.stderr === `${stale}\n` || r.stderr.startsWith(`${stale}; running: `), r.stderr);
    const second = await startBalance([String(port), at(backend)], port, { env });
    let code;
    try {
      const show = await runBalance(["-c", "show", String(port)], { env });
      assert.equal(show.code, 0);
      assert.match(show.stdout, /^ {2}0 RR {4}0 ENA/m);
    } finally {
      code = await second.stop();
    }
    assert.equal(code, 0);
    assert.ok(!existsSync(socketPath), "SIGTERM removes the control socket");
  } finally {
    await backend.close();
    cleanup();
  }
});

test("control: a second balancer on the same port fails with 71 in one line and leaves the first in control", () =>
  withControlled(async ({ port, env, ctl, backends }) => {
    const r = await runBalance(["-f", String(port), at(backends[0])], { env });
    assert.equal(r.code, 71, r.stderr);
    assert.equal(r.stderr.split("\n").length, 2, `one line: ${r.stderr}`);
    assert.match(r.stderr, /address already in use|another balance already runs/);
    assert.match(await ctl("show"), /^GRP/);
  }));

test("background: starts detached, returns 0 once serving; -c works; kill stops it and cleans up", async () => {
  const { dir, env, cleanup } = controlDir();
  const backend = await startBackend("bg");
  const port = await freePort();
  const logFile = join(dir, "balance.log");
  // Whatever fails, the detached balancer does not outlive the test.
  const killDaemon = () => pidsListeningOn(port).forEach((pid) => process.kill(pid, "SIGKILL"));
  onTimeout(killDaemon);
  try {
    const started = await runBalance(["-d", "--log-file", logFile, String(port), at(backend)], { env });
    assert.equal(started.code, 0, started.stderr);
    assert.equal(started.stdout + started.stderr, "", "silent on success");
    assert.equal(await whoAnswers(port), "bg", "serving as soon as the command returned");
    const show = await runBalance(["-c", "show", String(port)], { env });
    assert.match(show.stdout, /^ {2}0 RR {4}0 ENA 127\.0\.0\.1 .* 1 /m);
    const kill = await runBalance(["-c", "kill", String(port)], { env });
    assert.equal(kill.stdout, "shutdown complete, exiting.\n");
    await until(() => pidsListeningOn(port), (pids) => pids.length === 0, "the background balancer to exit");
    assert.ok(!existsSync(join(dir, `any-${port}.sock`)), "control socket removed");
    await assert.rejects(whoAnswers(port), /ECONNREFUSED/);
    const log = readFileSync(logFile, "utf8");
    assert.match(log, /listening on 0\.0\.0\.0 port \d+/);
    assert.match(log, /kill: exiting/);
  } finally {
    killDaemon();
    await backend.close();
    cleanup();
  }
});

test("background: a bind error reaches the terminal with a non-zero exit", async () => {
  const { env, cleanup } = controlDir();
  const blocker = net.createServer();
  const port = await freePort();
  await new Promise<void>((r) => blocker.listen(port, "0.0.0.0", r));
  try {
    // Without a syslog too: the line that the log is discarded is for a balancer that runs.
    const r = await runBalance([String(port), "127.0.0.1:1"], {
      env: { ...env, BALANCE_SYSLOG_SOCKET: "/nonexistent/balance-test.sock" },
    });
    assert.equal(r.code, 71);
    assert.equal(r.stderr, `balance: cannot listen on 0.0.0.0:${port}: address already in use\n`);
  } finally {
    blocker.close();
    cleanup();
  }
});
