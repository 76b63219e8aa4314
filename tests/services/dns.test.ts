/**
 * DNS through balance to two real dnsmasq servers, as docs/services.md
 * says: `dig` gets its answer through balance over UDP and over TCP, and
 * successive queries alternate between the servers (each answers a
 * different address for the same name).
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { withBalancer } from "../support/balance.ts";
import { balanceArgs, missing, recipe, runClient, words } from "../support/services.ts";
import { startDnsmasq } from "../support/dnsmasq.ts";

const skip = missing({ dnsmasq: "dnsmasq-base", dig: "dnsutils" });

/** Which server answered which address for the name of the page's dig command. */
const ANSWERS = { "192.0.2.1": "ns1", "192.0.2.2": "ns2" } as Record<string, string>;

test(
  "services dns: dig over UDP and over TCP through balance --udp gets answers from two dnsmasq servers, alternating",
  { skip },
  async () => {
    const [dig, ...digArgs] = words(recipe("dns-client", { "@10.0.0.10": "@127.0.0.1" }));
    const name = digArgs.find((w) => w.endsWith(".test"))!;
    const ns1 = await startDnsmasq(name, "192.0.2.1");
    try {
      const ns2 = await startDnsmasq(name, "192.0.2.2");
      try {
        const args = ({ port }: { port: number }) =>
          balanceArgs(recipe("dns-balance", {
            "53": String(port),
            "10.0.0.1:53": `127.0.0.1:${ns1.port}`,
            "10.0.0.2:53": `127.0.0.1:${ns2.port}`,
          }));
        await withBalancer({ args }, async ({ port }) => {
          for (const over of [[], ["+tcp"]]) {
            const answered: string[] = [];
            for (let i = 0; i < 4; i++) {
              const r = await runClient(dig, [
                ...digArgs,
                ...over,
                "-p",
                String(port),
                "+short",
                "+time=5",
                "+tries=1",
              ]);
              assert.equal(r.code, 0, `dig exited ${r.code}: ${r.stdout}${r.stderr}`);
              const server = ANSWERS[r.stdout.trim()];
              assert.ok(server, `an answer of ns1 or ns2 ${over}: ${JSON.stringify(r.stdout)}`);
              answered.push(server);
            }
            const [first] = answered;
            const other = first === "ns1" ? "ns2" : "ns1";
            assert.deepEqual(answered, [first, other, first, other], `alternating ${over}`);
          }
        });
      } finally {
        await ns2.stop();
      }
    } finally {
      await ns1.stop();
    }
  },
);
