/**
 * Consistent hashing of a `%` group on real sockets: 2,000 client addresses
 * (127.1.x.y) against five channels. The hash is deterministic, so bounds
 * that a fair hash meets only on average are checked over that many
 * addresses; each client's channel is also checked against the model in
 * src/core/selection/schedule/rendezvous.ts.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { type Backend, whoAnswers, withBackends } from "../support/net.ts";
import { withBalance } from "../support/balance.ts";
import { until } from "../support/wait.ts";
import { Channel, Group, hashClientAddress } from "../../src/core/mod.ts";
import { hashedChannels } from "../../src/core/selection/schedule/rendezvous.ts";
import { control } from "../support/helpers.ts";

const CLIENTS = Array.from({ length: 2000 }, (_, i) => `127.1.${Math.floor(i / 250)}.${1 + (i % 250)}`);
const BATCH = 100;

/** Which backend answers each client, connecting a batch at a time. */
async function answers(port: number, clients: readonly string[] = CLIENTS): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < clients.length; i += BATCH) {
    seen.push(...await Promise.all(clients.slice(i, i + BATCH).map((src) => whoAnswers(port, "127.0.0.1", src))));
  }
  return seen;
}

/** The channel the rendezvous model gives each client over `backends` (all usable). */
function model(backends: readonly Backend[]): string[] {
  const group = new Group("Hash", backends.map((b) => new Channel(b.host, b.port)));
  return CLIENTS.map((src) => {
    const top = hashedChannels(group, hashClientAddress(src), false).next().value!;
    return backends[group.channels.indexOf(top)].name;
  });
}

const tally = (names: readonly string[]) => {
  const counts = new Map<string, number>();
  for (const n of names) counts.set(n, (counts.get(n) ?? 0) + 1);
  return counts;
};

/** Names of `count` backends: c0, c1, … */
const named = (count: number) => Array.from({ length: count }, (_, i) => `c${i}`);

/** Balance `-H PORT backends… %` for the length of `fn`. */
const withHashBalancer = (backends: readonly Backend[], fn: (port: number) => Promise<void>) =>
  withBalance(["-H"], [...backends.map((b) => `${b.host}:${b.port}`), "%"], ({ port }) => fn(port));

test("consistent hashing on real sockets: disable, enable, create: only the clients that must move do", () =>
  withBackends(named(6), async (bs) => {
    const five = bs.slice(0, 5);
    await withHashBalancer(five, async (port) => {
      const before = await answers(port);
      assert.deepEqual(before, model(five), "every client on its rendezvous channel");
      const counts = tally(before);
      assert.equal(counts.size, 5, `every channel has clients: ${[...counts]}`);

      assert.match(await control(port, "disable 2"), /channel 2 disabled/);
      const during = await answers(port);
      const spread = new Map<string, number>();
      let moved = 0;
      before.forEach((was, i) => {
        if (was !== "c2") return assert.equal(during[i], was, `${CLIENTS[i]} of ${was} stays`);
        moved++;
        assert.notEqual(during[i], "c2");
        spread.set(during[i], (spread.get(during[i]) ?? 0) + 1);
      });
      assert.equal(moved, counts.get("c2"));
      assert.ok(spread.size >= 3, `c2's clients spread over ${[...spread]}`);
      for (const [name, k] of spread) assert.ok(k <= 1.5 * moved / 4, `${name} got ${k} of ${moved}`);
      console.log(
        `disable 1 of 5: ${moved} of 2000 moved (${(moved / 20).toFixed(1)} %), to ${JSON.stringify([...spread])}`,
      );

      assert.match(await control(port, "enable 2"), /channel 2 enabled/);
      assert.deepEqual(await answers(port), before, "all back");

      assert.match(await control(port, `create ${bs[5].host} ${bs[5].port}`), /channel created/);
      assert.match(await control(port, "enable 5"), /channel 5 enabled/);
      // Workers (-w) take on a created channel a moment later.
      const expected = model(bs);
      const probe = CLIENTS[expected.indexOf("c5")];
      await until(() => whoAnswers(port, "127.0.0.1", probe), (who) => who === "c5", `${probe} to reach c5`);
      const after = await answers(port);
      assert.deepEqual(after, expected);
      let toNew = 0;
      before.forEach((was, i) => {
        if (after[i] === was) return;
        toNew++;
        assert.equal(after[i], "c5", `${CLIENTS[i]} moved from ${was} to the new channel only`);
      });
      assert.ok(toNew / CLIENTS.length <= 1 / 6 + 0.03, `${toNew} moved`);
      console.log(`add a 6th: ${toNew} of 2000 moved (${(toNew / 20).toFixed(1)} %), all to it`);
    });
  }));

test("consistent hashing on real sockets: two balancers with the channels in reverse order agree on every client", () =>
  withBackends(named(5), async (bs) => {
    let first: string[] = [];
    await withHashBalancer(bs, async (port) => {
      first = await answers(port);
    });
    await withHashBalancer([...bs].reverse(), async (port) => assert.deepEqual(await answers(port), first));
    assert.equal(tally(first).size, 5);
  }));
