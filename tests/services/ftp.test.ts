/**
 * `--ftp` in the realistic topology (issue 26), as docs/services.md's recipe
 * runs it: network namespaces, the client on one link, balance between two
 * links, two stock vsftpd servers on the other that the client cannot reach
 * (asserted). Clients are curl
 * and lftp; a raw control connection (python3) for what they cannot do.
 * Addresses from 198.18.0.0/15 only, created and removed by the test.
 *
 * @module
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { balanceCommand, balanceEnv } from "../support/balance.ts";
import { balanceArgs, recipe } from "../support/services.ts";
import { findProgram, type Lab, labUnavailable, type Started, withLab } from "../support/netns.ts";
import { lftpTransfers, prepareVsftpd, VSFTPD, type VsftpdFiles, vsftpdUnavailable } from "../support/vsftpd.ts";
import { until, within } from "../support/wait.ts";

const skip = labUnavailable(["vsftpd", "curl", "lftp", "python3", "ss"]) || vsftpdUnavailable();
const CLIENT_NET = "198.18.10";
const SERVER_NET = "198.18.11";
const LB = `${CLIENT_NET}.2`;
const DATA_PORTS = [50000, 50009];

const sha = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

interface FtpLab {
  lab: Lab;
  servers: VsftpdFiles[];
  balance: Started;
  /** Runs a program in the client namespace to its end; its exit code and output. */
  client(args: string[], ms?: number): Promise<{ code: number | string | null; stdout: string; stderr: string }>;
}

// client 198.18.10.1 and a stranger .3 on one bridge with balance's .2;
// balance's 198.18.11.1 on another with the servers .2 and .3. No routes
// between the two networks: only balance joins them.
async function withFtpLab(fn: (f: FtpLab) => Promise<void>): Promise<void> {
  await withLab(async (lab) => {
    lab.namespaces("csw", "ssw", "client", "stranger", "lb", "s1", "s2");
    lab.bridge("csw", "br0");
    lab.bridge("ssw", "br0");
    lab.plug("client", `${CLIENT_NET}.1/24`, "csw", "br0");
    lab.plug("stranger", `${CLIENT_NET}.3/24`, "csw", "br0");
    lab.plug("lb", `${LB}/24`, "csw", "br0");
    lab.plug("lb", `${SERVER_NET}.1/24`, "ssw", "br0", "eth1");
    const servers = ["s1", "s2"].map((ns, i) => {
      lab.plug(ns, `${SERVER_NET}.${2 + i}/24`, "ssw", "br0");
      return prepareVsftpd(lab.dir, String.fromCharCode(97 + i), `${SERVER_NET}.${2 + i}`, 21, { size: 1024 * 1024 });
    });
    servers.forEach((s, i) => lab.spawn(`s${i + 1}`, [VSFTPD!, s.conf]));
    for (const [i, s] of servers.entries()) {
      await until(
        () => lab.run(`s${i + 1}`, ["ss", "-ltnH"]),
        (out) => out.includes(`${s.address}:21`),
        `vsftpd ${i + 1}`,
      );
    }
    const workers = process.env.BALANCE_WORKERS ? ["-w", process.env.BALANCE_WORKERS] : [];
    const documented = balanceArgs(recipe("ftp-balance", {
      "50000-50099": DATA_PORTS.join("-"),
      "10.0.0.1:21": `${servers[0].address}:21`,
      "10.0.0.2:21": `${servers[1].address}:21`,
    }));
    const balance = lab.spawn(
      "lb",
      [...balanceCommand(), "-f", "-d", ...workers, "--log-connections", ...documented],
      balanceEnv(),
    );
    await until(() => balance.stderr(), (e) => e.includes("listening on"), "balance to listen", { ms: 30_000 });
    const client = async (args: string[], ms = 30_000) => {
      const run = lab.spawn("client", args);
      const code = await within(run.exited, ms, `${args[0]} in the client namespace`);
      return { code, stdout: run.stdout(), stderr: run.stderr() };
    };
    try {
      await fn({ lab, servers, balance, client });
    } finally {
      balance.child.kill("SIGTERM");
      await within(balance.exited, 15_000, "balance to exit").catch(() => balance.child.kill("SIGKILL"));
    }
  });
}

