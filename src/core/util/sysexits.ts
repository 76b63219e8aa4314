/**
 * Exit codes from BSD `sysexits.h`, which balance 3.54 used and scripts test for.
 *
 * @example
 * ```ts
 * import { EX_USAGE } from "./sysexits.ts";
 * if (badArguments) process.exit(EX_USAGE);
 * ```
 */
export const EX_OK = 0;
/** The command line was wrong: unknown option, bad port, bad channel. */
export const EX_USAGE = 64;
/** The input data was wrong: a control command answered with an error. */
export const EX_DATAERR = 65;
/** An input file (`-F`) does not exist or cannot be read. */
export const EX_NOINPUT = 66;
/** A host name could not be resolved. */
export const EX_NOHOST = 68;
/** A service is unavailable: no instance answers on a control channel. */
export const EX_UNAVAILABLE = 69;
/** An internal software error: a bug, never the user's fault. */
export const EX_SOFTWARE = 70;
/** The operating system refused something: bind failed, address in use. */
export const EX_OSERR = 71;
/** An output file cannot be created: `--log-file` that cannot be opened. */
export const EX_CANTCREAT = 73;
/** Permission denied: a privileged port without the privilege. */
export const EX_NOPERM = 77;
