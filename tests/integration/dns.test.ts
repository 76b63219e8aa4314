/**
 * Names that follow DNS (issue 13) against a real DNS server: dnsmasq on
 * 127.0.0.1 and a private port, answering only from a hosts file the test
 * rewrites (SIGHUP makes it read the file again), and balance asking it
 * through `--resolver`. Backend A listens on 127.0.0.2, backend B on
 * 127.0.0.3, both on the same port, so that only the address of `web.test`
 * decides which one a new connection reaches.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { type Backend, connect, freePort, startBackend, whoAnswers } from "../support/net.ts";
import { type Dns, skipWithoutDnsmasq as skip, startDns } from "../support/dnsmasq.ts";
import { runBalance, startBalance } from "../support/balance.ts";
import { logged } from "../support/health.ts";
import { until } from "../support/wait.ts";
import { sleep } from "../support/helpers.ts";

const INTERVAL = 0.5;
/** What a loaded 2-core CI machine may add to the interval. */
const SLACK_MS = 2000;

/** Backend A on 127.0.0.2 and B on 127.0.0.3, on one port; dnsmasq saying web.test is A. */
async function withSetup(fn: (dns: Dns, a: Backend, b: Backend) => Promise<void>): Promise<void> {
  const a = await startBackend("A", undefined, "127.0.0.2");
  const b = await startBackend("B", undefined, "127.0.0.3", a.port);
  const dns = await startDns("127.0.0.2 web.test\n");
  try {
    await fn(dns, a, b);
  } finally {
    await dns.stop();
    await a.close();
    await b.close();
  }
}

test(
  "dns: new connections follow a changed address within the interval; open ones stay; a lost name keeps its address",
  {
    skip,
  },
  () =>
    withSetup(async (dns, a) => {
      const port = await freePort();
      const lb = await startBalance(
        [
          "--resolver",
          `127.0.0.1:${dns.port}`,
          "--resolve-interval",
          String(INTERVAL),
          String(port),
          `web.test:${a.port}`,
        ],
        port,
      );
      try {
        assert.equal(await whoAnswers(port), "A", "start-up resolution asked dnsmasq");
        const held = await connect(port);
        await held.waitFor((d) => d.toString() === "A\n");

        await dns.set("127.0.0.3 web.test\n", "127.0.0.3");
        const movedAt = Date.now();
        await logged(lb, /group 0 channel 0 \(web\.test\) address changed from 127\.0\.0\.2 to 127\.0\.0\.3/, 10_000);
        await until(() => whoAnswers(port), (who) => who === "B", "a new connection to reach B", { ms: 10_000 });
        const followedMs = Date.now() - movedAt;
        console.log(`dns: new connections followed the new address ${followedMs} ms after the change`);
        assert.ok(followedMs <= INTERVAL * 1000 + SLACK_MS, `followed after ${followedMs} ms`);
        for (let i = 0; i < 5; i++) assert.equal(await whoAnswers(port), "B");

        held.socket.write("still here\n");
        await held.waitFor((d) => d.toString() === "A\nstill here\n");
        assert.equal(a.sockets.size, 1, "the open connection is still A's");

        await dns.set("", undefined);
        const warning = /group 0 channel 0 \(web\.test\) does not resolve \([^)]+\); keeping 127\.0\.0\.3/;
        await logged(lb, warning, 10_000);
        // Three more rounds without an answer: still one warning.
        await sleep(3 * INTERVAL * 1000);
        assert.equal(lb.stderr().split("\n").filter((l) => warning.test(l)).length, 1, lb.stderr());
        assert.match(lb.stderr(), /WRN: group 0 channel 0 \(web\.test\) does not resolve/, "logged as a warning");
        assert.equal(await whoAnswers(port), "B", "the last address is kept");

        held.socket.write("and now\n");
        await held.waitFor((d) => d.toString() === "A\nstill here\nand now\n");
        held.socket.destroy();
      } finally {
        assert.equal(await lb.stop(), 0);
      }
    }),
);

test("dns: --resolve-interval 0 resolves only at start", { skip }, () =>
  withSetup(async (dns, a) => {
    const port = await freePort();
    const lb = await startBalance(
      ["--resolver", `127.0.0.1:${dns.port}`, "--resolve-interval", "0", String(port), `web.test:${a.port}`],
      port,
    );
    try {
      assert.equal(await whoAnswers(port), "A");
      await dns.set("127.0.0.3 web.test\n", "127.0.0.3");
      await sleep(4 * INTERVAL * 1000);
      for (let i = 0; i < 3; i++) assert.equal(await whoAnswers(port), "A", "no lookup after the start");
      assert.doesNotMatch(lb.stderr(), /web\.test\) (resolved|address changed)/);
    } finally {
      assert.equal(await lb.stop(), 0);
    }
  }));

test(
  "dns: a name the --resolver server does not know stops the start (exit 68, one line)",
  { skip },
  () =>
    withSetup(async (dns, a) => {
      const port = await freePort();
      const r = await runBalance(["-f", "--resolver", `127.0.0.1:${dns.port}`, String(port), `nope.test:${a.port}`]);
      assert.equal(r.code, 68, r.stderr);
      assert.equal(r.stderr, "balance: cannot resolve channel host 'nope.test'\n");
    }),
);
