import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import { Balancer, Channel, Group, hashClientAddress, pickChannels } from "../../../src/core/mod.ts";
import { hashedChannels } from "../../../src/core/selection/schedule/rendezvous.ts";

const ch = (port: number, maxc = 0) => new Channel("127.0.0.1", port, maxc);
const ports = (it: Iterable<Channel>) => [...it].map((c) => c.port);
const first = (groups: Group[], client = "10.0.0.1", hashFailover = false) =>
  pickChannels(groups, client, hashFailover).next().value?.port;

test("round robin: each pick starts after the previous one", () => {
  const groups = [new Group("RR", [ch(1), ch(2), ch(3)])];
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map(() => first(groups)), [1, 2, 3, 1, 2, 3, 1]);
});
test("round robin: disabled and full channels are skipped; the position moves past the pick", () => {
  const a = ch(1), b = ch(2, 1), c = ch(3);
  const groups = [new Group("RR", [a, b, c])];
  b.tryClaim(); // full
  assert.equal(first(groups), 1);
  assert.equal(first(groups), 3);
  assert.equal(groups[0].current, 0);
  a.enabled = false;
  assert.equal(first(groups), 3);
  b.release();
  assert.equal(first(groups), 2);
});
test("round robin: a failed attempt walks on and wraps around to where it started", () => {
  const groups = [new Group("RR", [ch(1), ch(2), ch(3)])];
  first(groups); // current = 1
  assert.deepEqual(ports(pickChannels(groups, "x", false)), [2, 3, 1]);
});
test("round robin: then later groups, in order", () => {
  const groups = [new Group("RR", [ch(1), ch(2)]), new Group("RR", [ch(3)]), new Group("RR", [ch(4)])];
  assert.deepEqual(ports(pickChannels(groups, "x", false)), [1, 2, 3, 4]);
});
test("round robin: a group with nothing usable yields nothing and the next group serves", () => {
  const down = ch(1);
  down.enabled = false;
  const groups = [new Group("RR", [down]), new Group("RR", [ch(9)])];
  assert.equal(first(groups), 9);
  assert.equal(groups[0].current, 0);
});
test("round robin: usability is checked when a channel's turn comes, not before", () => {
  const a = ch(1), b = ch(2);
  const it = pickChannels([new Group("RR", [a, b])], "x", false);
  assert.equal(it.next().value, a);
  b.enabled = false; // e.g. `disable 1` while a's connect was pending
  assert.equal(it.next().done, true);
});

const clients = Array.from({ length: 64 }, (_, i) => `10.9.8.${i}`);
/** `channels` in the client's rendezvous order (tests/core/selection/schedule/rendezvous.test.ts tests the order itself). */
const ranked = (channels: Channel[], client: string) => [
  ...hashedChannels(new Group("Hash", channels), hashClientAddress(client), true),
];
test("hash: a client always gets its rendezvous channel", () => {
  const channels = [ch(1), ch(2), ch(3)];
  const groups = [new Group("Hash", channels)];
  const used = new Set<number>();
  for (const client of clients) {
    const expected = ranked(channels, client)[0].port;
    assert.equal(first(groups, client), expected);
    assert.equal(first(groups, client), expected);
    used.add(expected);
  }
  assert.equal(used.size, 3);
});
test("hash: without -H an unusable hashed channel gives up on the group", () => {
  const channels = [ch(1), ch(2), ch(3)];
  const groups = [new Group("Hash", channels), new Group("RR", [ch(9)])];
  for (const client of clients) {
    const hashed = ranked(channels, client)[0];
    hashed.enabled = false;
    assert.deepEqual(ports(pickChannels(groups, client, false)), [9]);
    hashed.enabled = true;
    assert.deepEqual(ports(pickChannels(groups, client, false)), [hashed.port, 9]);
  }
});
test("hash: with -H the walk goes on down the client's ranking", () => {
  const channels = [ch(1), ch(2), ch(3)];
  const groups = [new Group("Hash", channels)];
  for (const client of clients) {
    const order = ranked(channels, client);
    const expected = order.map((c) => c.port);
    assert.deepEqual(ports(pickChannels(groups, client, true)), expected);
    order[0].maxc = 1;
    order[0].tryClaim();
    assert.deepEqual(ports(pickChannels(groups, client, true)), expected.slice(1));
    order[0].release();
    order[0].maxc = 0;
  }
});
test("hash: a later Hash group hashes the same client", () => {
  const second = [ch(4), ch(5), ch(6), ch(7)];
  const down = ch(1);
  down.enabled = false;
  const groups = [new Group("RR", [down]), new Group("Hash", second)];
  for (const client of clients) assert.equal(first(groups, client), ranked(second, client)[0].port);
});

