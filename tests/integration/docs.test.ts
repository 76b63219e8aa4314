/**
 * The documentation stands on its own: nothing in the repository points
 * outside it, every link in the Markdown resolves inside it, the man page
 * has the sections an operator looks for, and `--help`, the man page, the
 * README and docs/control.md name the same options and control commands.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runBalance, startBalance } from "../support/balance.ts";
import { freePort } from "../support/net.ts";

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
  "docs/access.md",
  "docs/sni.md",
  "docs/services.md",
  "docs/ftp.md",
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

test("man page: has every required section", () => {
  const sections = [...manText().matchAll(/^\.SH\s+"?([^"\n]+)"?$/gm)].map((m) => m[1].trim());
  for (const section of REQUIRED_SECTIONS) assert.ok(sections.includes(section), `section ${section}`);
});

/**
 * The option names a text mentions: `--long`, `-x`, and the flags of a
 * bracketed cluster (`[-adfpHM6]`). `show --json` is a control command's
 * argument, not an option.
 */
function optionNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const [, name] of text.matchAll(/(?<![\w-])(--[A-Za-z][\w-]*|-[A-Za-z0-9](?![\w-]))/g)) names.add(name);
  for (const [, flags] of text.matchAll(/\[-([A-Za-z0-9]{2,})\]/g)) for (const c of flags) names.add(`-${c}`);
  names.delete("--json");
  return names;
}

/** Which of `expected` each source lacks, by source; `{}` when none lacks any. */
function lacking(
  expected: readonly string[] | ReadonlySet<string>,
  sources: Record<string, Set<string>>,
): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [source, names] of Object.entries(sources)) {
    const missing = [...expected].filter((n) => !names.has(n));
    if (missing.length) out[source] = missing;
  }
  return out;
}

test("docs: --help, the man page and the README name the same options", async () => {
  const help = await runBalance(["--help"]);
  assert.equal(help.code, 0, help.stderr);
  const helpNames = optionNames(help.stdout);
  for (const expected of ["-b", "-c", "-w", "-F", "-6", "--log-file", "--check-config", "--metrics", "--version"]) {
    assert.ok(helpNames.has(expected), `--help prints ${expected} (the check reads it right)`);
  }
  const usage = readFileSync(join(ROOT, "README.md"), "utf8").split("\n## Usage\n")[1];
  const synopsis = /```\n([^`]*)```/.exec(usage)?.[1] ?? "";
  const table = usage.split("\n").filter((line) => /^\| `-/.test(line)).map((line) => line.split("|")[1]);
  const sources = {
    "--help": helpNames,
    "man page": optionNames(manText()),
    "README option table": optionNames(table.join("\n")),
  };
  const all = new Set(Object.values(sources).flatMap((s) => [...s]));
  assert.deepEqual(lacking(all, sources), {}, "options some of them lack");
  // The README's usage block is --help's synopsis, the part before the option list.
  const helpSynopsis = optionNames(help.stdout.split("\n\n")[0]);
  assert.deepEqual(
    lacking(new Set([...helpSynopsis, ...optionNames(synopsis)]), {
      "--help synopsis": helpSynopsis,
      "README usage block": optionNames(synopsis),
    }),
    {},
    "options one synopsis has and the other lacks",
  );
});

test("docs: docs/control.md and the man page name every control command of `help`, in its order", async () => {
  const port = await freePort();
  const lb = await startBalance([String(port), "127.0.0.1:1"], port);
  let help;
  try {
    help = await runBalance(["-c", "help", String(port)]);
  } finally {
    await lb.stop();
  }
  assert.equal(help.code, 0, help.stderr);
  const commands = help.stdout.trim().split("\n").map((line) => line.split(/[\s,]/)[0]);
  assert.ok(commands.includes("show") && commands.includes("weight"), `help lists the commands:\n${help.stdout}`);

  const control = readFileSync(join(ROOT, "docs/control.md"), "utf8");
  const helpBlock = /### `help`\n+```\n([^`]*)```/.exec(control)?.[1];
  assert.equal(helpBlock, help.stdout.trimEnd() + "\n", "docs/control.md shows `help` as it answers");
  const table = control.split("\n").filter((line) => /^\| `[a-z?]/.test(line))
    .flatMap((line) => [...line.split("|")[1].matchAll(/`([a-z?][\w-]*)/g)].map((m) => m[1]));
  const man = manText();
  const manSection = man.slice(man.indexOf(".SH CONTROL COMMANDS"), man.indexOf(".SH LOGGING"));
  const manEntries = [...manSection.matchAll(/^\.B[IR]? (.*)$/gm)].flatMap((m) => m[1].match(/[a-z][\w-]*/g) ?? []);
  assert.deepEqual(
    lacking(commands, { "docs/control.md table": new Set(table), "man page": new Set(manEntries) }),
    {},
    "control commands some of them lack",
  );
  // Abbreviations resolve to the first command in help's order; both pages spell that order out.
  const order = (text: string) =>
    /means the first of[^:]*:([^(.]*)/.exec(text.replace(/\s+/g, " "))?.[1].match(/[a-z][\w-]*/g) ?? [];
  assert.deepEqual(order(control), commands, "docs/control.md's abbreviation order");
  assert.deepEqual(order(manSection), commands, "the man page's abbreviation order");
});

const hasGroff = spawnSync("groff", ["--version"]).status === 0;
test("man page: renders without a warning", { skip: !hasGroff && "groff is not installed" }, () => {
  const r = spawnSync("groff", ["-man", "-Tutf8", "-ww", "-z", MAN_PAGE], { encoding: "utf8", timeout: 20_000 });
  assert.equal(r.status, 0);
  assert.equal(r.stderr, "", "groff -ww warnings");
});
