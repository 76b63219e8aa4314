/**
 * HAProxy (Debian package) in TCP mode in front of a server, sending it
 * the PROXY protocol.
 *
 * @module
 */
import { type Daemon, startDaemon } from "./daemon.ts";
import { findProgram } from "./netns.ts";

/** Where Debian installs HAProxy, when it is installed. */
export const HAPROXY = findProgram("haproxy");

/**
 * Starts HAProxy (`mode tcp`, foreground, one process) on a free port of
 * 127.0.0.1, forwarding every connection to 127.0.0.1:`serverPort` with
 * `send` (`send-proxy` for v1, `send-proxy-v2`) on the server line.
 *
 * @example
 * ```ts
 * const haproxy = await startProxyProtocolHaproxy(balancePort, "send-proxy-v2");
 * try { ... } finally { await haproxy.stop(); }
 * ```
 */
export function startProxyProtocolHaproxy(serverPort: number, send: "send-proxy" | "send-proxy-v2"): Promise<Daemon> {
  if (!HAPROXY) throw new Error("haproxy is not installed");
  return startDaemon({
    name: "haproxy",
    program: HAPROXY,
    files: (dir, port) => ({
      "haproxy.cfg": `
global
  pidfile ${dir}/haproxy.pid
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend front
  bind 127.0.0.1:${port}
  default_backend balance
backend balance
  server balance 127.0.0.1:${serverPort} ${send}
`,
    }),
    // -db: foreground, no daemon, no master process.
    args: (dir) => ["-db", "-f", `${dir}/haproxy.cfg`],
  });
}
