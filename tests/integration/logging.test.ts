import { onTimeout, test } from "../support/test.ts";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { balanceCommand, balanceEnv, runBalance, startBalance } from "../support/balance.ts";
import { connect, freePort, startBackend } from "../support/net.ts";
import { until, within } from "../support/wait.ts";
import { discardedLog, logTargets } from "../../src/app/observe/log.ts";
import { sleep } from "../support/helpers.ts";

const RSYSLOGD = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"].find((p) => existsSync(p));

/** `balance -f ARGS` without `-d`: what a production foreground balancer logs. */
async function foreground(args: string[], env: Record<string, string> = {}) {
  const [cmd, ...pre] = balanceCommand();
  const child: ChildProcess = spawn(cmd, [...pre, "-f", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: balanceEnv(env),
  });
  onTimeout(() => child.kill("SIGKILL"));
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  const lines = (re: RegExp) => stderr.split("\n").filter((l) => re.test(l));
  const stop = async () => {
    if (child.exitCode === null) process.kill(child.pid!, "SIGTERM");
    return await within(exited, 15_000, "balance to exit after SIGTERM").finally(() => {
      if (child.exitCode === null) child.kill("SIGKILL");
    });
  };
  await until(() => stderr, (s) => /listening on/.test(s) || child.exitCode !== null, "balance to listen", {
    ms: 30_000,
  });
  return { child, stderr: () => stderr, lines, stop, exited };
}

/** Connects and waits for balance to close the client (no channel left). */
async function failedClient(port: number): Promise<void> {
  const c = await connect(port);
  try {
    await c.ended();
  } finally {
    c.socket.destroy();
  }
}

test("logging: targets: background syslog, systemd and -f stderr, --log-file and --syslog when asked", () => {
  const bg = { foreground: false };
  assert.deepEqual(logTargets(bg, {}, "linux"), [{ kind: "syslog", socket: "/dev/log" }]);
  assert.deepEqual(logTargets(bg, {}, "darwin"), [{ kind: "syslog", socket: "/var/run/syslog" }]);
  assert.deepEqual(logTargets(bg, { BALANCE_SYSLOG_SOCKET: "/t/s" }, "linux"), [{ kind: "syslog", socket: "/t/s" }]);
  assert.deepEqual(logTargets(bg, { INVOCATION_ID: "x" }, "linux"), [{ kind: "stderr" }]);
  assert.deepEqual(logTargets(bg, { JOURNAL_STREAM: "8:9" }, "linux"), [{ kind: "stderr" }]);
  assert.deepEqual(logTargets({ foreground: true }, {}, "linux"), [{ kind: "stderr" }]);
  assert.deepEqual(logTargets({ foreground: true, logFile: "f" }, {}, "linux"), [{ kind: "stderr" }, {
    kind: "file",
    path: "f",
  }]);
  assert.deepEqual(logTargets({ ...bg, syslog: { host: "h", port: 514 } }, {}, "linux"), [{
    kind: "remote",
    host: "h",
    port: 514,
  }]);
});

