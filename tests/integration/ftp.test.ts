/**
 * `--ftp` with stock vsftpd and real clients (curl, lftp) on loopback:
 * clients on 127.0.0.1, servers on 127.0.0.2 and 127.0.0.3, balance's
 * channel side on 127.0.0.4 (`-B`). vsftpd accepts a data connection only
 * from its control connection's peer and `PORT` naming only that peer, so
 * every transfer here works only through balance's data listeners. The same
 * with the servers out of the client's reach: tests/services/ftp.test.ts.
 *
 * @module
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as net from "node:net";
import { startBalance } from "../support/balance.ts";
import { freePort } from "../support/net.ts";
import { control, status, withTempDir } from "../support/helpers.ts";
import { run } from "../support/tls.ts";
import { findProgram } from "../support/netns.ts";
import { lftpTransfers, startVsftpd, type Vsftpd, vsftpdUnavailable } from "../support/vsftpd.ts";
import { until } from "../support/wait.ts";

const skip = vsftpdUnavailable();
const CURL = findProgram("curl")!;
const LFTP = findProgram("lftp")!;
const SOURCE = "127.0.0.4";

const sha = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

/** How curl makes each kind of data connection. */
const MODES: Record<string, string[]> = {
  PASV: ["--disable-epsv"],
  EPSV: [],
  PORT: ["-P", "127.0.0.1", "--disable-eprt"],
  EPRT: ["-P", "127.0.0.1"],
};

async function withFtp(
  fn: (ftp: { port: number; servers: Vsftpd[]; lb: Awaited<ReturnType<typeof startBalance>> }) => Promise<void>,
  { servers = 1, args = [] as string[], size = 256 * 1024 } = {},
): Promise<void> {
  const started: Vsftpd[] = [];
  try {
    for (let i = 0; i < servers; i++) {
      started.push(await startVsftpd(String.fromCharCode(97 + i), `127.0.0.${2 + i}`, { size }));
    }
    const port = await freePort();
    const lb = await startBalance(
      [
        "--ftp",
        "-B",
        SOURCE,
        "--log-connections",
        ...args,
        String(port),
        ...started.map((s) => `${s.address}:${s.port}`),
      ],
      port,
    );
    try {
      await fn({ port, servers: started, lb });
    } finally {
      await lb.stop();
    }
  } finally {
    for (const s of started) await s.stop();
  }
}

function curl(args: string[]) {
  return run(CURL, ["-sS", "-v", "--max-time", "20", ...args], { timeoutMs: 30_000 });
}

test("ftp: curl downloads and uploads in passive (PASV, EPSV) and active (PORT, EPRT) mode, by checksum", {
  skip,
  timeoutMs: 90_000,
}, async () => {
  await withFtp(async ({ port, servers: [a], lb }) => {
    await withTempDir("ftp-curl", async (dir) => {
      for (const [mode, flags] of Object.entries(MODES)) {
        const got = join(dir, `${mode}.bin`);
        const r = await curl([...flags, `ftp://127.0.0.1:${port}/pub/data.bin`, "-o", got]);
        assert.equal(r.code, 0, `${mode} download: ${r.stderr}`);
        assert.equal(sha(readFileSync(got)), sha(a.files["data.bin"]), `${mode} download`);
        if (mode === "PASV") {
          assert.match(r.stderr, /< 227 Entering Passive Mode \(127,0,0,1,\d+,\d+\)/, "balance's address");
        }
        if (mode === "EPSV") assert.match(r.stderr, /< 229 Entering Extended Passive Mode \(\|\|\|\d+\|\)/);
        const up = await curl([...flags, "-T", got, `ftp://127.0.0.1:${port}/upload/${mode}.bin`]);
        assert.equal(up.code, 0, `${mode} upload: ${up.stderr}`);
        assert.equal(
          sha(readFileSync(join(a.root, "upload", `${mode}.bin`))),
          sha(a.files["data.bin"]),
          `${mode} upload`,
        );
      }
    });
    // Active mode: the channel was told balance's channel side, and connected there.
    await lb.waitForTrace(
      new RegExp(`FTP data listener ${SOURCE.replaceAll(".", "\\.")}:\\d+ for 127\\.0\\.0\\.2, on to 127\\.0\\.0\\.1:`),
    );
    const [row] = await status(port);
    assert.equal(row.totalc, 8, "c/totalc count the 8 control connections only");
    const size = a.files["data.bin"].length;
    assert.ok(row.rcvd >= 4 * size && row.sent >= 4 * size, `data bytes count on the channel: ${row.sent}/${row.rcvd}`);
    await until(
      () => lb.stderr().match(/connection 127\.0\.0\.1:\d+ -> .* rcvd/g)?.length ?? 0,
      (n) => n >= 8,
      "8 log lines",
    );
    const downloads = lb.stderr().match(/connection 127\.0\.0\.1:\d+ -> [^\n]*, (\d+) rcvd/g)!;
    assert.ok(downloads.some((l) => Number(/(\d+) rcvd/.exec(l)![1]) > size), "the connection log counts data bytes");
  });
});