const CURL_MODES: Record<string, string[]> = {
  PASV: ["--disable-epsv"],
  EPSV: [],
  PORT: ["-P", "-", "--disable-eprt"],
  EPRT: ["-P", "-"],
};

test(
  "ftp netns: servers out of the client's reach; curl and lftp, passive and active, download and upload, by checksum",
  {
    skip,
    timeoutMs: 120_000,
  },
  async () => {
    await withFtpLab(async ({ lab, servers, balance, client }) => {
      const direct = await client(["curl", "-sS", "--connect-timeout", "2", `ftp://${SERVER_NET}.2/pub/id.txt`]);
      assert.notEqual(direct.code, 0, "the client cannot reach a server directly");
      const served: string[] = [];
      for (const [mode, flags] of Object.entries(CURL_MODES)) {
        for (let i = 0; i < 2; i++) {
          const got = join(lab.dir, `${mode}-${i}.bin`);
          const r = await client([
            "curl",
            "-sS",
            "-v",
            "--max-time",
            "20",
            ...flags,
            `ftp://${LB}/pub/data.bin`,
            "-o",
            got,
          ]);
          assert.equal(r.code, 0, `${mode} download: ${r.stderr}`);
          const server = servers.find((s) => sha(s.files["data.bin"]) === sha(readFileSync(got)));
          assert.ok(server, `${mode} download matches a server's file`);
          served.push(server.address);
          const up = await client([
            "curl",
            "-sS",
            "--max-time",
            "20",
            ...flags,
            "-T",
            got,
            `ftp://${LB}/upload/${mode}-${i}.bin`,
          ]);
          assert.equal(up.code, 0, `${mode} upload: ${up.stderr}`);
          const landed = servers.find((s) => existsSync(join(s.root, "upload", `${mode}-${i}.bin`)))!;
          served.push(landed.address);
          assert.equal(sha(readFileSync(join(landed.root, "upload", `${mode}-${i}.bin`))), sha(readFileSync(got)));
          if (mode === "PASV") {
            const port = /< 227 Entering Passive Mode \(198,18,10,2,(\d+),(\d+)\)/.exec(r.stderr);
            assert.ok(port, `227 names balance: ${r.stderr}`);
            const p = Number(port[1]) * 256 + Number(port[2]);
            assert.ok(p >= DATA_PORTS[0] && p <= DATA_PORTS[1], `--ftp-data-ports: ${p}`);
          }
        }
      }
      // Each download is a new control connection: round robin alternates.
      for (let i = 1; i < served.length; i++) {
        assert.notEqual(served[i], served[i - 1], `downloads alternate: ${served}`);
      }
      for (const passive of ["on", "off"]) {
        const script = lftpTransfers(passive, lab.dir, `lftp-${passive}`, join(lab.dir, "PASV-0.bin"));
        const r = await client(["lftp", "-e", script, LB], 60_000);
        assert.equal(r.code, 0, `lftp passive ${passive}: ${r.stderr}`);
        const server = servers.find((s) => existsSync(join(s.root, "upload", `lftp-${passive}-0.bin`)))!;
        for (let i = 0; i < 10; i++) {
          assert.equal(sha(readFileSync(join(lab.dir, `lftp-${passive}-${i}.bin`))), sha(server.files["data.bin"]));
          assert.equal(
            sha(readFileSync(join(server.root, "upload", `lftp-${passive}-${i}.bin`))),
            sha(readFileSync(join(lab.dir, "PASV-0.bin"))),
          );
        }
      }
      // 8 curl downloads + 8 uploads + 2 lftp sessions of 20 transfers each: 18 control connections.
      const env = `BALANCE_CONTROL_DIR=${balanceEnv().BALANCE_CONTROL_DIR}`;
      const rows = JSON.parse(lab.run("lb", ["env", env, ...balanceCommand(), "-c", "show --json", "21"]));
      const totalc = rows.reduce((n: number, r: { totalc: number }) => n + r.totalc, 0);
      assert.equal(totalc, 18, "totalc counts control connections only");
      // Active mode: the servers connected to balance's server side, within the range.
      const active = [...balance.stderr().matchAll(/FTP data listener 198\.18\.11\.1:(\d+) for 198\.18\.11\.[23]/g)];
      assert.ok(active.length >= 8, "active data listeners on the server side");
      for (const [, p] of active) assert.ok(Number(p) >= DATA_PORTS[0] && Number(p) <= DATA_PORTS[1]);
    });
  },
);

