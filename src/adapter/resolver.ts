import { lookup, Resolver } from "node:dns/promises";
import { formatHostPort } from "../core/model/balancer.ts";
import { errorText } from "../core/util/errors.ts";
import type { NameResolver, Resolution } from "../core/dns/name_watch.ts";

/** How long one DNS question to a `--resolver` server may take, and how often it is asked. */
const QUERY_TIMEOUT_MS = 2000;
const QUERY_TRIES = 2;
/** Answers saying the name has no such records (as opposed to no answer). */
const NO_RECORDS = new Set(["ENODATA", "ENOTFOUND"]);

/**
 * The resolver balance asks for host names: the system's (`getaddrinfo`:
 * `/etc/hosts`, then DNS as `nsswitch.conf` says) without `server`, or the
 * DNS server `server` (`--resolver`) alone, asked for A records first and
 * AAAA records when there are none. Either way a name with several
 * addresses gives the first. Works the same under Deno and Bun, both of
 * which honour a server's port in `setServers`.
 *
 * @example
 * ```ts
 * const resolve = makeResolver({ host: "127.0.0.1", port: 8600 }); // Consul's DNS
 * await resolve("web.service.consul"); // { address: "10.0.0.7" }
 * ```
 */
export function makeResolver(server?: { host: string; port: number }): NameResolver {
  if (!server) return (host) => settle(async () => (await lookup(host)).address);
  const resolver = new Resolver({ timeout: QUERY_TIMEOUT_MS, tries: QUERY_TRIES });
  resolver.setServers([formatHostPort(server.host, server.port)]);
  return (host) =>
    settle(async () => {
      // Only a name without A records is asked for AAAA: a server that
      // does not answer would otherwise cost twice the time.
      const v4 = await resolver.resolve4(host).catch((err) => {
        if (NO_RECORDS.has((err as { code?: string }).code ?? "")) return [];
        throw err;
      });
      return v4[0] ?? (await resolver.resolve6(host))[0];
    });
}

async function settle(ask: () => Promise<string | undefined>): Promise<Resolution> {
  try {
    const address = await ask();
    return address === undefined ? { error: "no address" } : { address };
  } catch (err) {
    return { error: (err as { code?: string }).code ?? errorText(err) };
  }
}