test(
  "logging: background lines reach a real rsyslog, facility daemon, tag balance[pid], incl. warnings, kill and SIGTERM",
  { skip: RSYSLOGD ? false : "rsyslogd is not installed (scripts/test-deps installs rsyslog)" },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), "balance-rsyslog-"));
    const out = join(dir, "out.log");
    const socket = join(dir, "log.sock");
    writeFileSync(
      join(dir, "rsyslog.conf"),
      [
        `global(workDirectory="${dir}")`,
        `module(load="imuxsock" SysSock.Use="off")`,
        `input(type="imuxsock" Socket="${socket}")`,
        `template(name="t" type="string" string="%syslogfacility-text% %syslogseverity-text% %syslogtag%%msg%\\n")`,
        `*.* action(type="omfile" file="${out}" template="t")`,
      ].join("\n") + "\n",
    );
    const rsyslog = spawn(RSYSLOGD!, ["-n", "-f", join(dir, "rsyslog.conf"), "-i", join(dir, "rsyslog.pid")], {
      stdio: "ignore",
    });
    onTimeout(() => rsyslog.kill("SIGKILL"));
    const daemons: number[] = [];
    const env = { BALANCE_SYSLOG_SOCKET: socket };
    const logged = () => (existsSync(out) ? readFileSync(out, "utf8") : "");
    try {
      await until(() => existsSync(socket), Boolean, "rsyslogd to make its socket");
      const dead = await freePort(); // nothing listens there: connects are refused at once;
      const start = async () => {
        const port = await freePort();
        const started = await runBalance([String(port), `127.0.0.1:${dead}`], { env });
        assert.equal(started.code, 0, started.stderr);
        assert.equal(started.stderr, "", "a reachable syslog: nothing on the terminal");
        const startLine = new RegExp(
          `daemon info balance\\[(\\d+)\\]: balance \\S+ started: listening on 0\\.0\\.0\\.0 port ${port} `,
        );
        const text = await until(logged, (s) => startLine.test(s), "the start line in rsyslog's file");
        const pid = Number(startLine.exec(text)![1]);
        daemons.push(pid);
        return { port, pid };
      };
      const a = await start();
      await failedClient(a.port);
      await until(
        logged,
        (s) => s.includes(`daemon warning balance[${a.pid}]: connect to group 0 channel 0 (127.0.0.1:${dead}) failed:`),
        "the connect failure (no -d)",
      );
      await until(
        logged,
        (s) => s.includes(`daemon warning balance[${a.pid}]: no channel available for 127.0.0.1: client closed`),
        "the closed client",
      );
      const killed = await runBalance(["-c", "kill", String(a.port)]);
      assert.equal(killed.code, 0, killed.stderr);
      await until(logged, (s) => s.includes(`daemon info balance[${a.pid}]: kill: exiting`), "the kill line");

      const b = await start();
      process.kill(b.pid, "SIGTERM");
      await until(
        logged,
        (s) => s.includes(`daemon info balance[${b.pid}]: SIGTERM: stopped accepting; 0 open connection(s)`),
        "the SIGTERM line",
      );
      await until(
        logged,
        (s) => s.includes(`daemon info balance[${b.pid}]: exiting, 0 connection(s) closed`),
        "the exit line",
      );
    } finally {
      for (const pid of daemons) {
        try {
          process.kill(pid, "SIGKILL");
        } catch { /* exited, as it should have */ }
      }
      rsyslog.kill("SIGTERM");
      await within(new Promise((r) => rsyslog.once("exit", r)), 5000, "rsyslogd to exit").catch(() =>
        rsyslog.kill("SIGKILL")
      );
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

const DISCARDED = "the background balancer's log is discarded; use --log-file FILE or --syslog HOST[:PORT]";

test("logging: no local syslog: a background start says in one line that its log is discarded, exit 0", async () => {
  // A socket file nobody reads: the control socket a killed balancer left.
  const stalePort = await freePort();
  const stale = await startBalance([String(stalePort), "127.0.0.1:9"], stalePort, { debug: false });
  process.kill(stale.child.pid!, "SIGKILL");
  await stale.exited;
  const leftover = join(stale.controlDir, `any-${stale.port}.sock`);
  assert.ok(existsSync(leftover), leftover);
  for (const socket of ["/nonexistent/balance-test.sock", leftover]) {
    const port = await freePort();
    const started = await runBalance([String(port), "127.0.0.1:9"], { env: { BALANCE_SYSLOG_SOCKET: socket } });
    try {
      assert.equal(started.code, 0, started.stderr);
      assert.equal(started.stderr, `balance: no syslog at ${socket}: ${DISCARDED}\n`);
    } finally {
      assert.equal((await runBalance(["-c", "kill", String(port)])).code, 0);
    }
  }
  assert.deepEqual(logTargets({ foreground: false }, {}, "win32"), []);
  assert.equal(discardedLog([], () => assert.fail("no socket to open")), `Windows has no syslog: ${DISCARDED}`);
});

test("logging: no local syslog: the detached balancer writes nothing to its stderr, from start to exit", async () => {
  const port = await freePort();
  // The detached copy as a background start runs it, but with its stderr kept, to see what it writes there.
  const [cmd, ...pre] = balanceCommand();
  const child = spawn(cmd, [...pre, String(port), "127.0.0.1:9"], {
    stdio: ["ignore", "ignore", "pipe"],
    env: balanceEnv({ BALANCE_DETACHED: "1", BALANCE_SYSLOG_SOCKET: "/nonexistent/balance-test.sock" }),
  });
  onTimeout(() => child.kill("SIGKILL"));
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  try {
    await until(() => runBalance(["-c", "show", String(port)]), (r) => r.code === 0, "the balancer to answer", {
      ms: 30_000,
    });
    await failedClient(port); // a warning, and with -a it would disable: lines the log would get
    assert.equal((await runBalance(["-c", "kill", String(port)])).code, 0);
    assert.equal(await within(exited, 15_000, "balance to exit after kill"), 0);
    assert.equal(stderr, "");
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
  }
});

test("logging: --log-file that cannot be opened exits 73 with one line, in the background and with -f", async () => {
  const port = await freePort();
  for (const args of [[], ["-f"]]) {
    const r = await runBalance([...args, "--log-file", "/nonexistent/x.log", String(port), "127.0.0.1:9"]);
    assert.equal(r.code, 73, `${args.join(" ")}: ${r.stderr}`);
    assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /^balance: cannot open log file '\/nonexistent\/x\.log': /);
  }
});