// A raw control connection from the client namespace: logs in, asks for a
// passive port, prints it, waits for `go` to appear, then downloads.
const RAW_PY = `
import os, socket, sys, time, hashlib
lb, go = sys.argv[1], sys.argv[2]
c = socket.create_connection((lb, 21), timeout=10)
f = c.makefile("rb")
def reply(final=False):
    while True:
        line = f.readline().decode("latin1")
        if line[3:4] == " " and not (final and line[0] == "1"): return line
reply()
for cmd in ["USER anonymous", "TYPE I"]:
    c.sendall((cmd + "\\r\\n").encode()); reply()
c.sendall(b"PORT 198,18,11,2,0,21\\r\\n"); print("bounce", reply().strip(), flush=True)
c.sendall(b"EPSV\\r\\n"); r = reply(); print("epsv", r.strip(), flush=True)
port = int(r.split("|||")[1].split("|")[0])
deadline = time.time() + 20
while not os.path.exists(go) and time.time() < deadline: time.sleep(0.05)
d = socket.create_connection((lb, port), timeout=10)
c.sendall(b"RETR pub/data.bin\\r\\n")
h = hashlib.sha256(); n = 0
while True:
    b = d.recv(65536)
    if not b: break
    h.update(b); n += len(b)
print("final", reply(True).strip(), flush=True)
print("sha", h.hexdigest(), n, flush=True)
`;

// The stranger connects to a data port and reports how many bytes it got
// (closed or reset, even before the connect returns: none).
const STRANGER_PY = `
import socket, sys
n = 0
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    while True:
        b = s.recv(65536)
        if not b: break
        n += len(b)
except ConnectionResetError:
    pass
print(n)
`;

test("ftp netns: a bounce is refused with 500; a data connection from a foreign address is refused and counted", {
  skip,
  timeoutMs: 90_000,
}, async () => {
  await withFtpLab(async ({ lab, servers, balance }) => {
    const python = findProgram("python3")!;
    const go = join(lab.dir, "go");
    const raw = lab.spawn("client", [python, "-c", RAW_PY, LB, go]);
    const epsv = await until(() => raw.stdout(), (out) => /^epsv /m.test(out), "EPSV reply", { ms: 15_000 });
    assert.match(epsv, /^bounce 500 Illegal PORT command/m);
    const port = Number(/\(\|\|\|(\d+)\|\)/.exec(epsv)![1]);
    const stranger = lab.run("stranger", [python, "-c", STRANGER_PY, LB, String(port)]);
    assert.equal(stranger.trim(), "0", "the stranger gets nothing");
    writeFileSync(go, "");
    await within(raw.exited, 20_000, "the raw client");
    const out = raw.stdout();
    assert.match(out, /^final 226 /m, out + raw.stderr());
    const [, digest] = /^sha (\w+) (\d+)$/m.exec(out)!;
    assert.ok(
      servers.some((s) => sha(s.files["data.bin"]) === digest),
      "the client's own data connection went through",
    );
    const log = balance.stderr();
    assert.match(log, /FTP bounce refused: 198\.18\.10\.1 sent PORT naming 198\.18\.11\.2 port 21/);
    assert.match(log, /FTP data connection refused from 198\.18\.10\.3:\d+: only 198\.18\.10\.1 may connect there/);
  });
});
