/**
 * The release artefacts as users get them: seven binaries, a .deb, npm
 * tarballs, a Homebrew formula and a Scoop manifest (the OCI image: image.test.ts).
 * Needs ./scripts/build and ./scripts/package to have run.
 */
import { onTimeout, test } from "../support/test.ts";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { freePort, startBackend, whoAnswers } from "../support/net.ts";
import { balanceEnv, startBalance } from "../support/balance.ts";
import { sleep } from "../support/helpers.ts";

const ROOT = fileURLToPath(import.meta.resolve("../.."));
const DIST = join(ROOT, "dist");
const PACKAGES = join(DIST, "packages");
const VERSION = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version as string;
const VERSION_LINE = new RegExp(`^balance ${VERSION.replaceAll(".", "\\.")} \\(commit [0-9a-f]{12}(-dirty)?, bun `);

const sh = (cmd: string, args: string[], opts = {}) => execFileSync(cmd, args, { encoding: "utf8", ...opts });
const tempDir = () => mkdtempSync(join(tmpdir(), "balance-pkg-"));
const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

/** Starts `command` as a balancer in front of one backend and checks a connection goes through. */
async function proxiesAConnection(command: string[]) {
  const backend = await startBackend("packaged");
  const port = await freePort();
  const lb = await startBalance([String(port), `127.0.0.1:${backend.port}`], port, { command });
  try {
    assert.equal(await whoAnswers(port), "packaged");
  } finally {
    const code = await lb.stop();
    assert.equal(code, 0, `stops cleanly on SIGTERM, not ${code}: ${lb.stderr()}`);
    await backend.close();
  }
  await assert.rejects(whoAnswers(port), /ECONNREFUSED/, "nothing left listening");
}

const BINARIES: [string, RegExp][] = [
  ["balance-linux-x64", /ELF 64-bit LSB executable, x86-64.*interpreter \/lib64\/ld-linux-x86-64\.so\.2/],
  ["balance-linux-arm64", /ELF 64-bit LSB executable, ARM aarch64.*interpreter \/lib\/ld-linux-aarch64\.so\.1/],
  ["balance-linux-x64-musl", /ELF 64-bit LSB executable, x86-64.*interpreter \/lib\/ld-musl-x86_64\.so\.1/],
  ["balance-linux-arm64-musl", /ELF 64-bit LSB executable, ARM aarch64.*interpreter \/lib\/ld-musl-aarch64\.so\.1/],
  ["balance-darwin-x64", /Mach-O 64-bit x86_64 executable/],
  ["balance-darwin-arm64", /Mach-O 64-bit arm64 executable/],
  ["balance-windows-x64.exe", /PE32\+ executable \(console\) x86-64, for MS Windows/],
];

test("binaries: seven targets of the right format and architecture, SHA256SUMS verifies", () => {
  for (const [name, format] of BINARIES) {
    assert.match(sh("file", ["-b", join(DIST, name)]), format, name);
  }
  const sums = readFileSync(join(DIST, "SHA256SUMS"), "utf8").trim().split("\n");
  assert.deepEqual(sums.map((l) => l.split(/\s+/)[1]).sort(), BINARIES.map(([n]) => n).sort());
  sh("sha256sum", ["--check", "--quiet", "SHA256SUMS"], { cwd: DIST });
});

const hasQemu = spawnSync("qemu-aarch64", ["--version"]).status === 0 && existsSync("/usr/aarch64-linux-gnu");
test("binaries: linux-arm64 runs under emulation and reports its version", {
  skip: !hasQemu && "qemu-user and libc6-arm64-cross are not installed",
}, () => {
  const out = sh("qemu-aarch64", ["-L", "/usr/aarch64-linux-gnu", join(DIST, "balance-linux-arm64"), "--version"]);
  assert.match(out, VERSION_LINE);
});

