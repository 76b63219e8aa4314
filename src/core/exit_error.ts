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
  ) {
    super(message);
    this.name = "ExitError";
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
