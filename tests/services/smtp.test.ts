/**
 * SMTP through balance to a real Postfix, as docs/services.md says: swaks
 * delivers a message through balance with `--proxy-protocol v1`, Postfix
 * (`smtpd_upstream_proxy_protocol = haproxy`) logs the real client, not
 * balance, and the message lands in the maildir. Postfix's greeting
 * reaches a client that has sent nothing.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { withBalancer } from "../support/balance.ts";
import { connect } from "../support/net.ts";
import {
  balanceArgs,
  missing,
  type Postfix,
  postfixUnavailable,
  recipe,
  runClient,
  startPostfix,
  words,
} from "../support/services.ts";
import { until } from "../support/wait.ts";

const skip = postfixUnavailable() || missing({ swaks: "swaks" });

/** The client address swaks uses, which Postfix must log instead of balance's 127.0.0.1. */
const CLIENT = "127.0.0.9";

/** Postfix with the page's main.cf setting, and balance from the page's line in front of it (both channels on it). */
async function withSmtp(fn: (postfix: Postfix, port: number) => Promise<void>): Promise<void> {
  const postfix = await startPostfix(recipe("smtp-postfix"));
  try {
    const args = ({ port }: { port: number }) =>
      balanceArgs(recipe("smtp-balance", {
        "25": String(port),
        "10.0.0.1:25": `127.0.0.1:${postfix.port}`,
        "10.0.0.2:25": `127.0.0.1:${postfix.port}`,
      }));
    await withBalancer({ args }, ({ port }) => fn(postfix, port));
  } finally {
    await postfix.stop();
  }
}

test("services smtp: swaks delivers through balance with PROXY v1; Postfix logs the real client", {
  skip,
}, () =>
  withSmtp(async (postfix, port) => {
    const [swaks, ...args] = words(recipe("smtp-client", { "10.0.0.10:25": `127.0.0.1:${port}` }));
    const subject = `through balance ${Date.now()}`;
    const r = await runClient(swaks, [...args, "--local-interface", CLIENT, "--header", `Subject: ${subject}`]);
    assert.equal(r.code, 0, `swaks exited ${r.code}: ${r.stdout}${r.stderr}\n${postfix.log()}`);
    const queued = /<- {2}250 2\.0\.0 Ok: queued as (\w+)/.exec(r.stdout)?.[1];
    assert.ok(queued, `Postfix queued the message:\n${r.stdout}`);

    const delivered = await until(
      () => postfix.delivered(),
      (messages) => messages.length > 0,
      `the message in the maildir:\n${postfix.log()}`,
    );
    assert.equal(delivered.length, 1);
    assert.match(delivered[0], new RegExp(`^Subject: ${subject}$`, "m"));

    // Postfix names the client the header gave, in the connection and in the queue entry.
    await until(() => postfix.log(), (log) => log.includes(`${queued}: client=unknown[${CLIENT}]`), "the queue entry");
    assert.match(postfix.log(), /postfix\/smtpd\[\d+\]: connect from unknown\[127\.0\.0\.9\]/);
    assert.doesNotMatch(postfix.log(), /connect from \S*\[127\.0\.0\.1\]/, "no connection from balance's own address");
  }));

test("services smtp: Postfix's greeting reaches a client that has sent nothing, through balance with PROXY v1", {
  skip,
}, () =>
  withSmtp(async (_postfix, port) => {
    const client = await connect(port, "127.0.0.1", CLIENT);
    try {
      const greeting = await client.waitFor((d) => d.includes("\r\n"), 10_000);
      assert.match(greeting.toString(), /^220 smtp\.example\.test ESMTP Postfix.*\r\n$/);
      client.socket.write("QUIT\r\n");
      assert.match((await client.ended()).toString(), /\r\n221 2\.0\.0 Bye\r\n$/);
    } finally {
      client.socket.destroy();
    }
  }));