test(".deb: control fields, man page, systemd unit, example conffile; the installed balance proxies a connection", async () => {
  const deb = join(PACKAGES, `balance_${VERSION}_amd64.deb`);
  const info = sh("dpkg-deb", ["--field", deb, "Package", "Version", "Architecture"]);
  assert.equal(info, `Package: balance\nVersion: ${VERSION}\nArchitecture: amd64\n`);
  assert.match(sh("dpkg-deb", ["--contents", deb]), /\.\/usr\/share\/man\/man1\/balance\.1\.gz/);
  const root = tempDir();
  try {
    sh("dpkg", ["-x", deb, root]);
    const bin = join(root, "usr/bin/balance");
    assert.match(sh(bin, ["--version"]), VERSION_LINE);
    const man = sh("sh", ["-c", `gzip -dc ${join(root, "usr/share/man/man1/balance.1.gz")}`]);
    assert.match(man, /^\.TH BALANCE 1/);
    assert.match(man, /\\fB\\-H\\fR|\.B \\-H/, "documents -H");
    const unit = join(root, "usr/lib/systemd/system/balance@.service");
    assert.equal(readFileSync(unit, "utf8"), readFileSync(join(ROOT, "packaging/systemd/balance@.service"), "utf8"));
    assert.match(sh("sh", ["-c", `dpkg-deb --info ${deb} conffiles`]), /^\/etc\/balance\/example\.conf$/m);
    const example = spawnSync(bin, ["--check-config", "-F", join(root, "etc/balance/example.conf")], {
      encoding: "utf8",
    });
    assert.deepEqual(
      [example.status, example.stdout, example.stderr],
      [0, "", ""],
      "the example passes --check-config",
    );
    await proxiesAConnection([bin]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

const hasLintian = spawnSync("lintian", ["--version"]).status === 0;
test(".deb: lintian finds no error; copyright (DEP-5, GPL-3+), changelog and the two explained overrides", {
  skip: !hasLintian && "lintian is not installed (./scripts/test-deps as root installs it)",
  timeoutMs: 150_000,
}, () => {
  for (const arch of ["amd64", "arm64"]) {
    const deb = join(PACKAGES, `balance_${VERSION}_${arch}.deb`);
    // execFileSync blocks the test's own limit: give lintian one of its own.
    const run = spawnSync("lintian", ["--tag-display-limit", "0", deb], { encoding: "utf8", timeout: 120_000 });
    assert.equal(run.status, 0, `lintian ${arch}: exit ${run.status} ${run.signal ?? ""}\n${run.stdout}${run.stderr}`);
    assert.doesNotMatch(run.stdout, /^E: /m, `${arch}: no errors`);
  }
  const root = tempDir();
  try {
    sh("dpkg", ["-x", join(PACKAGES, `balance_${VERSION}_amd64.deb`), root]);
    const copyright = readFileSync(join(root, "usr/share/doc/balance/copyright"), "utf8");
    assert.match(copyright, /^Format: https:\/\/www\.debian\.org\/doc\/packaging-manuals\/copyright-format\/1\.0\/$/m);
    assert.match(copyright, /^Files: \*\nCopyright: .+\nLicense: GPL-3\+$/m);
    assert.match(copyright, /"\/usr\/share\/common-licenses\/GPL-3"/);
    const changelog = sh("sh", ["-c", `gzip -dc ${join(root, "usr/share/doc/balance/changelog.gz")}`]);
    assert.match(changelog, new RegExp(`^balance \\(${VERSION.replaceAll(".", "\\.")}\\) `));
    // Overrides hide only what Bun's compiled executable cannot avoid.
    const overrides = readFileSync(join(root, "usr/share/lintian/overrides/balance"), "utf8");
    assert.deepEqual(overrides.split("\n").filter((l) => /^\w/.test(l)), [
      "balance: unstripped-binary-or-object [usr/bin/balance]",
      "balance: embedded-library libjpeg [usr/bin/balance]",
    ]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

const hasObjdump = spawnSync("objdump", ["--version"]).status === 0;
test(".deb: Depends libc6 (>= 2.17) covers every glibc symbol version the binaries use", {
  skip: !hasObjdump && "objdump (binutils) is not installed",
}, () => {
  for (const [arch, target] of [["amd64", "linux-x64"], ["arm64", "linux-arm64"]]) {
    const deb = join(PACKAGES, `balance_${VERSION}_${arch}.deb`);
    assert.equal(sh("dpkg-deb", ["--field", deb, "Depends"]).trim(), "libc6 (>= 2.17)");
    const symbols = sh("objdump", ["-T", join(DIST, `balance-${target}`)], { maxBuffer: 64 << 20 });
    const versions = [...symbols.matchAll(/GLIBC_2\.(\d+)/g)].map((m) => Number(m[1]));
    assert.ok(versions.length > 0 && Math.max(...versions) <= 17, `${target}: newest GLIBC_2.${Math.max(...versions)}`);
  }
});

/** `npm install -g` of the main tarball and this platform's, offline, into a fresh prefix; `extra` adds flags. */
function npmInstallGlobal(extra: string[] = []): { prefix: string; bin: string } {
  const prefix = tempDir();
  const npm = join(PACKAGES, "npm");
  sh("npm", [
    "install",
    "--global",
    "--prefix",
    prefix,
    "--offline",
    "--no-audit",
    "--no-fund",
    "--loglevel=error",
    ...extra,
    join(npm, `balance-lb-${VERSION}.tgz`),
    join(npm, `balance-lb-linux-x64-${VERSION}.tgz`),
  ], { cwd: prefix, env: { ...process.env, npm_config_cache: join(prefix, ".npm-cache") } });
  return { prefix, bin: join(prefix, "bin/balance") };
}

/** pid's executable, its parent's pid and the command names of all its descendants, from /proc. */
function processTree(pid: number): { exe: string; parent: number; descendants: string[] } {
  const stat = (p: number | string) => {
    const text = readFileSync(`/proc/${p}/stat`, "utf8");
    // comm is in parentheses and may hold spaces: the fields after it are split from its last ")".
    const close = text.lastIndexOf(")");
    return { comm: text.slice(text.indexOf("(") + 1, close), ppid: Number(text.slice(close + 2).split(" ")[1]) };
  };
  const all = readdirSync("/proc").filter((e) => /^\d+$/.test(e)).flatMap((p) => {
    try {
      return [{ pid: Number(p), ...stat(p) }];
    } catch {
      return []; // it ended while being read
    }
  });
  const descendants: string[] = [];
  for (let level = [pid]; level.length > 0;) {
    const next = all.filter((p) => level.includes(p.ppid));
    descendants.push(...next.map((p) => p.comm));
    level = next.map((p) => p.pid);
  }
  return { exe: readlinkSync(`/proc/${pid}/exe`), parent: stat(pid).ppid, descendants };
}

/** Starts `bin -f PORT 127.0.0.1:1` and waits for its listening line. */
async function startPlain(bin: string) {
  const port = await freePort();
  const child = spawn(bin, ["-f", String(port), "127.0.0.1:1"], {
    stdio: ["ignore", "pipe", "pipe"],
    env: balanceEnv(),
  });
  onTimeout(() => child.kill("SIGKILL"));
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  for (const deadline = Date.now() + 20_000; !stderr.includes("listening on");) {
    if (child.exitCode !== null || Date.now() > deadline) assert.fail(`balance did not start:\n${stderr}`);
    await sleep(50);
  }
  return { pid: child.pid!, exited, stderr: () => stderr };
}

test("npm: install -g offline puts the native executable in place: no node beside it, exit codes and signals direct", {
  timeoutMs: 120_000,
}, async () => {
  const { prefix, bin } = npmInstallGlobal();
  try {
    assert.match(sh(bin, ["--version"]), VERSION_LINE);
    const bad = spawnSync(bin, ["-t", "0", "80", "a"], { encoding: "utf8" });
    assert.equal(bad.status, 64, `a usage error exits 64: ${bad.stderr}`);
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      const lb = await startPlain(bin);
      const tree = processTree(lb.pid);
      assert.equal(tree.exe, realpathSync(bin), "the process is the installed executable itself, not node");
      assert.equal(tree.parent, process.pid, "started by the test runner directly, no launcher between");
      assert.deepEqual(tree.descendants, [], "no process beside it");
      // The native executable itself, hard-linked or copied from the platform package.
      assert.equal(sha256(realpathSync(bin)), sha256(join(DIST, "balance-linux-x64")));
      process.kill(lb.pid, signal);
      assert.equal(await lb.exited, 0, `${signal}: its normal exit`);
      const lines = lb.stderr().trim().split("\n");
      assert.match(lines.at(-1)!, /exiting, 0 connection\(s\) closed$/, `${signal}: its last line`);
      assert.ok(lines.some((l) => l.includes(`${signal}: stopped accepting`)), `${signal} reached balance`);
    }
  } finally {
    rmSync(prefix, { recursive: true, force: true });
  }
});

test("npm: install -g --ignore-scripts runs through the Node launcher: exit codes passed on, SIGTERM forwarded", {
  timeoutMs: 120_000,
}, async () => {
  const { prefix, bin } = npmInstallGlobal(["--ignore-scripts"]);
  try {
    assert.match(readFileSync(bin, "utf8"), /^#!\/usr\/bin\/env node\n/, "the launcher is left in place");
    assert.match(sh(bin, ["--version"]), VERSION_LINE);
    const bad = spawnSync(bin, ["-t", "0", "80", "a"], { encoding: "utf8" });
    assert.equal(bad.status, 64, `the launcher passes the exit code on: ${bad.stderr}`);
    // SIGTERM to the launcher must stop the balancer too: proxiesAConnection
    // checks nothing is left listening.
    await proxiesAConnection([bin]);
  } finally {
    rmSync(prefix, { recursive: true, force: true });
  }
});

test("npm: every platform package declares os, cpu (and libc) so npm picks exactly one", () => {
  const npm = join(PACKAGES, "npm");
  const launcher = JSON.parse(sh("tar", ["-xzOf", join(npm, `balance-lb-${VERSION}.tgz`), "package/package.json"]));
  const optional = Object.keys(launcher.optionalDependencies).sort();
  assert.equal(optional.length, 7);
  for (const name of optional) {
    const short = name.split("/")[1];
    const pkg = JSON.parse(
      sh("tar", ["-xzOf", join(npm, `balance-lb-${short}-${VERSION}.tgz`), "package/package.json"]),
    );
    assert.equal(pkg.name, name);
    const [os, cpu, musl] = short.split("-");
    assert.deepEqual(pkg.os, [os === "windows" ? "win32" : os]);
    assert.deepEqual(pkg.cpu, [cpu]);
    if (os === "linux") assert.deepEqual(pkg.libc, [musl ? "musl" : "glibc"]);
  }
});

test("Homebrew formula and Scoop manifest carry the release checksums", () => {
  const sums = new Map(
    readFileSync(join(DIST, "SHA256SUMS"), "utf8").trim().split("\n").map((l) =>
      l.split(/\s+/).reverse() as [string, string]
    ),
  );
  const formula = readFileSync(join(PACKAGES, "balance.rb"), "utf8");
  for (const target of ["darwin-arm64", "darwin-x64", "linux-arm64", "linux-x64"]) {
    const file = `balance-${target}`;
    assert.equal(sums.get(file), sha256(join(DIST, file)));
    assert.match(formula, new RegExp(`url ".*/${file}"\\n\\s+sha256 "${sums.get(file)}"`), target);
  }
  assert.match(formula, new RegExp(`version "${VERSION}"`));
  const scoop = JSON.parse(readFileSync(join(PACKAGES, "balance.json"), "utf8"));
  assert.equal(scoop.version, VERSION);
  assert.equal(scoop.architecture["64bit"].hash, sha256(join(DIST, "balance-windows-x64.exe")));
  assert.equal(scoop.bin, "balance.exe");
  if (spawnSync("ruby", ["--version"]).status === 0) sh("ruby", ["-c", join(PACKAGES, "balance.rb")]);
  else console.log("ruby not installed: formula syntax not checked");
});
