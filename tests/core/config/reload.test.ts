import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import {
  Balancer,
  channelWord,
  dumpConfig,
  executeCommand,
  parseServices,
  reloadGroups,
  type ResolvedGroup,
} from "../../../src/core/mod.ts";

const ch = (address: string, port: number, maxc = 0, weight = 1, enabled = true) => ({
  address,
  port,
  maxc,
  weight,
  enabled,
});

function running() {
  const balancer = Balancer.fromSpecs(
    [
      { type: "RR", channels: [{ host: "10.0.0.1", port: 80, maxc: 0 }, { host: "10.0.0.2", port: 80, maxc: 0 }] },
      { type: "Hash", channels: [{ host: "10.0.0.9", port: 80, maxc: 0 }] },
    ],
    { autodisable: false, hashFailover: false },
  );
  return { balancer, g0: balancer.groups[0].channels.slice(), g1: balancer.groups[1].channels.slice() };
}

test("reload: a kept channel keeps its object (counters, connections, state); maxc and weight come from the file", () => {
  const { balancer, g0 } = running();
  g0[1].enabled = false;
  assert.ok(g0[1].tryClaim() === false);
  assert.ok(g0[0].tryClaim());
  g0[0].countConnect(1, true);
  g0[0].countSent(100);
  const generation = balancer.groups[0].generation;
  const groups: ResolvedGroup[] = [{ type: "LC", channels: [ch("10.0.0.2", 80, 5, 3), ch("10.0.0.1", 80, 7, 2)] }];
  const summary = reloadGroups(balancer, groups);
  assert.deepEqual({ ...summary, draining: summary?.draining.length }, { kept: 2, added: 0, removed: 1, draining: 0 });
  const [a, b] = balancer.groups[0].channels;
  assert.equal(a, g0[1], "the same channel, in the file's order");
  assert.equal(b, g0[0]);
  assert.deepEqual([a.enabled, a.maxc, a.weight], [false, 5, 3], "still disabled");
  assert.deepEqual(
    [b.c, b.totalc, b.sent, b.maxc, b.weight],
    [1, 1, 100, 7, 2],
    "counters and the open connection kept",
  );
  assert.equal(balancer.groups[0].type, "LC");
  assert.notEqual(balancer.groups[0].generation, generation, "what workers derived is stale");
  assert.equal(balancer.groups.length, 1, "group 1 is gone");
});

test("reload: a new channel joins (enabled unless the file says dis); a gone one leaves and drains", () => {
  const { balancer, g0, g1 } = running();
  assert.ok(g1[0].tryClaim());
  const summary = reloadGroups(balancer, [
    { type: "RR", channels: [ch("10.0.0.1", 80), ch("10.0.0.3", 80), ch("10.0.0.4", 81, 0, 1, false)] },
    { type: "Hash", channels: [ch("10.0.0.8", 80)] },
  ])!;
  assert.deepEqual([summary.kept, summary.added, summary.removed], [1, 3, 2]);
  assert.deepEqual(summary.draining, [g1[0]], "10.0.0.9 still has its client");
  assert.equal(balancer.groups[0].channels[0], g0[0]);
  assert.deepEqual(balancer.groups[0].channels.map(channelWord), [
    "10.0.0.1:80:0:1",
    "10.0.0.3:80:0:1",
    "10.0.0.4:81:0:1:dis",
  ]);
  assert.ok(!balancer.groups.some((g) => g.channels.includes(g0[1])), "10.0.0.2 takes no new connection");
  g1[0].release();
  assert.equal(g1[0].c, 0, "its connection finished normally");
});

test("reload: the same address twice in a group is kept twice; no room for new channels changes nothing", () => {
  const balancer = Balancer.fromSpecs(
    [{ type: "RR", channels: [{ host: "10.0.0.1", port: 80, maxc: 0 }, { host: "10.0.0.1", port: 80, maxc: 0 }] }],
    { autodisable: false, hashFailover: false },
  );
  const before = balancer.groups[0].channels.slice();
  assert.equal(reloadGroups(balancer, [{ type: "RR", channels: [ch("10.0.0.1", 80), ch("10.0.0.1", 80)] }])?.kept, 2);
  assert.deepEqual(balancer.groups[0].channels, before);
  const many = Array.from({ length: balancer.state.freeChannels + 1 }, (_, i) => ch("10.1.0.1", 1000 + i));
  assert.equal(reloadGroups(balancer, [{ type: "RR", channels: many }]), undefined);
  assert.deepEqual(balancer.groups[0].channels, before, "untouched");
});

test("dump: options, port, every channel with maxc, weight and state, every group ended by its type's separator", () => {
  const { balancer, g0 } = running();
  g0[1].enabled = false;
  g0[0].maxc = 256;
  g0[0].weight = 3;
  balancer.groups[0].type = "LC";
  assert.equal(
    dumpConfig(balancer, ["-t", "3", "--grace", "30"], 80),
    [
      "# balance configuration, written by dump",
      "-t 3 --grace 30",
      "80",
      "10.0.0.1:80:256:3",
      "10.0.0.2:80:0:1:dis",
      "+",
      "10.0.0.9:80:0:1",
      "%",
      "",
    ].join("\n"),
  );
});

test("dump: a channel configured by name is written by name, one set by assign or create by its address", () => {
  const balancer = Balancer.fromSpecs(
    [{ type: "RR", channels: [{ host: "web1", port: 80, maxc: 0 }, { host: "web2", port: 80, maxc: 0 }] }],
    { autodisable: false, hashFailover: false },
    undefined,
    (host) => ({ web1: "10.0.0.1", web2: "10.0.0.2" })[host]!,
  );
  assert.equal(balancer.groups[0].channels[0].address, "10.0.0.1", "connects to the address");
  const ctx = { balancer, version: "4.0.0", lookupPort: parseServices("") };
  for (const line of ["disable 1", "assign 1 web3 81", "create web4 82"]) executeCommand(ctx, 0, line, "10.0.0.3");
  assert.deepEqual(balancer.groups[0].channels.map(channelWord), [
    "web1:80:0:1",
    "10.0.0.3:81:0:1:dis",
    "10.0.0.3:82:0:1:dis",
  ]);
  reloadGroups(balancer, [{ type: "RR", channels: [{ ...ch("10.0.0.1", 80), host: "www" }, ch("10.0.0.3", 81)] }]);
  assert.deepEqual(
    balancer.groups[0].channels.map(channelWord),
    ["www:80:0:1", "10.0.0.3:81:0:1:dis"],
    "a reload names a kept channel as its file does",
  );
});