const refused = () => Promise.reject(new Error("connection refused"));
test("Balancer.connect: counts the connection on the chosen channel", async () => {
  const a = ch(1);
  const b = new Balancer([new Group("RR", [a])]);
  const got = await b.connect("10.0.0.1", (c) => Promise.resolve(`conn-to-${c.port}`));
  assert.ok(got.channel);
  assert.equal(got.conn, "conn-to-1");
  assert.equal(got.channel, a);
  assert.ok(got.connectMs >= 0 && got.connectMs < 1000, `connect time ${got.connectMs} ms`);
  assert.deepEqual([a.c, a.totalc], [1, 1]);
  a.release();
  assert.deepEqual([a.c, a.totalc], [0, 1]);
});
test("Balancer.connect: the count is in place while the connect is pending (maxc holds under concurrency)", async () => {
  const a = ch(1, 1), spill = ch(2);
  const b = new Balancer([new Group("RR", [a]), new Group("RR", [spill])]);
  let release!: () => void;
  const slow = new Promise<string>((r) => (release = () => r("a")));
  const first = b.connect("x", () => slow);
  const second = await b.connect("x", (c) => Promise.resolve(String(c.port)));
  assert.equal(second.channel && second.conn, "2");
  release();
  const late = await first;
  assert.equal(late.channel && late.conn, "a");
});
test("Balancer.connect: a refused connect is undone and the next channel tried, then the next group", async () => {
  const a = ch(1), bb = ch(2), c = ch(3);
  const bal = new Balancer([new Group("RR", [a, bb]), new Group("RR", [c])]);
  const tried: number[] = [];
  const got = await bal.connect(
    "x",
    (chn) => (tried.push(chn.port), chn.port === 3 ? Promise.resolve("ok") : refused()),
  );
  assert.deepEqual(tried, [1, 2, 3]);
  assert.equal(got?.channel, c);
  assert.deepEqual([a.c, a.totalc, bb.c, bb.totalc, c.c, c.totalc], [0, 0, 0, 0, 1, 1]);
  assert.ok(a.enabled && bb.enabled, "without -a channels stay enabled");
});
test("Balancer.connect: with autodisable a failed channel is disabled and stays so", async () => {
  const a = ch(1), bb = ch(2);
  const bal = new Balancer([new Group("RR", [a, bb])], { autodisable: true, hashFailover: false });
  await bal.connect("x", (chn) => (chn === a ? refused() : Promise.resolve("ok")));
  assert.equal(a.enabled, false);
  const tried: number[] = [];
  for (let i = 0; i < 3; i++) await bal.connect("x", (chn) => (tried.push(chn.port), Promise.resolve("ok")));
  assert.deepEqual(tried, [2, 2, 2]);
});
test("Balancer.connect: nothing left: connect-failed with every count undone; none usable: no-channel", async () => {
  const a = ch(1), bb = ch(2);
  const traces: string[] = [];
  const bal = new Balancer([new Group("RR", [a]), new Group("Hash", [bb])], undefined, (m) => traces.push(m));
  assert.deepEqual(await bal.connect("x", refused), { channel: undefined, reason: "connect-failed" });
  assert.deepEqual([a.c, a.totalc, bb.c, bb.totalc], [0, 0, 0, 0]);
  assert.match(traces.join("\n"), /connect to group 0 channel 0 \(127\.0\.0\.1:1\) failed: connection refused/);
  assert.match(traces.at(-1)!, /no channel available/);
  a.enabled = false;
  bb.enabled = false;
  assert.deepEqual(await bal.connect("x", refused), { channel: undefined, reason: "no-channel" });
});