test("ftp: lftp, passive and active, 20 transfers on one control connection, downloads alternate between servers", {
  skip,
  timeoutMs: 90_000,
}, async () => {
  await withFtp(async ({ port, servers }) => {
    await withTempDir("ftp-lftp", async (dir) => {
      for (const passive of ["on", "off"]) {
        const script = lftpTransfers(passive, dir, passive, join(dir, `${passive}-0.bin`));
        const r = await run(LFTP, ["-p", String(port), "-e", script, "127.0.0.1"], { timeoutMs: 60_000 });
        assert.equal(r.code, 0, `lftp passive ${passive}: ${r.stderr}`);
        // lftp keeps one control connection for the whole script: on one server.
        const server = servers.find((s) => {
          try {
            return sha(readFileSync(join(s.root, "upload", `${passive}-9.bin`))).length > 0;
          } catch {
            return false;
          }
        })!;
        for (let i = 0; i < 10; i++) {
          assert.equal(sha(readFileSync(join(dir, `${passive}-${i}.bin`))), sha(server.files["data.bin"]), `get ${i}`);
          assert.equal(
            sha(readFileSync(join(server.root, "upload", `${passive}-${i}.bin`))),
            sha(server.files["data.bin"]),
            `put ${i}`,
          );
        }
      }
      const rows = await status(port);
      assert.deepEqual(rows.map((r) => r.totalc), [1, 1], "one control connection each, 20 transfers on it");
      // Round robin: curl's next downloads alternate.
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await curl([`ftp://127.0.0.1:${port}/pub/id.txt`]);
        assert.equal(r.code, 0, r.stderr);
        ids.push(r.stdout.trim());
      }
      assert.deepEqual(ids, ["a", "b", "a", "b"]);
    });
  }, { servers: 2 });
});

/** A raw control connection: send lines, read replies. */
async function rawControl(port: number) {
  const socket = net.connect({ port, host: "127.0.0.1" });
  let text = "";
  socket.on("data", (d) => (text += d.toString("latin1")));
  const reply = (re: RegExp) => until(() => text, (t) => re.test(t), `reply ${re} in ${JSON.stringify(text)}`);
  await reply(/^220 /m);
  const send = async (line: string, re: RegExp) => {
    text = "";
    socket.write(`${line}\r\n`);
    await reply(re);
    return text;
  };
  // vsftpd's no_anon_password: logged in at USER.
  await send("USER anonymous", /^230 /m);
  return { socket, send };
}

test("ftp: an FTP bounce is refused with a 500 reply and logged; the connection goes on", { skip }, async () => {
  await withFtp(async ({ port, lb }) => {
    const { socket, send } = await rawControl(port);
    try {
      assert.match(await send("PORT 127,0,0,9,0,25", /^\d{3} /m), /^500 Illegal PORT command/m);
      assert.match(await send("EPRT |1|198.18.7.7|25|", /^\d{3} /m), /^500 Illegal EPRT command/m);
      assert.match(await send("NOOP", /^\d{3} /m), /^200 /m, "the next command is answered as its own");
      await lb.waitForTrace("FTP bounce refused: 127.0.0.1 sent PORT naming 127.0.0.9 port 25");
    } finally {
      socket.destroy();
    }
  });
});

