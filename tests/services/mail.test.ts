/**
 * IMAP and POP3 through balance to a real Dovecot, as docs/services.md
 * says: curl lists and fetches the mailbox's one message over both
 * protocols, with `--proxy-protocol v2` on balance and `haproxy = yes`
 * on Dovecot's listeners, and Dovecot logs the real client (`rip=`), not
 * balance. The IMAP greeting reaches a client that has sent nothing.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { withBalancer } from "../support/balance.ts";
import { connect } from "../support/net.ts";
import {
  balanceArgs,
  type Dovecot,
  MAIL_USER,
  missing,
  recipe,
  runClient,
  startDovecot,
  words,
} from "../support/services.ts";
import { until } from "../support/wait.ts";

const skip = missing({
  dovecot: "dovecot-core",
  "/usr/lib/dovecot/imap": "dovecot-imapd",
  "/usr/lib/dovecot/pop3": "dovecot-pop3d",
  curl: "curl",
});

/** The client address curl uses, which Dovecot must log instead of balance's 127.0.0.1. */
const CLIENT = "127.0.0.9";

/** Dovecot with the page's listener settings on its two ports; balance (whose address is 127.0.0.1) trusted. */
async function withDovecot(fn: (dovecot: Dovecot) => Promise<void>): Promise<void> {
  const dovecot = await startDovecot((imap, pop3) =>
    recipe("mail-dovecot", {
      "10.0.0.10": "127.0.0.1",
      "10.0.0.1": "127.0.0.1",
      "143": String(imap),
      "110": String(pop3),
    })
  );
  try {
    await fn(dovecot);
  } finally {
    await dovecot.stop();
  }
}

/** The page's balance line for `protocol`, on `port`, both channels on Dovecot's port for it. */
function balanceLine(dovecot: Dovecot, protocol: "imap" | "pop3", port: number): string[] {
  const [imap, pop3] = dovecot.ports;
  const lines = recipe("mail-balance", {
    "143": String(port),
    "110": String(port),
    "10.0.0.1:143": `127.0.0.1:${imap}`,
    "10.0.0.2:143": `127.0.0.1:${imap}`,
    "10.0.0.1:110": `127.0.0.1:${pop3}`,
    "10.0.0.2:110": `127.0.0.1:${pop3}`,
  }).trim().split("\n");
  return balanceArgs(lines[protocol === "imap" ? 0 : 1]);
}

/** Dovecot, and a balancer from the page in front of each of its two protocols. */
function withMail(fn: (dovecot: Dovecot, imapPort: number, pop3Port: number) => Promise<void>): Promise<void> {
  return withDovecot((dovecot) =>
    withBalancer({ args: ({ port }) => balanceLine(dovecot, "imap", port) }, ({ port: imapPort }) =>
      withBalancer(
        { args: ({ port }) => balanceLine(dovecot, "pop3", port) },
        ({ port: pop3Port }) => fn(dovecot, imapPort, pop3Port),
      ))
  );
}

/** Dovecot's login lines for `protocol` that name `client` as the remote address. */
function logins(dovecot: Dovecot, protocol: string, client: string): string[] {
  const login = new RegExp(
    `${protocol}-login: Info: Login: user=<${MAIL_USER.name}>, .*rip=${client.replaceAll(".", "\\.")},`,
  );
  return dovecot.log().split("\n").filter((line) => login.test(line));
}

test("services imap/pop3: curl lists and fetches a message through balance; Dovecot logs the real client", {
  skip,
}, () =>
  withMail(async (dovecot, imapPort, pop3Port) => {
    const commands = recipe("mail-client", {
      "10.0.0.10:143": `127.0.0.1:${imapPort}`,
      "10.0.0.10:110": `127.0.0.1:${pop3Port}`,
    }).trim().split("\n").map(words);
    const out: string[] = [];
    for (const [curl, ...args] of commands) {
      const r = await runClient(curl, ["-sS", "--max-time", "10", "--interface", CLIENT, ...args]);
      assert.equal(r.code, 0, `curl ${args.join(" ")} exited ${r.code}: ${r.stderr}\n${dovecot.log()}`);
      out.push(r.stdout);
    }
    const [imapList, imapFetch, pop3List, pop3Fetch] = out;
    assert.match(imapList, /^\* SEARCH 1\r?$/m, "IMAP: the inbox has one message");
    assert.match(imapFetch, /Subject: hello through balance/, "IMAP: the message fetched");
    assert.match(pop3List, /^1 \d+\r?$/m, "POP3: the mailbox lists one message");
    assert.match(pop3Fetch, /Subject: hello through balance/, "POP3: the message fetched");

    // One login per command; each names the client, none balance.
    for (const protocol of ["imap", "pop3"]) {
      await until(() => logins(dovecot, protocol, CLIENT).length, (n) =>
        n === 2, `two ${protocol} logins from ${CLIENT}`);
    }
    assert.doesNotMatch(dovecot.log(), /Login: .*rip=127\.0\.0\.1,/, "no login from balance's own address");
  }));

test("services imap: Dovecot's greeting reaches a client that has sent nothing, through balance with PROXY v2", {
  skip,
}, () =>
  withMail(async (dovecot, imapPort) => {
    const client = await connect(imapPort, "127.0.0.1", CLIENT);
    try {
      const greeting = await client.waitFor((d) => d.includes("\r\n"), 10_000);
      assert.match(greeting.toString(), /^\* OK .*Dovecot.* ready\.\r\n$/);
      client.socket.write("a1 LOGOUT\r\n");
      assert.match((await client.ended()).toString(), /\* BYE .*\r\na1 OK/);
    } finally {
      client.socket.destroy();
    }
    // Dovecot logs a connection that never logged in as it ends; the address is the client's.
    await until(() => dovecot.log(), (log) => log.includes(`rip=${CLIENT}`), "Dovecot to log the client");
  }));
