/**
 * Configuration files, reload, dump, --check-config and the systemd unit
 * (issue 13) on real sockets and processes: a reload loses no connection
 * and refuses no client; a bad configuration changes nothing.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { type Backend, type Client, connect, freePort, startBackend, whoAnswers } from "../support/net.ts";
import { balanceCommand, runBalance, type Running, startBalance, withBalancer } from "../support/balance.ts";
import { until, within } from "../support/wait.ts";
import { control, sleep, status, type StatusRow, withTempDir } from "../support/helpers.ts";

const at = (b: Backend) => `${b.host}:${b.port}`;
const ROOT = new URL("../../", import.meta.url).pathname;

/** A private directory for a test's files, removed after `body`. */
const inDir = <T>(body: (dir: string) => Promise<T>): Promise<T> => withTempDir("balance-config-", body);

/** Backends named `names`, a balancer started with `-F FILE` (FILE = `text(backends)`), and cleanup. */
function withConfigured(
  names: string[],
  text: (port: number, b: Backend[]) => string,
  body: (lb: Running, file: string, port: number, b: Backend[]) => Promise<void>,
): Promise<void> {
  return inDir((dir) => {
    const file = join(dir, "web.conf");
    const args = ({ port, backends }: { port: number; backends: Backend[] }) => {
      writeFileSync(file, text(port, backends));
      return ["-F", file];
    };
    return withBalancer({ backends: names, args }, ({ lb, port, backends }) => body(lb, file, port, backends));
  });
}

/** Sends `text` on an open client and waits for its echo after everything received so far. */
async function echoed(client: Client, text: string): Promise<void> {
  const before = client.received().length;
  client.socket.write(text);
  await client.waitFor((d) => d.subarray(before).includes(text), 10_000);
}

/** The fields of `show --json` a configuration decides (no counters). */
const configured = (rows: StatusRow[]) =>
  rows.map(({ c: _c, totalc: _t, sent: _s, rcvd: _r, checkFailures: _f, lastCheck: _l, ...rest }) => rest);

test("config: -F FILE stands for the file's words; comments and lines do not matter", () =>
  withConfigured(
    ["a", "b"],
    (port, [a, b]) => `# web\n-t 3   # connect timeout\n${port}\n${at(a)}\n\n${at(b)}  # second\n`,
    async (_lb, _file, port) => {
      const seen = [];
      for (let i = 0; i < 4; i++) seen.push(await whoAnswers(port));
      assert.deepEqual(seen, ["a", "b", "a", "b"]);
      assert.equal((await status(port)).length, 2);
    },
  ));

test("config: an unreadable file exits 66, a file naming another or an open quote 64, each with one line", () =>
  inDir(async (dir) => {
    const missing = await runBalance(["-f", "-F", join(dir, "nope.conf")]);
    assert.equal(missing.code, 66);
    assert.equal(missing.stderr, `balance: cannot read configuration file '${join(dir, "nope.conf")}': no such file\n`);
    const outer = join(dir, "outer.conf");
    writeFileSync(outer, `-t 3\n-F ${join(dir, "inner.conf")}\n`);
    const nested = await runBalance(["-f", "-F", outer]);
    assert.equal(nested.code, 64);
    assert.equal(nested.stderr.split("\n")[0], `balance: ${outer}:2: a configuration file may not name another (-F)`);
    const quote = join(dir, "quote.conf");
    writeFileSync(quote, `80\n--check-exec "/bin/true\n127.0.0.1:81\n`);
    const open = await runBalance(["-f", "-F", quote]);
    assert.equal(open.code, 64);
    assert.equal(open.stderr.split("\n")[0], `balance: ${quote}:2: a quote is not closed`);
  }));

