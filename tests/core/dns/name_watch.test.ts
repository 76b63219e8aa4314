import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import { until } from "../../support/wait.ts";
import { Balancer, followName, type GroupSpec, NameWatch, type Resolution } from "../../../src/core/mod.ts";

test("followName: a new address replaces the old and is logged at info", () => {
  assert.deepEqual(followName({ address: "198.18.0.1", lost: false }, { address: "198.18.0.2" }), {
    state: { address: "198.18.0.2", lost: false },
    log: { level: "info", text: "address changed from 198.18.0.1 to 198.18.0.2" },
  });
  assert.deepEqual(followName({ address: "198.18.0.1", lost: false }, { address: "198.18.0.1" }), {
    state: { address: "198.18.0.1", lost: false },
  });
});

test("followName: a name that stops resolving keeps its address, warned once until it resolves again", () => {
  const lost = followName({ address: "198.18.0.1", lost: false }, { error: "ENOTFOUND" });
  assert.deepEqual(lost, {
    state: { address: "198.18.0.1", lost: true },
    log: { level: "warning", text: "does not resolve (ENOTFOUND); keeping 198.18.0.1" },
  });
  assert.deepEqual(followName(lost.state, { error: "ETIMEOUT" }), { state: lost.state });
  assert.deepEqual(followName(lost.state, { address: "198.18.0.1" }), {
    state: { address: "198.18.0.1", lost: false },
    log: { level: "info", text: "resolves again to 198.18.0.1" },
  });
  assert.deepEqual(followName(lost.state, { address: "198.18.0.9" }), {
    state: { address: "198.18.0.9", lost: false },
    log: { level: "info", text: "address changed from 198.18.0.1 to 198.18.0.9" },
  });
});

/**
 * Group 0: `web.internal`, the address literal 10.0.0.5, `web.internal`
 * again; group 1: `db.internal`. DNS answers what `dns` holds (a missing
 * name fails); every question is recorded.
 */
function setup(intervalSec = 1000) {
  const specs: GroupSpec[] = [
    {
      type: "RR",
      channels: [
        { host: "web.internal", port: 80, maxc: 0 },
        { host: "10.0.0.5", port: 80, maxc: 0 },
        { host: "web.internal", port: 81, maxc: 0 },
      ],
    },
    { type: "Hash", channels: [{ host: "db.internal", port: 5432, maxc: 0 }] },
  ];
  const dns = new Map([["web.internal", "198.18.0.1"], ["db.internal", "198.18.1.1"]]);
  const balancer = Balancer.fromSpecs(
    specs,
    { autodisable: false, hashFailover: false },
    undefined,
    (h) => dns.get(h) ?? h,
  );
  const asked: string[] = [];
  const resolve = (host: string): Promise<Resolution> => {
    asked.push(host);
    const address = dns.get(host);
    return Promise.resolve(address === undefined ? { error: "ENOTFOUND" } : { address });
  };
  const logged: string[] = [];
  let synced = 0;
  const watch = new NameWatch(
    balancer,
    intervalSec,
    resolve,
    { info: (m) => logged.push(`info ${m}`), warning: (m) => logged.push(`warning ${m}`) },
    () => void synced++,
  );
  watch.followSpecs(specs);
  const addresses = () => balancer.groups.map((g) => g.channels.map((c) => c.address));
  return { balancer, dns, asked, logged, watch, addresses, synced: () => synced };
}

