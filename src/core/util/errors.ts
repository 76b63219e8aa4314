/**
 * System errors in the words a log reader knows (`connection refused`), the
 * same on every runtime: Bun says `Failed to connect`, Deno `Connection
 * refused (os error 111)` and node `connect ECONNREFUSED 127.0.0.1:80` for
 * one refusal, but all three carry the errno's name in `code`.
 *
 * @module
 */
import { ExitError } from "./exit_error.ts";
import { EX_NOPERM, EX_OSERR } from "./sysexits.ts";

const ERROR_WORDS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ETIMEDOUT: "timed out",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "address not available",
  ENOENT: "no such file",
  EACCES: "permission denied",
  EPERM: "permission denied",
};

/**
 * What an error means: the words for its errno when it carries one, else
 * its message (a timeout balance made itself says `timed out after 5s`).
 *
 * @example
 * ```ts
 * errorText(Object.assign(new Error("Failed to connect"), { code: "ECONNREFUSED" })); // "connection refused"
 * errorText(new Error("connect timed out after 5s")); // "connect timed out after 5s"
 * ```
 */
export function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  return (typeof code === "string" && ERROR_WORDS[code]) || err.message;
}

/**
 * The exit of a listener (for `purpose`, if it is not the balancer's own)
 * that cannot listen on `where`: one line in words, EX_NOPERM when it is not
 * allowed to (a privileged port), else EX_OSERR.
 *
 * @example
 * ```ts
 * throw listenError(err, "0.0.0.0:80"); // balance: cannot listen on 0.0.0.0:80: address already in use
 * throw listenError(err, "127.0.0.1:8421", "metrics"); // balance: cannot listen for metrics on 127.0.0.1:8421: …
 * ```
 */
export function listenError(err: unknown, where: string, purpose?: string): ExitError {
  const code = (err as { code?: unknown }).code;
  const status = code === "EACCES" || code === "EPERM" ? EX_NOPERM : EX_OSERR;
  return new ExitError(`cannot listen${purpose ? ` for ${purpose}` : ""} on ${where}: ${errorText(err)}`, status);
}
