import { EX_USAGE } from "./sysexits.ts";

/**
 * An error that ends the program with one clear line and a sysexits code,
 * never a stack trace. `tryHelp` asks the caller to point at `--help` on a
 * second line, as GNU tools do: the whole usage would scroll the error away.
 *
 * @example
 * ```ts
 * throw new ExitError("invalid port 'http0'", EX_USAGE, true);
 * ```
 */
export class ExitError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EX_USAGE,
    readonly tryHelp = false,
    /** The index of the word at fault among the words being parsed, so that a caller can say where it came from. */
    readonly word?: number,
  ) {
    super(message);
    this.name = "ExitError";
  }

  /**
   * This error, blamed on `word` instead.
   *
   * @example
   * ```ts
   * throw usageError("no channel given").at(3);
   * ```
   */
  at(word: number | undefined): ExitError {
    return new ExitError(this.message, this.exitCode, this.tryHelp, word);
  }
}

/**
 * Runs `fn`, and blames an {@link ExitError} it throws on `word` when it
 * blames no word yet.
 *
 * @example
 * ```ts
 * const timeout = blaming(2, () => parseCount(argv[2], "connect timeout (-t)"));
 * ```
 */
export function blaming<T>(word: number | undefined, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw err instanceof ExitError && err.word === undefined ? err.at(word) : err;
  }
}

/**
 * A command-line mistake: exit 64 and a pointer to `--help`.
 *
 * @example
 * ```ts
 * throw usageError("connect timeout must be at least 1 second");
 * ```
 */
export function usageError(message: string): ExitError {
  return new ExitError(message, EX_USAGE, true);
}
