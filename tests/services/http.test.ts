/**
 * HTTP through balance to two real nginx servers, as docs/services.md
 * says: curl's requests alternate between them, each server learns the
 * real client from the PROXY v2 header (`$remote_addr`, by
 * `real_ip_header proxy_protocol`), and a `%` group keeps a client on one
 * server.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { withBalancer } from "../support/balance.ts";
import type { Daemon } from "../support/daemon.ts";
import { startNginx } from "../support/nginx.ts";
import { balanceArgs, missing, recipe, runClient, words } from "../support/services.ts";

const skip = missing({ nginx: "nginx-light", curl: "curl" });

/** Two nginx servers, `web1` and `web2`, each from the page's `server` block with its own port and name. */
async function withWebServers(fn: (web1: Daemon, web2: Daemon) => Promise<void>): Promise<void> {
  const start = (name: string) =>
    startNginx((port) =>
      recipe("http-nginx", { "10.0.0.1:8080": `127.0.0.1:${port}`, "10.0.0.10": "127.0.0.1", "web1": name })
    );
  const web1 = await start("web1");
  try {
    const web2 = await start("web2");
    try {
      await fn(web1, web2);
    } finally {
      await web2.stop();
    }
  } finally {
    await web1.stop();
  }
}

/** The page's balance line `name`, its port and servers replaced by the test's. */
function balanceLine(name: string, port: number, web1: Daemon, web2: Daemon): string[] {
  return balanceArgs(recipe(name, {
    "80": String(port),
    "10.0.0.1:8080": `127.0.0.1:${web1.port}`,
    "10.0.0.2:8080": `127.0.0.1:${web2.port}`,
  }));
}

/** The page's curl command against balance on `port`, from the client address `from`: the body. */
async function get(port: number, from: string): Promise<string> {
  const [curl, ...args] = words(recipe("http-client", { "10.0.0.10:80": `127.0.0.1:${port}` }));
  const r = await runClient(curl, ["-sS", "--max-time", "10", "--interface", from, ...args]);
  assert.equal(r.code, 0, `curl exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

test(
  "services http: curl's requests alternate between two nginx servers, each told the real client",
  { skip },
  () =>
    withWebServers((web1, web2) =>
      withBalancer({ args: ({ port }) => balanceLine("http-balance", port, web1, web2) }, async ({ port }) => {
        const bodies: string[] = [];
        for (let i = 0; i < 4; i++) bodies.push(await get(port, "127.0.0.9"));
        assert.ok(["web1", "web2"].includes(bodies[0].split(" ")[0]), bodies[0]);
        const other = bodies[0].startsWith("web1") ? "web2" : "web1";
        const first = bodies[0].split(" ")[0];
        assert.deepEqual(bodies, [first, other, first, other].map((w) => `${w} for 127.0.0.9\n`));
      })
    ),
);

test(
  "services http: a % group keeps each client on one nginx server",
  { skip, timeoutMs: 90_000 },
  () =>
    withWebServers((web1, web2) =>
      withBalancer({ args: ({ port }) => balanceLine("http-hash", port, web1, web2) }, async ({ port }) => {
        // 16 clients: that all land on one server has odds 2^-15.
        const servers = new Set<string>();
        for (let n = 20; n < 36; n++) {
          const client = `127.0.0.${n}`;
          const bodies = [await get(port, client), await get(port, client), await get(port, client)];
          const server = bodies[0].split(" ")[0];
          assert.deepEqual(bodies, Array(3).fill(`${server} for ${client}\n`), `client ${client}`);
          servers.add(server);
        }
        assert.deepEqual([...servers].sort(), ["web1", "web2"], "the clients are spread over both servers");
      })
    ),
);
