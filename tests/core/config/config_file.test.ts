import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import fc from "fast-check";
import { configWords, ExitError, expandConfigFiles, located, usageError } from "../../../src/core/mod.ts";

const words = (text: string) => configWords(text, "web.conf").map((w) => w.word);

test("config file: words over lines, '#' that starts a word comments out the rest of its line", () => {
  assert.deepEqual(
    words(
      "# web\n-t 3 --grace 30\n\t80\r\n10.0.0.1:8080:256:3   10.0.0.2:8080  # weights 3:1\n!\nbackup:8080#x\n",
    ),
    ["-t", "3", "--grace", "30", "80", "10.0.0.1:8080:256:3", "10.0.0.2:8080", "!", "backup:8080#x"],
  );
  assert.deepEqual(words(""), []);
  assert.deepEqual(words("#only a comment\n   \n"), []);
  assert.deepEqual(words("--check-expect OK#1 #comment"), ["--check-expect", "OK#1"]);
  assert.deepEqual(configWords("# web\n\n-t 3\n 80", "web.conf"), [
    { word: "-t", where: "web.conf:3" },
    { word: "3", where: "web.conf:3" },
    { word: "80", where: "web.conf:4" },
  ]);
});

test("config file: an error blamed on a word from a file names FILE:LINE; others stay as they are", () => {
  const { argv, origins } = expandConfigFiles(["-f", "-F", "a.conf"], () => "80\n\n--bogus h1");
  assert.deepEqual(argv, ["-f", "80", "--bogus", "h1"]);
  assert.deepEqual(origins, [undefined, "a.conf:1", "a.conf:3", "a.conf:3"]);
  const message = (err: unknown) => (err as ExitError).message;
  assert.equal(
    message(located(usageError("unknown option '--bogus'").at(2), origins)),
    "a.conf:3: unknown option '--bogus'",
  );
  assert.equal(message(located(usageError("unknown option '-f'").at(0), origins)), "unknown option '-f'");
  assert.equal(message(located(usageError("missing port"), origins)), "missing port");
  assert.equal((located(usageError("x").at(1), origins) as ExitError).exitCode, 64);
});

test("config file: -F FILE, --config FILE and --config=FILE stand for the file's words where they appear", () => {
  const files: Record<string, string> = { "a.conf": "-t 3\n80 h1:81", "b.conf": "% h2:82" };
  const read = (path: string) => files[path];
  assert.deepEqual(expandConfigFiles(["-f", "-F", "a.conf", "-d"], read), {
    argv: ["-f", "-t", "3", "80", "h1:81", "-d"],
    files: ["a.conf"],
    origins: [undefined, "a.conf:1", "a.conf:1", "a.conf:2", "a.conf:2", undefined],
  });
  assert.deepEqual(expandConfigFiles(["--config", "a.conf", "--config=b.conf"], read).argv, [
    "-t",
    "3",
    "80",
    "h1:81",
    "%",
    "h2:82",
  ]);
  assert.deepEqual(expandConfigFiles(["-f", "80", "h:1"], read), {
    argv: ["-f", "80", "h:1"],
    files: [],
    origins: [undefined, undefined, undefined],
  });
});

test("config file: a missing file name or a file naming another exits 64 with one line", () => {
  const read = (path: string) => (path === "outer.conf" ? "-t 3\n-F inner.conf" : "80");
  for (
    const [argv, message] of [
      [["-F"], "option -F needs a file"],
      [["--config="], "option --config needs a file"],
      [["-F", "outer.conf"], "outer.conf:2: a configuration file may not name another (-F)"],
    ] as const
  ) {
    assert.throws(() => expandConfigFiles(argv, read), (err) => {
      assert.ok(err instanceof ExitError);
      assert.equal(err.exitCode, 64);
      assert.equal(err.message, message);
      return true;
    });
  }
});

test("config file: any command line written one word a line, or all on one, reads back the same", () => {
  const word = fc.stringMatching(/^[^\s#"][^\s"]*$/).filter((w) => !/^(-F|--config(=.*)?)$/.test(w));
  fc.assert(fc.property(fc.array(word, { maxLength: 20 }), (words) => {
    assert.deepEqual(configWords(words.join("\n"), "x").map((w) => w.word), words);
    assert.deepEqual(configWords(`# comment\n${words.join(" ")} # end`, "x").map((w) => w.word), words);
    assert.deepEqual(expandConfigFiles(["-F", "x"], () => words.join("\n")).argv, words);
  }));
});

test("config file: a double-quoted word holds spaces; an open quote exits 64 naming the line", () => {
  assert.deepEqual(words('--check-exec "/usr/lib/check -H web1" 80\n"" x'), [
    "--check-exec",
    "/usr/lib/check -H web1",
    "80",
    "",
    "x",
  ]);
  assert.throws(
    () => configWords('-t 3\n--check-exec "/bin/check -q\n80', "web.conf"),
    /^ExitError: web.conf:2: a quote is not closed$/,
  );
});
