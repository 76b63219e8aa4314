/**
 * Verifiable traffic for relay tests: random bytes out, digests of what
 * arrives in.
 *
 * @module
 */
import { createHash, randomBytes } from "node:crypto";
import type * as net from "node:net";
import { within } from "./wait.ts";
import { sleep } from "./helpers.ts";

/**
 * Writes `total` random bytes in random-sized chunks (up to `maxChunk`),
 * honouring backpressure, with an occasional short pause when `pauses`;
 * resolves to the SHA-256 of what was written.
 *
 * @example
 * ```ts
 * const digest = await sendRandom(socket, 16 << 20, { pauses: true });
 * ```
 */
export async function sendRandom(
  socket: net.Socket,
  total: number,
  { maxChunk = 65536, pauses = false } = {},
): Promise<string> {
  const hash = createHash("sha256");
  let left = total;
  while (left > 0) {
    const chunk = randomBytes(Math.min(left, 1 + Math.floor(Math.random() * maxChunk)));
    hash.update(chunk);
    left -= chunk.length;
    if (!socket.write(chunk)) await new Promise((r) => socket.once("drain", r));
    if (pauses && Math.random() < 0.01) await sleep(Math.random() * 20);
  }
  return hash.digest("hex");
}

/**
 * Hashes everything `socket` receives until its end (a FIN); resolves to
 * [bytes, SHA-256]. Rejects, saying how many bytes arrived, when the
 * connection closes without a FIN (a reset) or no FIN came within `ms`.
 *
 * @example
 * ```ts
 * const [n, digest] = await receiveAll(socket);
 * ```
 */
export function receiveAll(socket: net.Socket, ms = 20_000): Promise<[number, string]> {
  const hash = createHash("sha256");
  let n = 0;
  let error: Error | undefined;
  socket.on("data", (d: Buffer) => {
    n += d.length;
    hash.update(d);
  });
  socket.on("error", (err) => (error = err));
  const ended = new Promise<[number, string]>((resolve, reject) => {
    socket.on("end", () => resolve([n, hash.digest("hex")]));
    socket.on("close", () => reject(new Error(`closed without FIN (${error?.message ?? "reset"}) after ${n} bytes`)));
  });
  return within(ended, ms, () => `a FIN (${n} bytes received so far)`);
}