test("config: a mistake in a file names FILE:LINE, at a start with -F and with --check-config; the command line's does not", () =>
  inDir(async (dir) => {
    const file = join(dir, "web.conf");
    const port = await freePort();
    for (
      const [text, line] of [
        [`# web\n-t 3\n--bogus\n${port} 127.0.0.1:1\n`, "3: unknown option '--bogus'"],
        [`-t\n0\n${port} 127.0.0.1:1\n`, "1: invalid connect timeout (-t) '0': must be 1-2000000 seconds"],
        [
          `${port}\n127.0.0.1:1\n!\n\n127.0.0.1:80:x\n`,
          "5: invalid maxc in channel '127.0.0.1:80:x' 'x': must be 0-2147483647",
        ],
        [`${port} 127.0.0.1:1\n! !\n`, "2: group separator '!' with no channel before it"],
        [`--rise 3\n${port} 127.0.0.1:1\n`, "1: option --rise needs --check"],
      ] as const
    ) {
      writeFileSync(file, text);
      for (const args of [["--check-config", "-F", file], ["-f", "-F", file]]) {
        const r = await runBalance(args);
        assert.deepEqual(
          [r.code, r.stderr],
          [64, `balance: ${file}:${line}\nTry 'balance --help'.\n`],
          `${args.join(" ")}: ${text}`,
        );
      }
    }
    writeFileSync(file, `${port} 127.0.0.1:1\n`);
    const cli = await runBalance(["--check-config", "--bogus", "-F", file]);
    assert.equal(
      cli.stderr,
      "balance: unknown option '--bogus'\nTry 'balance --help'.\n",
      "a word of the command line",
    );
  }));

test("config: --check-config prints nothing and exits 0, or the error with start's exit code; it never listens", () =>
  inDir(async (dir) => {
    const port = await freePort();
    const file = join(dir, "web.conf");
    writeFileSync(file, `-t 3\n${port}\nlocalhost:8080:256:3 127.0.0.1:8081\n!\n127.0.0.1:8082:0:1:dis\n`);
    const good = await runBalance(["--check-config", "-F", file]);
    assert.deepEqual([good.code, good.stdout, good.stderr], [0, "", ""]);
    writeFileSync(file, `${port}\nno-such-host.invalid:80\n`);
    const host = await runBalance(["--check-config", "-F", file]);
    assert.deepEqual([host.code, host.stderr], [68, "balance: cannot resolve channel host 'no-such-host.invalid'\n"]);
    writeFileSync(file, `${port}\n127.0.0.1:80:x\n`);
    const bad = await runBalance(["--check-config", "-F", file]);
    assert.equal(bad.code, 64);
    assert.match(bad.stderr, new RegExp(`^balance: ${file}:2: .*127\\.0\\.0\\.1:80:x`));
    const example = await runBalance(["--check-config", "-F", join(ROOT, "packaging/systemd/example.conf")]);
    assert.deepEqual([example.code, example.stderr], [0, ""], "the example shipped in the .deb");
  }));

