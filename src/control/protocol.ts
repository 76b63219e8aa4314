/**
 * The control protocol between `balance -c`/`-i` and a running balancer:
 * one JSON object per line each way. The client keeps the current group
 * and sends it with every command, so the server holds no session state.
 *
 * @module
 */

/** A command from a control client. */
export interface ControlRequest {
  group: number;
  command: string;
}

/** The balancer's answer (see `CommandResult` in the core). */
export interface ControlResponse {
  output: string;
  group: number;
  quit?: boolean;
  kill?: boolean;
  /** The answer is an error: `-c` exits 65. */
  error?: boolean;
}

/**
 * The one request that is not a command: who is this instance? Sent by
 * `balance --list` and by `-c` looking for the instance it did not find.
 */
export const INFO_REQUEST = '{"info":true}';

/** The answer to {@link INFO_REQUEST}. */
export interface InstanceInfo {
  pid: number;
  port: number;
  /** The `-b` address as given (it names the control socket), or null without `-b`. */
  bind: string | null;
}

/** Longest request line accepted; anything longer ends the connection. */
export const MAX_REQUEST_BYTES = 64 * 1024;

/**
 * Parses a request line; `undefined` for anything that is not exactly a
 * request, so that garbage can never act as a command.
 *
 * @example
 * ```ts
 * parseRequest('{"group":0,"command":"show"}'); // { group: 0, command: "show" }
 * ```
 */
export function parseRequest(line: string): ControlRequest | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const { group, command } = value as Record<string, unknown>;
  if (!Number.isSafeInteger(group) || (group as number) < 0 || typeof command !== "string") return undefined;
  return { group: group as number, command };
}