test("logging: -f --log-file writes the file as well as stderr", async () => {
  const dir = mkdtempSync(join(tmpdir(), "balance-logfile-"));
  const file = join(dir, "balance.log");
  try {
    const port = await freePort();
    const lb = await foreground(["--log-file", file, String(port), "127.0.0.1:9"]);
    assert.equal(await lb.stop(), 0);
    for (const text of [lb.stderr(), readFileSync(file, "utf8")]) {
      assert.match(text, /balance INF: balance \S+ started: listening on/);
      assert.match(text, /balance INF: exiting, 0 connection\(s\) closed/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("logging: -a disabling a channel is logged without -d, once", async () => {
  const good = await startBackend("g");
  const dead = await freePort(); // nothing listens there: connects are refused at once;
  const port = await freePort();
  const lb = await foreground(["-a", String(port), `127.0.0.1:${dead}`, `127.0.0.1:${good.port}`]);
  try {
    for (let i = 0; i < 3; i++) (await connect(port)).socket.destroy();
    await until(
      lb.stderr,
      (s) => /WRN: group 0 channel 0 \(127\.0\.0\.1:\d+\) disabled \(-a\)/.test(s),
      "the -a line",
    );
    assert.equal(lb.lines(/disabled \(-a\)/).length, 1, lb.stderr());
    assert.doesNotMatch(lb.stderr(), / DBG: /);
  } finally {
    await lb.stop();
    await good.close();
  }
});

for (const workers of [1, 2]) {
  test(
    `logging: connect failures and closed clients throttled to one line per 10 s with a count (-w ${workers})`,
    { skip: workers > 1 && process.platform !== "linux" ? "-w needs Linux" : false, timeoutMs: 60_000 },
    async () => {
      const dead = await freePort(); // nothing listens there: connects are refused at once;
      const port = await freePort();
      const lb = await foreground(["-w", String(workers), String(port), `127.0.0.1:${dead}`]);
      try {
        const began = Date.now();
        for (let i = 0; i < 20; i++) await failedClient(port);
        const burst = Date.now() - began;
        await until(lb.stderr, (s) => /no channel available/.test(s), "the no-channel warning");
        assert.ok(burst < 9000, `20 refused connects took ${burst} ms: too slow to test the 10 s throttle`);
        assert.equal(lb.lines(/WRN: .*connect to group 0 channel 0 .* failed/).length, 1, lb.stderr());
        assert.equal(lb.lines(/WRN: .*no channel available/).length, 1, lb.stderr());
        // Past the interval, the next failure is reported with what was held back.
        await sleep(Math.max(0, 10_500 - (Date.now() - began)));
        await failedClient(port);
        await until(
          lb.stderr,
          (s) => /connect to group 0 channel 0 .* failed: .*\(19 more since the last report\)/.test(s),
          "the connect failure with its count",
        );
        await until(
          lb.stderr,
          (s) => /no channel available.*\(19 more since the last report\)/.test(s),
          "the closed client with its count",
        );
        assert.equal(lb.lines(/connect to group 0 channel 0 .* failed/).length, 2, lb.stderr());
        assert.doesNotMatch(lb.stderr(), / DBG: /);
      } finally {
        await lb.stop();
      }
    },
  );
}