test("name watch: channels given by name follow their address; literals are never asked", async () => {
  const { balancer, dns, asked, logged, watch, addresses, synced } = setup();
  assert.equal(watch.size, 3);
  watch.start();
  try {
    await watch.round();
    assert.deepEqual(asked.sort(), ["db.internal", "web.internal"], "each distinct name once");
    assert.deepEqual(logged, []);
    assert.equal(synced(), 0, "nothing changed: the workers are not bothered");

    const generations = balancer.groups.map((g) => g.generation);
    dns.set("web.internal", "198.18.0.2");
    await watch.round();
    assert.deepEqual(addresses(), [["198.18.0.2", "10.0.0.5", "198.18.0.2"], ["198.18.1.1"]]);
    assert.deepEqual(logged, [
      "info group 0 channel 0 (web.internal) address changed from 198.18.0.1 to 198.18.0.2",
      "info group 0 channel 2 (web.internal) address changed from 198.18.0.1 to 198.18.0.2",
    ]);
    assert.equal(synced(), 1, "one layout sync for the round");
    assert.notEqual(balancer.groups[0].generation, generations[0], "derived tables of group 0 are rebuilt");
    assert.equal(balancer.groups[1].generation, generations[1]);
  } finally {
    watch.stop();
  }
});

test("name watch: a lost name keeps its address with one warning, and is followed again when it comes back", async () => {
  const { dns, logged, watch, addresses, synced } = setup();
  watch.start();
  try {
    dns.delete("db.internal");
    await watch.round();
    await watch.round();
    assert.deepEqual(logged, [
      "warning group 1 channel 0 (db.internal) does not resolve (ENOTFOUND); keeping 198.18.1.1",
    ]);
    assert.deepEqual(addresses()[1], ["198.18.1.1"]);
    dns.set("db.internal", "198.18.1.2");
    await watch.round();
    assert.equal(logged[1], "info group 1 channel 0 (db.internal) address changed from 198.18.1.1 to 198.18.1.2");
    assert.deepEqual(addresses()[1], ["198.18.1.2"]);
    assert.equal(synced(), 1);
  } finally {
    watch.stop();
  }
});

test("name watch: a resolver that throws counts as a failed lookup", async () => {
  const { balancer } = setup();
  const logged: string[] = [];
  const watch = new NameWatch(balancer, 1000, () => Promise.reject(new Error("resolver broke")), {
    info: (m) => logged.push(m),
    warning: (m) => logged.push(m),
  });
  watch.follow(balancer.groups[1].channels[0], "db.internal");
  watch.start();
  try {
    await watch.round();
    assert.deepEqual(logged, ["group 1 channel 0 (db.internal) does not resolve (resolver broke); keeping 198.18.1.1"]);
  } finally {
    watch.stop();
  }
});

test("name watch: a channel given a new address by hand (assign) stops following its name", async () => {
  const { balancer, dns, logged, watch } = setup();
  watch.start();
  try {
    balancer.groups[1].channels[0].address = "10.9.9.9";
    dns.set("db.internal", "198.18.1.2");
    await watch.round();
    assert.equal(balancer.groups[1].channels[0].address, "10.9.9.9");
    assert.deepEqual(logged, []);
    assert.equal(watch.size, 2);
  } finally {
    watch.stop();
  }
});

test("name watch: rounds come on the timer, one interval apart; interval 0 or no names: no timer", async () => {
  const timed = setup(0.05);
  const started = Date.now();
  timed.watch.start();
  try {
    await until(() => timed.asked.length, (n) => n >= 6, "three rounds", { ms: 5000, everyMs: 10 });
    assert.ok(Date.now() - started >= 140, `three rounds took ${Date.now() - started} ms, not three intervals`);
  } finally {
    timed.watch.stop();
  }
  const asked = timed.asked.length;
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(timed.asked.length, asked, "stop stops the rounds");

  const never = setup(0);
  never.watch.start();
  const { balancer } = setup();
  const empty = new NameWatch(balancer, 0.05, () => Promise.resolve({ error: "asked" }), {
    info: () => assert.fail("no names, no lookups"),
    warning: () => assert.fail("no names, no lookups"),
  });
  empty.follow(balancer.groups[0].channels[1], "10.0.0.5");
  assert.equal(empty.size, 0);
  empty.start();
  await new Promise((r) => setTimeout(r, 150));
  assert.deepEqual(never.asked, [], "interval 0: asked only at start, by the caller");
  never.watch.stop();
  empty.stop();
});