test(
  "ftp: a data connection from a foreign address is refused and counted; the client's own goes through",
  { skip },
  async () => {
    const metrics = await freePort();
    await withFtp(async ({ port, servers: [a], lb }) => {
      const { socket, send } = await rawControl(port);
      try {
        await send("TYPE I", /^200 /m);
        const reply = await send("EPSV", /^229 /m);
        const dataPort = Number(/\(\|\|\|(\d+)\|\)/.exec(reply)![1]);
        // From 127.0.0.5: closed at once, without a byte.
        const stranger = net.connect({ port: dataPort, host: "127.0.0.1", localAddress: "127.0.0.5" });
        const strangerGot = await new Promise<number>((resolve) => {
          let n = 0;
          stranger.on("data", (d) => (n += d.length));
          stranger.on("close", () => resolve(n));
          stranger.on("error", () => {});
        });
        assert.equal(strangerGot, 0);
        await lb.waitForTrace(/FTP data connection refused from 127\.0\.0\.5:\d+: only 127\.0\.0\.1 may connect there/);
        const got: Buffer[] = [];
        const data = net.connect({ port: dataPort, host: "127.0.0.1" });
        const done = new Promise<void>((resolve) => data.on("end", resolve));
        data.on("data", (d) => got.push(d));
        await send("RETR pub/data.bin", /^226 /m);
        await done;
        data.destroy();
        assert.equal(sha(Buffer.concat(got)), sha(a.files["data.bin"]));
        const text = await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text();
        assert.match(text, /^balance_ftp_data_refused_total 1$/m);
      } finally {
        socket.destroy();
      }
    }, { args: ["--metrics", String(metrics)] });
  },
);

test("ftp: --ftp-data-ports: every data listener is in the range; -p shows the rewritten reply", { skip }, async () => {
  const lo = await freePort();
  await withFtp(async ({ port, servers: [a], lb }) => {
    const ports: number[] = [];
    for (const mode of ["PASV", "EPSV"]) {
      const r = await curl([...MODES[mode], `ftp://127.0.0.1:${port}/pub/id.txt`]);
      assert.equal(r.stdout, "a\n", r.stderr);
      const m = /< 227 Entering Passive Mode \(127,0,0,1,(\d+),(\d+)\)/.exec(r.stderr) ??
        /< 229 Entering Extended Passive Mode \(\|\|\|(\d+)\|\)/.exec(r.stderr)!;
      ports.push(m[2] === undefined ? Number(m[1]) : Number(m[1]) * 256 + Number(m[2]));
    }
    const r = await curl([...MODES.PORT, `ftp://127.0.0.1:${port}/pub/id.txt`]);
    assert.equal(r.stdout, "a\n", r.stderr);
    ports.push(Number(new RegExp(`FTP data listener ${SOURCE.replaceAll(".", "\\.")}:(\\d+)`).exec(lb.stderr())![1]));
    for (const p of ports) assert.ok(p >= lo && p <= lo + 2, `port ${p} in ${lo}-${lo + 2}`);
    await until(() => lb.stdout(), (out) => /227 Entering Passive Mode \(127,0,0,1,/.test(out), "-p dump");
    assert.doesNotMatch(lb.stdout(), new RegExp(`\\(127,0,0,2,`), "-p shows what was sent, not what the server said");
    assert.equal(a.output().includes("OOPS"), false);
  }, { args: ["-p", "--ftp-data-ports", `${lo}-${lo + 2}`] });
});

test("ftp: dump writes the FTP options back; they need --ftp", { skip: false }, async () => {
  const { runBalance } = await import("../support/balance.ts");
  const bad = await runBalance(["--ftp-address", "10.0.0.1", "21", "127.0.0.2"]);
  assert.equal(bad.code, 64);
  assert.match(bad.stderr, /option --ftp-address needs --ftp/);
  for (
    const [args, re] of [
      [["--ftp", "--ftp-data-ports", "9-3"], /invalid data ports \(--ftp-data-ports\) '9-3'/],
      [["--ftp", "--ftp-address", "::1"], /invalid FTP address \(--ftp-address\) '::1': must be an IPv4 address/],
    ] as const
  ) {
    const r = await runBalance([...args, "21", "127.0.0.2"]);
    assert.equal(r.code, 64, r.stderr);
    assert.match(r.stderr, re);
  }
  const port = await freePort();
  const lb = await startBalance([
    "--ftp",
    "--ftp-address",
    "203.0.113.5",
    "--ftp-data-ports",
    "50000-50099",
    String(port),
    "127.0.0.2:2121",
  ], port);
  try {
    const dumped = await control(port, "dump");
    assert.match(dumped, /--ftp --ftp-address 203\.0\.113\.5 --ftp-data-ports 50000-50099/);
  } finally {
    await lb.stop();
  }
});
