import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { type Backend, connect, freePort, startBackend, whoAnswers, withBackends } from "../support/net.ts";
import { withBalance } from "../support/balance.ts";
import { Channel, Group, hashClientAddress } from "../../src/core/mod.ts";
import { hashedChannels } from "../../src/core/selection/schedule/rendezvous.ts";

const at = (b: Backend, maxc?: number) => `${b.host}:${b.port}${maxc === undefined ? "" : `:${maxc}`}`;

/** A port on which nothing listens: connects are refused. */
const deadChannel = async () => `127.0.0.1:${await freePort()}`;

test("channel selection on real sockets: round robin visits channels in order", () =>
  withBackends(["a", "b", "c"], async ([a, b, c]) => {
    await withBalance([], [at(a), at(b), at(c)], async ({ port }) => {
      const seen = [];
      for (let i = 0; i < 7; i++) seen.push(await whoAnswers(port));
      assert.deepEqual(seen, ["a", "b", "c", "a", "b", "c", "a"]);
    });
  }));

test("channel selection on real sockets: maxc: a full channel is skipped until a connection drains, then serves again", () =>
  withBackends(["a", "b"], async ([a, b]) => {
    await withBalance([], [at(a, 2), "!", at(b)], async ({ port, lb }) => {
      const held = [];
      for (let i = 0; i < 2; i++) {
        const c = await connect(port);
        await c.waitFor((d) => d.toString() === "a\n");
        held.push(c);
      }
      assert.equal(await whoAnswers(port), "b", "bucket full: spills to group 1");
      assert.equal(await whoAnswers(port), "b");
      held[0].socket.destroy();
      await lb.waitForTrace(/closed group 0 channel 0/);
      assert.equal(await whoAnswers(port), "a", "a slot freed");
      held[1].socket.destroy();
    });
  }));

test("channel selection on real sockets: refused connects fail over to the next channel, then to the next group", () =>
  withBackends(["b", "backup"], async ([b, backup]) => {
    const dead = await deadChannel();
    await withBalance([], [dead, at(b), "!", at(backup)], async ({ port, lb }) => {
      assert.deepEqual([await whoAnswers(port), await whoAnswers(port), await whoAnswers(port)], ["b", "b", "b"]);
      await b.close();
      assert.equal(await whoAnswers(port), "backup", "group 0 all down: group 1");
      await lb.waitForTrace(/connect to group 0 channel 0 .* failed/);
    });
  }));

test("channel selection on real sockets: nothing usable: the client is accepted and closed at once", async () => {
  await withBalance([], [await deadChannel()], async ({ port, lb }) => {
    const c = await connect(port);
    assert.equal((await c.ended()).length, 0);
    c.socket.destroy();
    await lb.waitForTrace("no channel available");
  });
});

test("channel selection on real sockets: -a disables a channel whose connect failed, even after it comes back", () =>
  withBackends(["b"], async ([b]) => {
    const deadPort = await freePort();
    let revived: Backend | undefined;
    try {
      await withBalance(["-a"], [`127.0.0.1:${deadPort}`, at(b)], async ({ port, lb }) => {
        assert.equal(await whoAnswers(port), "b");
        await lb.waitForTrace(/failed: .*channel disabled/);
        revived = await startBackend("revived", undefined, "127.0.0.1", deadPort);
        for (let i = 0; i < 4; i++) assert.equal(await whoAnswers(port), "b");
      });
    } finally {
      await revived?.close();
    }
  }));

test("channel selection on real sockets: without -a a failed channel is tried again later", () =>
  withBackends(["b"], async ([b]) => {
    const deadPort = await freePort();
    let revived: Backend | undefined;
    try {
      await withBalance([], [`127.0.0.1:${deadPort}`, at(b)], async ({ port }) => {
        assert.equal(await whoAnswers(port), "b");
        revived = await startBackend("revived", undefined, "127.0.0.1", deadPort);
        const seen = new Set<string>();
        for (let i = 0; i < 4; i++) seen.add(await whoAnswers(port));
        assert.deepEqual([...seen].sort(), ["b", "revived"]);
      });
    } finally {
      await revived?.close();
    }
  }));

// Clients bound to 127.0.0.1 … 127.0.0.40 are 40 distinct source addresses.
const sources = Array.from({ length: 40 }, (_, i) => `127.0.0.${i + 1}`);

/** The names of `channels` in `src`'s rendezvous order (tests/core/selection/schedule/rendezvous.test.ts tests the order). */
function ranked(channels: { name: string; host: string; port: number }[], src: string): string[] {
  const group = new Group("Hash", channels.map((c) => new Channel(c.host, c.port)));
  return [...hashedChannels(group, hashClientAddress(src), true)].map((c) => channels[group.channels.indexOf(c)].name);
}

test("channel selection on real sockets: hash group: each client address sticks to its rendezvous channel, and clients spread", () =>
  withBackends(["h0", "h1", "h2"], async (bs) => {
    await withBalance([], [...bs.map((b) => at(b)), "%"], async ({ port }) => {
      const used = new Set<string>();
      for (const src of sources) {
        const expected = ranked(bs, src)[0];
        for (let i = 0; i < 3; i++) assert.equal(await whoAnswers(port, "127.0.0.1", src), expected, src);
        used.add(expected);
      }
      assert.equal(used.size, 3, "all channels get clients");
    });
  }));

test("channel selection on real sockets: hash without -H: the hashed channel down means the next group", () =>
  withBackends(["h0", "h1", "backup"], async ([h0, h1, backup]) => {
    const dead = await deadChannel();
    const channels = [h0, { name: "dead", host: "127.0.0.1", port: Number(dead.split(":")[1]) }, h1];
    await withBalance([], [at(h0), dead, at(h1), "%", at(backup)], async ({ port }) => {
      let sawDead = false;
      for (const src of sources) {
        const hashed = ranked(channels, src)[0];
        sawDead ||= hashed === "dead";
        assert.equal(await whoAnswers(port, "127.0.0.1", src), hashed === "dead" ? "backup" : hashed, src);
      }
      assert.ok(sawDead, "some client hashed to the dead channel");
    });
  }));

test("channel selection on real sockets: hash with -H: the hashed channel down means the next channel of the group", () =>
  withBackends(["h0", "h1", "backup"], async ([h0, h1, backup]) => {
    const dead = await deadChannel();
    const channels = [h0, { name: "dead", host: "127.0.0.1", port: Number(dead.split(":")[1]) }, h1];
    await withBalance(["-H"], [at(h0), dead, at(h1), "%", at(backup)], async ({ port }) => {
      let sawDead = false;
      for (const src of sources) {
        const [hashed, next] = ranked(channels, src);
        sawDead ||= hashed === "dead";
        assert.equal(await whoAnswers(port, "127.0.0.1", src), hashed === "dead" ? next : hashed, src);
      }
      assert.ok(sawDead, "some client hashed to the dead channel");
    });
  }));

test("channel selection on real sockets: hash with -H skips a full channel without trying it", () =>
  withBackends(["h0", "h1"], async ([h0, h1]) => {
    await withBalance(["-H"], [at(h0, 1), at(h1, 1), "%"], async ({ port }) => {
      const src = sources.find((s) => ranked([h0, h1], s)[0] === "h0")!;
      const first = await connect(port, "127.0.0.1", src);
      await first.waitFor((d) => d.toString() === "h0\n");
      assert.equal(await whoAnswers(port, "127.0.0.1", src), "h1");
      assert.equal(h0.peers.length, 1, "the full channel got no second connect");
      first.socket.destroy();
    });
  }));
