/**
 * Configuration files (`-F FILE`, `--config FILE`): a file of command-line
 * words, so that the file's language is the command line's and one man page
 * describes both. Pure: reading a file is the caller's.
 *
 * @module
 */
import { ExitError, usageError } from "../util/exit_error.ts";
import { shown } from "../util/shown.ts";

/** A word of a configuration file and where it stands, `FILE:LINE`. */
export interface ConfigWord {
  word: string;
  where: string;
}

/**
 * The words of configuration file `path`: whitespace separates them, lines
 * do not matter, a `#` that starts a word comments out the rest of its line
 * (a `#` inside a word, as in `--check-expect OK#1`, is a character), and
 * a word that must hold spaces (`--check-exec`'s command) is written in
 * double quotes, on one line. Throws an {@link ExitError} (exit 64) for a
 * quote left open.
 *
 * @example
 * ```ts
 * configWords('-t 3  # connect timeout\n--check-exec "/bin/check -q"\n', "web.conf").map((w) => w.word);
 * // ["-t", "3", "--check-exec", "/bin/check -q"]; the last two are at "web.conf:2"
 * ```
 */
export function configWords(text: string, path: string): ConfigWord[] {
  const words: ConfigWord[] = [];
  text.split(/\r?\n/).forEach((line, n) => {
    const where = `${shown(path)}:${n + 1}`;
    for (const [word] of line.matchAll(/"[^"]*"?|[^\s"]+/g)) {
      if (word.startsWith("#")) break;
      if (!word.startsWith('"')) words.push({ word, where });
      else if (word.length > 1 && word.endsWith('"')) words.push({ word: word.slice(1, -1), where });
      else throw usageError(`${where}: a quote is not closed`);
    }
  });
  return words;
}

/** Reads a configuration file's text; throws an {@link ExitError} when it cannot. */
export type ConfigReader = (path: string) => string;

/**
 * A command line with every `-F FILE`, `--config FILE` and `--config=FILE`
 * replaced by FILE's words ({@link configWords}) where it stood, the files
 * read, in order, and where each word came from (`FILE:LINE`, undefined for
 * the command line's own), for {@link located}. A file may not name another
 * (exit 64): one level is all a reader of the file has to follow.
 *
 * @example
 * ```ts
 * const { argv, files, origins } = expandConfigFiles(["-f", "-F", "web.conf"], () => "80 10.0.0.1:8080");
 * // argv: ["-f", "80", "10.0.0.1:8080"], files: ["web.conf"], origins: [undefined, "web.conf:1", "web.conf:1"]
 * ```
 */
export function expandConfigFiles(
  argv: readonly string[],
  read: ConfigReader,
): { argv: string[]; files: string[]; origins: (string | undefined)[] } {
  const out: string[] = [];
  const files: string[] = [];
  const origins: (string | undefined)[] = [];
  for (let i = 0; i < argv.length; i++) {
    const path = configPathAt(argv, i);
    if (path === undefined) {
      out.push(argv[i]);
      origins.push(undefined);
      continue;
    }
    if (path.value === "") throw usageError(`option ${path.flag} needs a file`);
    const words = configWords(read(path.value), path.value);
    const texts = words.map((w) => w.word);
    const nested = texts.findIndex((_, w) => configPathAt(texts, w) !== undefined);
    if (nested >= 0) {
      throw usageError(`${words[nested].where}: a configuration file may not name another (${shown(texts[nested])})`);
    }
    out.push(...texts);
    origins.push(...words.map((w) => w.where));
    files.push(path.value);
    i += path.consumed - 1;
  }
  return { argv: out, files, origins };
}

/**
 * `err` with the place of the word it blames in front, `FILE:LINE: `, as
 * `nginx -t` writes it, when that word came from a file; anything else as
 * it is.
 *
 * @example
 * ```ts
 * located(usageError("unknown option '--bogus'").at(1), [undefined, "web.conf:3"]);
 * // ExitError "web.conf:3: unknown option '--bogus'"
 * ```
 */
export function located(err: unknown, origins: readonly (string | undefined)[]): unknown {
  if (!(err instanceof ExitError) || err.word === undefined || origins[err.word] === undefined) return err;
  return new ExitError(`${origins[err.word]}: ${err.message}`, err.exitCode, err.tryHelp);
}
// The configuration file option at argv[i], if one stands there.
function configPathAt(
  argv: readonly string[],
  i: number,
): { flag: string; value: string; consumed: number } | undefined {
  const word = argv[i];
  if (word === "-F" || word === "--config") return { flag: word, value: argv[i + 1] ?? "", consumed: 2 };
  if (word.startsWith("--config=")) return { flag: "--config", value: word.slice("--config=".length), consumed: 1 };
  return undefined;
}
