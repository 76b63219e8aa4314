import { EX_USAGE } from "./sysexits.ts";

/**
 * An error that ends the program with one clear line and a sysexits code,
 * never a stack trace. `showUsage` asks the caller to print the usage text too.
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
    readonly showUsage = false,
  ) {
    super(message);
    this.name = "ExitError";
  }
}

/**
 * A command-line mistake: exit 64 and show the usage, as balance 3.54 did.
 *
 * @example
 * ```ts
 * throw usageError("connect timeout must be at least 1 second");
 * ```
 */
export function usageError(message: string): ExitError {
  return new ExitError(message, EX_USAGE, true);
}
