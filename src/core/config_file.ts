/**
 * Configuration files (`-F FILE`, `--config FILE`): a file of command-line
 * words, so that the file's language is the command line's and one man page
 * describes both. Pure: reading a file is the caller's.
 *
 * @module
 */
import { usageError } from "./exit_error.ts";
import { shown } from "./shown.ts";

/**
 * The words of a configuration file: whitespace separates them, lines do
 * not matter, a `#` that starts a word comments out the rest of its line
 * (a `#` inside a word, as in `--check-expect OK#1`, is a character), and
 * a word that must hold spaces (`--check-exec`'s command) is written in
 * double quotes, on one line. Throws an {@link ExitError} (exit 64) for a
 * quote left open.
 *
 * @example
 * ```ts
 * configWords('-t 3  # connect timeout\n--check-exec "/bin/check -q"\n80 10.0.0.1:8080\n');
 * // ["-t", "3", "--check-exec", "/bin/check -q", "80", "10.0.0.1:8080"]
 * ```
 */
export function configWords(text: string): string[] {
  const words: string[] = [];
  text.split(/\r?\n/).forEach((line, n) => {
    for (const [word] of line.matchAll(/"[^"]*"?|[^\s"]+/g)) {
      if (word.startsWith("#")) break;
      if (!word.startsWith('"')) words.push(word);
      else if (word.length > 1 && word.endsWith('"')) words.push(word.slice(1, -1));
      else throw usageError(`configuration file line ${n + 1}: a quote is not closed`);
    }
  });
  return words;
}

/** Reads a configuration file's text; throws an {@link ExitError} when it cannot. */
export type ConfigReader = (path: string) => string;

/**
 * A command line with every `-F FILE`, `--config FILE` and `--config=FILE`
 * replaced by FILE's words ({@link configWords}) where it stood, and the
 * files read, in order. A file may not name another (exit 64): one level
 * is all a reader of the file has to follow.
 *
 * @example
 * ```ts
 * const { argv, files } = expandConfigFiles(["-f", "-F", "web.conf"], () => "80 10.0.0.1:8080");
 * // argv: ["-f", "80", "10.0.0.1:8080"], files: ["web.conf"]
 * ```
 */
export function expandConfigFiles(argv: readonly string[], read: ConfigReader): { argv: string[]; files: string[] } {
  const out: string[] = [];
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const path = configPathAt(argv, i);
    if (path === undefined) {
      out.push(argv[i]);
      continue;
    }
    if (path.value === "") throw usageError(`option ${path.flag} needs a file`);
    const words = configWords(read(path.value));
    const nested = words.findIndex((_, w) => configPathAt(words, w) !== undefined);
    if (nested >= 0) {
      throw usageError(
        `configuration file '${shown(path.value)}' names another (${shown(words[nested])}): not allowed`,
      );
    }
    out.push(...words);
    files.push(path.value);
    i += path.consumed - 1;
  }
  return { argv: out, files };
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
