import * as net from "node:net";
import { chmodSync, unlinkSync } from "node:fs";
import process from "node:process";
import { type CommandResult, type ControlContext, executeCommand } from "../core/control.ts";
import { ExitError } from "../core/exit_error.ts";
import { EX_OSERR } from "../core/sysexits.ts";
import { MAX_REQUEST_BYTES, parseRequest } from "./protocol.ts";

/** A running control channel. */
export interface ControlServer {
  address: string;
  /** Stops listening and removes the socket file. */
  close(): void;
}

/**
 * Makes sure no live balancer owns `address` and clears a stale socket left
 * by one that died (`kill -9`): a socket file nobody answers on is removed,
 * never obeyed; one that answers means another instance runs there, which
 * is an error (exit 71) rather than a takeover.
 *
 * @example
 * ```ts
 * await claimControlAddress("/run/balance/any-80.sock", 80);
 * ```
 */
export async function claimControlAddress(address: string, port: number): Promise<void> {
  if (await isAnswering(address)) {
    throw new ExitError(`another balance already runs on port ${port} (control socket ${address})`, EX_OSERR);
  }
  if (process.platform !== "win32") {
    try {
      unlinkSync(address);
    } catch { /* nothing stale there */ }
  }
}

/**
 * Whether a balancer answers on the control channel `address` (a socket file
 * left by a dead one does not).
 *
 * @example
 * ```ts
 * if (await isAnswering("/run/balance/any-80.sock")) console.log("running");
 * ```
 */
export function isAnswering(address: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(address);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
}

/**
 * Serves control commands on `address` (call {@link claimControlAddress}
 * first). Each line is one JSON request; anything else is answered with
 * `syntax error` and changes nothing. `kill` answers, then calls `onKill`.
 * After a command that changed the layout (`create`, `assign`) the answer
 * waits for `syncLayout`: once a client has the answer, every worker
 * connects to the new address.
 *
 * @example
 * ```ts
 * const server = await startControlServer(ctx, address, () => process.exit(0));
 * ```
 */
export function startControlServer(
  ctx: ControlContext,
  address: string,
  onKill: () => void,
  syncLayout?: () => Promise<void>,
): Promise<ControlServer> {
  const server = net.createServer((socket) => {
    socket.setEncoding("utf8");
    let buffered = "";
    // Answers go out in request order, each after its command took effect.
    let answered = Promise.resolve();
    socket.on("error", () => {});
    socket.on("data", (data: string) => {
      buffered += data;
      if (buffered.length > MAX_REQUEST_BYTES) return void socket.destroy();
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        answered = answered.then(async () => {
          const request = parseRequest(line);
          const { layoutChanged, ...answer }: CommandResult = request
            ? executeCommand(ctx, request.group, request.command)
            : { output: "syntax error", group: 0 };
          if (layoutChanged) await syncLayout?.();
          socket.write(`${JSON.stringify(answer)}\n`, () => {
            if (answer.kill) onKill();
          });
        }).catch((err) => {
          // A bug, not an answer: say so on this connection, keep serving others.
          socket.end(`${JSON.stringify({ output: `internal error: ${(err as Error).message}`, group: 0 })}\n`);
        });
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once(
      "error",
      (err) => reject(new ExitError(`cannot create control socket ${address}: ${err.message}`, EX_OSERR)),
    );
    server.listen(address, () => {
      // The directory already keeps others out; the mode says so too.
      if (process.platform !== "win32") chmodSync(address, 0o600);
      let closed = false;
      const close = () => {
        if (closed) return;
        closed = true;
        server.close();
        if (process.platform !== "win32") {
          try {
            unlinkSync(address);
          } catch { /* already gone */ }
        }
      };
      process.once("exit", close);
      resolve({ address, close });
    });
  });
}