test(
  "reload: 200 connections exchanging through a reload that removes one channel and adds one all keep going",
  {
    timeoutMs: 90_000,
  },
  () =>
    withConfigured(
      ["a", "b", "c"],
      (port, [a, b]) => `${port}\n${at(a)} ${at(b)}\n`,
      async (lb, file, port, [a, b, c]) => {
        const clients: Client[] = [];
        try {
          for (let i = 0; i < 200; i++) clients.push(await connect(port));
          await Promise.all(clients.map((cl) => cl.waitFor((d) => d.includes("\n"))));
          const names = clients.map((cl) => cl.received().toString().split("\n")[0]);
          assert.deepEqual([names.filter((n) => n === "a").length, names.filter((n) => n === "b").length], [100, 100]);
          await Promise.all(clients.map((cl, i) => echoed(cl, `before ${i};`)));
          const totalA = (await status(port))[0].totalc;
          writeFileSync(file, `${port}\n${at(a)}\n${at(c)}\n`);
          assert.equal(await control(port, "reload"), "reloaded\n");
          await lb.waitForTrace(
            /reloaded .*web\.conf: 1 channel\(s\) kept, 1 added, 1 removed \(1 with connections open/,
          );
          await Promise.all(clients.map((cl, i) => echoed(cl, `after ${i};`)));
          assert.equal(b.sockets.size, 100, "every connection to the removed channel is still open");
          const fresh = [];
          for (let i = 0; i < 6; i++) fresh.push(await whoAnswers(port));
          assert.deepEqual(
            fresh.sort(),
            ["a", "a", "a", "c", "c", "c"],
            "new connections: the kept and the new channel only",
          );
          const rows = await status(port);
          assert.deepEqual(rows.map((r) => r.port), [a.port, c.port]);
          assert.equal(rows[0].totalc, totalA + 3, "the kept channel's totalc goes on counting");
          assert.equal(rows[0].c, 100);
        } finally {
          clients.forEach((cl) => cl.socket.destroy());
        }
      },
    ),
);

test("reload: a client connecting in a tight loop across 20 reloads (control and SIGHUP) is never refused or reset", {
  timeoutMs: 90_000,
}, () =>
  withConfigured(["a", "b"], (port, [a]) => `${port}\n${at(a)}\n`, async (lb, file, port, [a, b]) => {
    let stop = false;
    let served = 0;
    const failures: string[] = [];
    const loop = (async () => {
      const deadline = Date.now() + 60_000;
      while (!stop && Date.now() < deadline && served < 20_000) {
        try {
          await whoAnswers(port);
          served++;
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    })();
    try {
      for (let i = 0; i < 20; i++) {
        writeFileSync(file, i % 2 ? `${port}\n${at(a)}\n` : `${port}\n${at(a)} ${at(b)}\n`);
        if (i % 4 === 3) {
          const before = lb.stderr().split("reloaded ").length;
          process.kill(lb.child.pid!, "SIGHUP");
          await until(() => lb.stderr().split("reloaded ").length, (n) => n > before, "the SIGHUP reload");
        } else {
          assert.equal(await control(port, "reload"), "reloaded\n");
        }
        await sleep(50);
      }
    } finally {
      stop = true;
      await within(loop, 30_000, "the client loop to end");
    }
    console.log(`reload: ${served} connections across 20 reloads, ${failures.length} failed`);
    assert.deepEqual(failures, [], "no connection refused or reset");
    assert.ok(served > 20, `the loop ran (${served})`);
  }));

test("reload: a bad file, an unknown host or a changed listen port (or -w, --accept-proxy, --proxy-protocol) leave the running configuration; -c exits 65", () =>
  withConfigured(["a", "b"], (port, [a]) => `${port}\n${at(a)}\n`, async (lb, file, port, [a, b]) => {
    const other = await freePort();
    for (
      const [text, why] of [
        [`${port}\n${at(a)}:x\n`, /reload failed: .*web\.conf:2: .*:x/],
        [`${port}\n--bogus ${at(b)}\n`, /reload failed: .*web\.conf:2: unknown option '--bogus'/],
        [
          `${port}\nno-such-host.invalid:${b.port}\n`,
          /reload failed: cannot resolve channel host 'no-such-host\.invalid'/,
        ],
        [`${other}\n${at(b)}\n`, /reload failed: the listen port cannot change without a restart/],
        [`-w 3 ${port}\n${at(b)}\n`, /reload failed: -w cannot change without a restart/],
        [`--accept-proxy ${port}\n${at(b)}\n`, /reload failed: --accept-proxy cannot change without a restart/],
        [`--proxy-protocol v1 ${port}\n${at(b)}\n`, /reload failed: --proxy-protocol cannot change without a restart/],
      ] as const
    ) {
      writeFileSync(file, text);
      const r = await runBalance(["-c", "reload", String(port)]);
      assert.equal(r.code, 65, r.stdout + r.stderr);
      assert.match(r.stdout, why);
      await lb.waitForTrace(
        new RegExp(`WRN: ${why.source}`.replace("reload failed: ", "reload failed, the running configuration stays: ")),
      );
      assert.equal(await whoAnswers(port), "a", "the old configuration serves on");
    }
    // SIGHUP says the same in the log.
    writeFileSync(file, `${port}\n\n-w\n`);
    process.kill(lb.child.pid!, "SIGHUP");
    await lb.waitForTrace(`WRN: reload failed, the running configuration stays: ${file}:3: option -w needs a value`);
    assert.deepEqual((await status(port)).map((r) => r.port), [a.port]);
  }));

test("dump: the running configuration as a file; -F of it starts the same balancer (show --json equal but counters)", () =>
  inDir(async (dir) => {
    const backends = await Promise.all(["a", "b", "c", "d"].map((n) => startBackend(n)));
    const [a, b, c, d] = backends;
    const port = await freePort();
    let lb: Running | undefined;
    try {
      lb = await startBalance(
        [
          "-t",
          "3",
          "--proxy-protocol",
          "v2",
          "--accept-proxy",
          String(port),
          `${at(a)}:10:3`,
          at(b),
          "!",
          at(c),
          "!",
          at(d),
          "%",
        ],
        port,
      );
      await control(port, "disable 1");
      await control(port, "weight 0 2");
      const shell = await runBalance(["-i", String(port)], { input: "group 1\nleastconn\nquit\n" });
      assert.match(shell.stdout, /group 1 set to least connection/);
      const answer = await runBalance(["-c", "dump", String(port)]);
      assert.equal(answer.code, 0, answer.stderr);
      assert.match(answer.stdout, /(^| )-t 3 --proxy-protocol v2 --accept-proxy$/m);
      const before = configured(await status(port));
      assert.deepEqual([before[0].proxyProtocol, before[0].acceptProxy], ["v2", true]);
      await lb.stop();
      lb = undefined;
      writeFileSync(join(dir, "dumped.conf"), answer.stdout);
      lb = await startBalance(["-F", join(dir, "dumped.conf")], port);
      assert.deepEqual(configured(await status(port)), before);
      assert.equal(
        (await runBalance(["-c", "dump", String(port)])).stdout,
        answer.stdout,
        "a dump of the dump is the same",
      );
    } finally {
      await lb?.stop();
      await Promise.all(backends.map((x) => x.close()));
    }
  }));

for (const workers of ["1", "2"]) {
  test(`dump (-w ${workers}): a channel configured by name is dumped by name, show gives its address`, () =>
    inDir(async (dir) => {
      const backends = await Promise.all(["a", "b", "c"].map((n) => startBackend(n)));
      const [a, b, c] = backends;
      const port = await freePort();
      let lb: Running | undefined;
      try {
        lb = await startBalance(["-w", workers, String(port), `localhost:${a.port}`, `localhost:${b.port}`], port);
        await control(port, "disable 1");
        await control(port, `assign 1 127.0.0.1 ${c.port}`);
        const shown: { address: string }[] = JSON.parse(await control(port, "show --json"));
        assert.deepEqual(shown.map((r) => r.address), ["127.0.0.1", "127.0.0.1"], "show gives the addresses");
        const dump = await runBalance(["-c", "dump", String(port)]);
        assert.equal(dump.code, 0, dump.stderr);
        const lines = dump.stdout.split("\n");
        assert.deepEqual(
          lines.slice(lines.indexOf(String(port)) + 1),
          [`localhost:${a.port}:0:1`, `127.0.0.1:${c.port}:0:1:dis`, "!", ""],
          "the name as configured; the address assign gave",
        );
        await lb.stop();
        lb = undefined;
        writeFileSync(join(dir, "dumped.conf"), dump.stdout);
        lb = await startBalance(["-w", workers, "-F", join(dir, "dumped.conf")], port);
        assert.equal(await whoAnswers(port), "a");
        assert.equal((await runBalance(["-c", "dump", String(port)])).stdout, dump.stdout, "still by name");
      } finally {
        await lb?.stop();
        await Promise.all(backends.map((x) => x.close()));
      }
    }));
}

test("systemd: systemd-analyze verify passes on the unit", {
  skip: spawnSync("systemd-analyze", ["--version"]).status === 0 ? undefined : "systemd-analyze is not installed",
}, () =>
  inDir((dir) => {
    // verify wants the program it would run; the unit names /usr/bin/balance.
    const [program] = balanceCommand();
    const unit = readFileSync(join(ROOT, "packaging/systemd/balance@.service"), "utf8")
      .replaceAll("/usr/bin/balance", process.env.BALANCE_BIN ?? program);
    const path = join(dir, "balance@example.service");
    writeFileSync(path, unit);
    const r = spawnSync("systemd-analyze", ["verify", "--man=no", path], { encoding: "utf8" });
    assert.deepEqual([r.status, r.stderr], [0, ""]);
    assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
    return Promise.resolve();
  }));
