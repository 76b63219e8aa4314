/**
 * nginx (Debian `nginx-light`) as a channel: any `server` blocks, or one
 * that requires the PROXY protocol and answers with what the header told it.
 *
 * @module
 */
import { type Daemon, startDaemon } from "./daemon.ts";
import { findProgram } from "./netns.ts";

/** Where Debian installs nginx, when it is installed. */
export const NGINX = findProgram("nginx");

/**
 * Starts nginx on a free port of 127.0.0.1 with `listen … proxy_protocol`,
 * answering every request `200` with the body
 * `$proxy_protocol_addr $proxy_protocol_port $proxy_protocol_server_addr $proxy_protocol_server_port\n`.
 * One process (`master_process off`), so nothing changes user when run as
 * root; pid file, logs and temp files in its own directory.
 *
 * @example
 * ```ts
 * const nginx = await startProxyProtocolNginx();
 * try { ... } finally { await nginx.stop(); }
 * ```
 */
export function startProxyProtocolNginx(): Promise<Daemon> {
  return startNginx((port) => `
  server {
    listen 127.0.0.1:${port} proxy_protocol;
    default_type text/plain;
    return 200 "$proxy_protocol_addr $proxy_protocol_port $proxy_protocol_server_addr $proxy_protocol_server_port\\n";
  }`);
}

/**
 * Starts nginx on a free port of 127.0.0.1 with the `server` blocks that
 * `servers(port)` returns inside its `http` block (which must listen on
 * 127.0.0.1:`port`). One process (`master_process off`), so nothing changes
 * user when run as root; pid file, logs and temp files in its own directory.
 *
 * @example
 * ```ts
 * const web = await startNginx((port) => `server { listen 127.0.0.1:${port}; return 200 "web1\n"; }`);
 * try { ... } finally { await web.stop(); }
 * ```
 */
export function startNginx(servers: (port: number) => string): Promise<Daemon> {
  if (!NGINX) throw new Error("nginx is not installed");
  return startDaemon({
    name: "nginx",
    program: NGINX,
    files: (dir, port) => ({
      "nginx.conf": `
daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 1024; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  default_type text/plain;
${servers(port)}
}
`,
    }),
    // -e: the log nginx opens before it has read its configuration.
    args: (dir) => ["-p", dir, "-e", `${dir}/error.log`, "-c", `${dir}/nginx.conf`],
  });
}
