import * as net from "node:net";
import { chmodSync, unlinkSync } from "node:fs";
import process from "node:process";
import { commandHost, type CommandResult, type ControlContext, executeCommand } from "../core/commands/control.ts";
import { ExitError } from "../core/util/exit_error.ts";
import { EX_OSERR } from "../core/util/sysexits.ts";
import { type ControlResponse, INFO_REQUEST, type InstanceInfo, MAX_REQUEST_BYTES, parseRequest } from "./protocol.ts";

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

/** What {@link startControlServer} needs besides the core's context. */
export interface ControlServerOptions {
  /** Called once the answer to `kill` is out. */
  onKill: () => void;
  /** After `create`/`assign`: resolves once every worker has the new layout. */
  syncLayout?: () => Promise<void>;
  /** Carries out `reload`: reads the configuration again and applies it; answers `reloaded` or why not. */
  reload: () => Promise<{ output: string; error?: boolean }>;
  /** Resolves the host of `create`/`assign` to an address; `undefined` if it cannot. */
  resolveHost: (host: string) => Promise<string | undefined>;
  /** Who this instance is, for {@link INFO_REQUEST} (the pid is added). */
  info: Omit<InstanceInfo, "pid">;
}

/**
 * Serves control commands on `address` (call {@link claimControlAddress}
 * first). Each line is one JSON request; anything else is answered with
 * `syntax error` and changes nothing. `kill` answers, then calls `onKill`;
 * `reload` calls `reload` and answers what it answered.
 * The host of `create`/`assign` is resolved first, so names work as on the
 * command line. After a command that changed the layout (`create`,
 * `assign`) the answer waits for `syncLayout`: once a client has the
 * answer, every worker connects to the new address.
 *
 * @example
 * ```ts
 * const server = await startControlServer(ctx, address, {
 *   onKill: () => process.exit(0),
 *   reload: async () => ({ output: "reloaded" }),
 *   resolveHost: async (host) => (await lookup(host)).address,
 *   info: { port: 80, bind: null },
 * });
 * ```
 */
export function startControlServer(
  ctx: ControlContext,
  address: string,
  options: ControlServerOptions,
): Promise<ControlServer> {
  const info: InstanceInfo = { pid: process.pid, ...options.info };
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
          if (line === INFO_REQUEST) return void socket.write(`${JSON.stringify(info)}\n`);
          const request = parseRequest(line);
          const host = request && commandHost(request.command);
          const hostAddress = host === undefined ? undefined : await options.resolveHost(host);
          const result: CommandResult = request
            ? executeCommand(ctx, request.group, request.command, hostAddress)
            : { output: "syntax error", group: 0, error: true };
          const answer = await carryOut(result, options);
          socket.write(`${JSON.stringify(answer)}\n`, () => {
            if (answer.kill) options.onKill();
          });
        }).catch((err) => {
          // A bug, not an answer: say so on this connection, keep serving others.
          socket.end(
            `${JSON.stringify({ output: `internal error: ${(err as Error).message}`, group: 0, error: true })}\n`,
          );
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
      // Owner-only by itself: the directory may be shared (/run/balance holds the systemd instances').
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

// The effects the core leaves to the application that come before the
// answer; `kill`'s comes after it, once the answer is out.
async function carryOut(result: CommandResult, options: ControlServerOptions): Promise<ControlResponse> {
  const { layoutChanged, reload, ...answer } = result;
  if (reload) return { ...answer, ...(await options.reload()) };
  if (layoutChanged) await options.syncLayout?.();
  return answer;
}
