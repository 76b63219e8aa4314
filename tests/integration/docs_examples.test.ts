/**
 * The command lines the documentation shows work as written: every
 * `balance …` line of a code block in README.md and docs/ passes
 * `--check-config`, and the README's weight example splits connections as
 * its sentence says.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runBalance, startBalance } from "../support/balance.ts";
import { type Backend, freePort, startBackend, whoAnswers } from "../support/net.ts";
import { onTimeout } from "../support/test.ts";

const ROOT = fileURLToPath(import.meta.resolve("../.."));

const PAGES = [
  "README.md",
  ...readdirSync(join(ROOT, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`),
];

/** The lines of every fenced code block of a Markdown text, a continued (`\`) line joined to the next. */
function codeBlocks(markdown: string): string[][] {
  const blocks: string[][] = [];
  let block: string[] | undefined;
  for (const line of markdown.split("\n")) {
    if (/^\s*```/.test(line)) {
      if (block) blocks.push(block);
      block = block ? undefined : [];
    } else if (block) {
      const last = block.at(-1);
      if (last?.endsWith("\\")) block[block.length - 1] = `${last.slice(0, -1)} ${line.trim()}`;
      else block.push(line);
    }
  }
  return blocks;
}

/**
 * A shell command line's words, as the shell hands them over, up to the
 * first comment, pipe, redirection or list operator.
 */
function shellWords(line: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (/\s/.test(ch)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (word === undefined && /[#|>&;]/.test(ch)) {
      break;
    } else if (ch === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unterminated quote: ${line}`);
      word = (word ?? "") + line.slice(i + 1, end);
      i = end;
    } else if (ch === '"') {
      let text = "";
      for (i++; line[i] !== '"'; i++) {
        if (i >= line.length) throw new Error(`unterminated quote: ${line}`);
        text += line[i] === "\\" && /["\\$`]/.test(line[i + 1]) ? line[++i] : line[i];
      }
      word = (word ?? "") + text;
    } else {
      word = (word ?? "") + (ch === "\\" ? line[++i] : ch);
    }
  }
  if (word !== undefined) words.push(word);
  return words;
}

/** A documented command line: the page it is on, as written, and balance's arguments. */
interface Example {
  page: string;
  line: string;
  args: string[];
}

// A synopsis (`balance [-b addr] …`) stands for command lines; control
// commands, --list, --help and --version start no balancer to check.
const SYNOPSIS = /^\[(-|options\])|\.\.\.|…/;
const NOT_SERVING = /^(-c|-i|--list|--help|--version)$/;

/** Every command line that starts a balancer, from the code blocks of every page. */
function servingExamples(): Example[] {
  const examples: Example[] = [];
  for (const page of PAGES) {
    for (const block of codeBlocks(readFileSync(join(ROOT, page), "utf8"))) {
      for (const line of block) {
        const command = line.replace(/^\s*(\$\s+)?(sudo\s+)?/, "");
        if (!/^(\S*\/)?balance\s/.test(command)) continue;
        const args = shellWords(command).slice(1);
        if (args.some((w) => SYNOPSIS.test(w) || NOT_SERVING.test(w))) continue;
        examples.push({ page, line: line.trim(), args });
      }
    }
  }
  return examples;
}

/** The configuration files a page shows: a code block whose first line is `# PATH`. */
function documentedFiles(page: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const block of codeBlocks(readFileSync(join(ROOT, page), "utf8"))) {
    const path = /^# (\/\S+\.conf)$/.exec(block[0] ?? "")?.[1];
    if (path) files.set(path, block.join("\n"));
  }
  return files;
}

