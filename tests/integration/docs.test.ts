/**
 * The documentation stands on its own: nothing in the repository points
 * outside it, every link in the Markdown resolves inside it, and the man
 * page has the sections an operator looks for and every option `--help`
 * prints.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runBalance } from "../support/balance.ts";

const ROOT = fileURLToPath(import.meta.resolve("../.."));
const MAN_PAGE = join(ROOT, "packaging/balance.1");

// Tracked files and new ones not ignored: what a commit would hold.
function repositoryFiles(): string[] {
  const out = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "-z"], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 20_000,
  });
  return out.split("\0").filter((f) => f !== "" && existsSync(join(ROOT, f)) && statSync(join(ROOT, f)).isFile());
}

// Built from parts so that this file does not match itself.
const OUTSIDE = [["..", "shared"].join("/"), ["/work", "shared"].join("/"), ["BALANCE", "md"].join(".")];

test("docs: no file in the repository points outside it (the shared folder or its contract)", () => {
  const found: string[] = [];
  // The benchmark is a developer's tool run beside the workplace's shared
  // yardstick; it is not documentation and ships in no package.
  for (const file of repositoryFiles().filter((f) => f !== "scripts/bench")) {
    const bytes = readFileSync(join(ROOT, file));
    if (bytes.includes(0)) continue; // binary
    bytes.toString("utf8").split("\n").forEach((line, i) => {
      if (OUTSIDE.some((needle) => line.includes(needle))) found.push(`${file}:${i + 1}: ${line.trim().slice(0, 120)}`);
    });
  }
  assert.deepEqual(found, []);
});

const DOCS_PAGES = [
  "docs/behaviour.md",
  "docs/control.md",
  "docs/operations.md",
  "docs/health.md",
  "docs/dns.md",
  "docs/hashing.md",
  "docs/configuration.md",
  "docs/scaling.md",
  "docs/deviations.md",
  "docs/metrics.md",
  "docs/proxy-protocol.md",
];

test("docs: README links docs/ and the man page, and every relative Markdown link resolves in the repository", () => {
  const markdown = repositoryFiles().filter((f) => f.endsWith(".md") && !f.startsWith("node_modules/"));
  for (const page of DOCS_PAGES) {
    assert.ok(markdown.includes(page), `${page} exists`);
  }
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  for (const target of DOCS_PAGES) {
    assert.ok(readme.includes(`](${target})`), `README links ${target}`);
  }
  assert.ok(readme.includes("](packaging/balance.1)"), "README links the man page");
  assert.ok(readme.includes("](LICENSE)"), "README links the licence");
  const broken: string[] = [];
  for (const file of markdown) {
    const text = readFileSync(join(ROOT, file), "utf8");
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/i.test(target) || target.startsWith("#")) continue;
      const path = resolve(dirname(join(ROOT, file)), target.split("#")[0]);
      if (relative(ROOT, path).startsWith("..") || !existsSync(path)) broken.push(`${file}: ${target}`);
    }
  }
  assert.deepEqual(broken, []);
});

const REQUIRED_SECTIONS = [
  "NAME",
  "SYNOPSIS",
  "DESCRIPTION",
  "OPTIONS",
  "CONTROL COMMANDS",
  "LOGGING",
  "SIGNALS",
  "EXIT STATUS",
  "FILES",
  "ENVIRONMENT",
];

// The man page as text: font changes removed, `\-` as `-`.
function manText(): string {
  return readFileSync(MAN_PAGE, "utf8").replace(/\\f[BIRP]/g, "").replaceAll("\\-", "-");
}

test("man page: has every required section, and every option --help prints", async () => {
  const man = manText();
  const sections = [...man.matchAll(/^\.SH\s+"?([^"\n]+)"?$/gm)].map((m) => m[1].trim());
  for (const section of REQUIRED_SECTIONS) assert.ok(sections.includes(section), `section ${section}`);

  const help = await runBalance(["--help"]);
  assert.equal(help.code, 0, help.stderr);
  const options = new Set<string>();
  for (const [, token] of help.stdout.matchAll(/(?<![\w-])(--?[A-Za-z0-9][\w-]*)/g)) {
    // `-adfpHM6` in the synopsis is seven flags.
    if (!token.startsWith("--") && token.length > 2) { for (const c of token.slice(1)) options.add(`-${c}`); }
    else options.add(token);
  }
  for (const expected of ["-b", "-c", "-w", "--log-file", "--syslog", "--grace", "--list", "--help", "--version"]) {
    assert.ok(options.has(expected), `--help prints ${expected} (the check reads it right)`);
  }
  const missing = [...options].filter((o) => !new RegExp(`(?<![\\w-])${o}(?![\\w-])`).test(man));
  assert.deepEqual(missing, [], "options --help prints that the man page does not mention");
});

const hasGroff = spawnSync("groff", ["--version"]).status === 0;
test("man page: renders without a warning", { skip: !hasGroff && "groff is not installed" }, () => {
  const r = spawnSync("groff", ["-man", "-Tutf8", "-ww", "-z", MAN_PAGE], { encoding: "utf8", timeout: 20_000 });
  assert.equal(r.status, 0);
  assert.equal(r.stderr, "", "groff -ww warnings");
});
