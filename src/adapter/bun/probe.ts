/**
 * Health checks under Bun: a plain connect check (`--check` alone, the one
 * that runs for every channel of a large balancer, or with bytes to send and
 * none to expect: a PROXY header) through `Bun.connect`, which costs a third
 * of the CPU of `node:net`'s; checks that expect a reply or run a program
 * use the shared ones.
 *
 * @module
 */
/// <reference types="bun-types" />
import type { Probe } from "../../core/health/health_checker.ts";
import { deadlines, makeProbe as sharedProbe, type ProbeOptions } from "../probe.ts";
import { errorText } from "../../core/util/errors.ts";

/**
 * The most a native check sends: bytes a new connection's empty send buffer
 * takes whole in one write (a PROXY header, a short request).
 */
const NATIVE_SEND_MAX = 4096;

/**
 * The probe `options` ask for, native when it only connects.
 *
 * @example
 * ```ts
 * await makeProbe({ timeout: 2 })({ address: "127.0.0.1", port: 80, group: 0, channel: 0 });
 * ```
 */
export function makeProbe(options: ProbeOptions): Probe {
  const shared = sharedProbe(options);
  if (options.exec || options.datagram || options.expect || (options.send?.length ?? 0) > NATIVE_SEND_MAX) {
    return shared;
  }
  const { timeout, sourceAddress, send } = options;
  // A Bun.connect cannot be cancelled: one that timed out (a host that drops
  // SYNs) goes on until the kernel gives up, minutes later. While one is
  // pending for a channel, its checks use node:net, which closes at the
  // timeout, so that abandoned connects never pile up.
  const abandoned = new Set<string>();
  return (target) => {
    const key = `${target.address} ${target.port}`;
    if (abandoned.has(key)) return shared(target);
    return new Promise((resolve) => {
      let settled = false;
      const done = (ok: boolean, reason: string) => {
        if (settled) return;
        settled = true;
        deadlines.cancel(expire);
        resolve({ ok, reason });
      };
      const expire = () => {
        abandoned.add(key);
        done(false, `connect timed out after ${timeout}s`);
      };
      deadlines.schedule(expire, Date.now() + timeout * 1000);
      Bun.connect({
        hostname: target.address,
        port: target.port,
        // Not in Bun's published types, but honoured by Bun.connect: -B.
        ...(sourceAddress ? { localAddress: sourceAddress } : {}),
        socket: {
          open(socket) {
            if (!send) {
              socket.terminate();
              return done(true, "connected");
            }
            // A few bytes on a new connection: the kernel takes them whole.
            const sent = socket.write(send) === send.length;
            socket.end();
            done(sent, sent ? "connected and sent" : "send failed");
          },
          data() {},
          error() {},
          connectError(_, err) {
            done(false, errorText(err));
          },
        },
      }).then(
        // Settled at last (`open` closed it if late): the channel may use Bun.connect again.
        () => abandoned.delete(key),
        (err) => {
          abandoned.delete(key);
          done(false, errorText(err));
        },
      );
    });
  };
}