/** A DNS server on loopback that answers every A question with 127.0.0.1, and AAAA with no record. */
async function startAnyNameDns(): Promise<{ port: number; close(): void }> {
  const socket = createSocket("udp4");
  onTimeout(() => socket.close());
  socket.on("message", (query, peer) => {
    let end = 12;
    while (query[end] !== 0) end += query[end] + 1;
    const question = query.subarray(12, end + 5);
    const isA = query.readUInt16BE(end + 1) === 1;
    const header = Buffer.alloc(12);
    header.writeUInt16BE(query.readUInt16BE(0), 0);
    header.writeUInt16BE(0x8180, 2); // a response, recursion desired and available, no error
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(isA ? 1 : 0, 6);
    // The name by a pointer to the question's, class IN, 60 s, four bytes.
    const answer = isA ? Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]) : Buffer.alloc(0);
    socket.send(Buffer.concat([header, question, answer]), peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  return { port: socket.address().port, close: () => socket.close() };
}

test("docs: every balance command line in a code block of README.md and docs/ passes --check-config", async () => {
  const examples = servingExamples();
  assert.ok(
    examples.length >= 15,
    `found only ${examples.length} examples:\n${examples.map((e) => e.line).join("\n")}`,
  );
  // Host names in examples (web1, backup.internal) are not this machine's:
  // the test's DNS server resolves them all, so only a real mistake fails.
  const dns = await startAnyNameDns();
  const dir = mkdtempSync(join(tmpdir(), "balance-docs-"));
  try {
    const failures: string[] = [];
    const check = async ({ page, line, args }: Example, n: number) => {
      const files = documentedFiles(page);
      const words = args.map((w, i) => {
        if (!["-F", "--config"].includes(args[i - 1])) return w;
        const text = files.get(w);
        if (text === undefined) return w; // balance says the file is missing: a failure
        const copy = join(dir, `${n}.conf`);
        writeFileSync(copy, text);
        return copy;
      });
      // The last --resolver wins: every name goes to the test's server.
      const r = await runBalance(["--check-config", ...words, "--resolver", `127.0.0.1:${dns.port}`]);
      if (r.code !== 0 || r.stdout !== "" || r.stderr !== "") {
        failures.push(`${page}: ${line}\n  exit ${r.code}: ${(r.stderr + r.stdout).trim().split("\n")[0]}`);
      }
    };
    const queue = examples.map((e, n) => () => check(e, n));
    await Promise.all([1, 2, 3].map(async () => {
      for (let job = queue.shift(); job; job = queue.shift()) await job();
    }));
    assert.deepEqual(failures, [], "documented command lines that do not pass --check-config");
  } finally {
    dns.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("docs: the README's weight example sends a, b and c the connections its sentence says, in its order", async () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8").replace(/\s+/g, " ");
  const m = readme.match(
    /`balance (\S+) (a\S*) (b\S*) (c\S*)` sends, in every (\d+) connections, (\d+) to a and 1 each to b and c, interleaved as nginx's smooth weighted round robin does \(([abc ]+)\)/,
  );
  assert.ok(m, "the README states the weight example");
  const [, , a, b, c, every, toA, order] = m;
  const cycle = order.split(" ");
  assert.equal(cycle.length, Number(every));
  assert.equal(cycle.filter((x) => x === "a").length, Number(toA));

  // The example as written, its hosts on three loopback addresses and its
  // port one that is free on all of them: a channel without a port takes
  // the listen port.
  const port = await freePort();
  const backends: Backend[] = [];
  try {
    for (const [name, host] of [["a", "127.0.0.2"], ["b", "127.0.0.3"], ["c", "127.0.0.4"]]) {
      backends.push(await startBackend(name, undefined, host, port));
    }
    const channels = [a, b, c].map((word, i) => word.replace(/^[abc]/, backends[i].host));
    const lb = await startBalance(["-b", "127.0.0.1", String(port), ...channels], port);
    try {
      const answers: string[] = [];
      for (let i = 0; i < 2 * cycle.length; i++) answers.push(await whoAnswers(port));
      assert.deepEqual(answers, [...cycle, ...cycle], `balance ${port} ${channels.join(" ")}`);
    } finally {
      await lb.stop();
    }
  } finally {
    await Promise.all(backends.map((x) => x.close()));
  }
});
