import * as net from "node:net";
import * as readline from "node:readline";
import process from "node:process";
import { ExitError } from "../core/util/exit_error.ts";
import { EX_DATAERR, EX_NOPERM, EX_OK, EX_UNAVAILABLE } from "../core/util/sysexits.ts";
import { noInstanceMessage } from "./instances.ts";
import type { ControlResponse } from "./protocol.ts";

/**
 * A connection to a running balancer's control channel.
 *
 * @example
 * ```ts
 * const control = await ControlClient.connect(address, 80);
 * console.log((await control.send(0, "show")).output);
 * control.close();
 * ```
 */
export class ControlClient {
  #lines: AsyncIterator<string>;

  private constructor(private readonly socket: net.Socket) {
    this.#lines = readline.createInterface({ input: socket, crlfDelay: Infinity })[Symbol.asyncIterator]();
  }

  /**
   * Connects, or throws an ExitError: 69 when no instance runs there (naming
   * those that do run), 77 when it is not ours.
   */
  static async connect(address: string, port: number): Promise<ControlClient> {
    const socket = net.connect(address);
    const error = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      socket.once("connect", () => resolve(undefined));
      socket.once("error", resolve);
    });
    if (error === undefined) {
      socket.removeAllListeners("error");
      socket.on("error", () => {});
      return new ControlClient(socket);
    }
    if (error.code === "EACCES" || error.code === "EPERM") {
      throw new ExitError(`permission denied: the balance instance on port ${port} belongs to another user`, EX_NOPERM);
    }
    throw new ExitError(await noInstanceMessage(port, address), EX_UNAVAILABLE);
  }

  /** Sends one command with `group` as the current group and waits for the answer. */
  async send(group: number, command: string): Promise<ControlResponse> {
    this.socket.write(`${JSON.stringify({ group, command })}\n`);
    const next = await this.#lines.next();
    if (next.done) throw new ExitError("the balance instance closed the control connection", EX_UNAVAILABLE);
    return JSON.parse(next.value) as ControlResponse;
  }

  close(): void {
    this.socket.end();
  }
}

/**
 * `balance -c CMD port`: one command against group 0, its answer on stdout
 * word for word; exit 0 when the command succeeded, 65 when the answer is
 * an error (`syntax error`, `no such channel 7`, …), so scripts can tell.
 *
 * @example
 * ```ts
 * process.exitCode = await runControlCommand(address, 80, "show");
 * ```
 */
export async function runControlCommand(address: string, port: number, command: string): Promise<number> {
  const client = await ControlClient.connect(address, port);
  try {
    const { output, error } = await client.send(0, command);
    if (output !== "") process.stdout.write(`${output}\n`);
    return error ? EX_DATAERR : EX_OK;
  } finally {
    client.close();
  }
}

/**
 * `balance -i port`: the control shell. On a terminal it prompts
 * `balance[G] ` with line editing and history (node:readline); from a pipe
 * it reads plain lines and prints only the answers, so scripts can drive it.
 * `quit`, `kill` or end of input leaves.
 *
 * @example
 * ```ts
 * process.exitCode = await runControlShell(address, 80);
 * ```
 */
export async function runControlShell(address: string, port: number): Promise<number> {
  const client = await ControlClient.connect(address, port);
  const terminal = Boolean(process.stdin.isTTY);
  const rl = readline.createInterface({
    input: process.stdin,
    output: terminal ? process.stdout : undefined,
    terminal,
    historySize: 200,
  });
  let group = 0;
  const prompt = () => {
    if (!terminal) return;
    rl.setPrompt(`balance[${group}] `);
    rl.prompt();
  };
  try {
    prompt();
    for await (const line of rl) {
      const response = await client.send(group, line);
      group = response.group;
      if (response.output !== "") process.stdout.write(`${response.output}\n`);
      if (response.quit || response.kill) break;
      prompt();
    }
  } finally {
    rl.close();
    client.close();
  }
  return EX_OK;
}
