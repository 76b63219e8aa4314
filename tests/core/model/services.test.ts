import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import { Balancer, type Channel, dumpConfig, parseGroups, parseServices } from "../../../src/core/mod.ts";

const lookup = parseServices("");
const balancerOf = (...words: string[]) =>
  Balancer.fromSpecs(
    parseGroups(words, 80, lookup),
    { autodisable: false, hashFailover: false },
    undefined,
    () => "127.0.0.1",
  );

// Dials that fail for the ports in `down`; resolves the channel's port otherwise.
const dialing = (down: number[]) => (channel: Channel) =>
  down.includes(channel.port) ? Promise.reject(new Error("connection refused")) : Promise.resolve(channel.port);

test("services: a client goes to its service's groups only; failover stays inside the service", async () => {
  const balancer = balancerOf("h:1", "@a", "h:2", "!", "h:3", "@b", "h:4", "h:5", "%");
  const to = async (service: string, down: number[] = []) => {
    const c = await balancer.connect("10.0.0.7", dialing(down), undefined, service);
    if (c.channel) balancer.release(c.channel);
    return c.channel ? c.conn : c.reason;
  };
  assert.equal(await to(""), 1);
  assert.equal(await to("a"), 2);
  assert.equal(await to("a", [2]), 3, "failover to the service's next group");
  assert.equal(await to("a", [2, 3]), "connect-failed", "never to another service");
  assert.ok([4, 5].includes(await to("b") as number));
  assert.equal(await to("", [1]), "connect-failed");
  assert.deepEqual([balancer.hasService("a"), balancer.hasService("c"), balancer.serviceNames()], [true, false, [
    "a",
    "b",
  ]]);
});

test("services: group numbers stay global; describe, layout and dump name the service", () => {
  const balancer = balancerOf("h:1", "@a", "h:2", "!", "h:3", "@b", "h:4", "%");
  assert.deepEqual(balancer.groups.map((g) => g.service), ["", "a", "a", "b"]);
  assert.equal(balancer.describe(balancer.groups[2].channels[0]), "@a group 2 channel 0 (127.0.0.1:3)");
  assert.equal(balancer.describe(balancer.groups[0].channels[0]), "group 0 channel 0 (127.0.0.1:1)");
  assert.deepEqual(balancer.layout().groups.map((g) => g.service), ["", "a", "a", "b"]);
  assert.equal(
    dumpConfig(balancer, [], 80),
    "# balance configuration, written by dump\n80\nh:1:0:1\n!\n@a\nh:2:0:1\n!\nh:3:0:1\n!\n@b\nh:4:0:1\n%\n",
  );
  // A worker's view follows the layout.
  const worker = new Balancer([], { autodisable: false, hashFailover: false }, undefined, balancer.state);
  worker.adopt(balancer.layout());
  assert.deepEqual([worker.groups.map((g) => g.service), worker.serviceNames()], [["", "a", "a", "b"], ["a", "b"]]);
});

test("services: without any @NAME every group is the default service's, as before", async () => {
  const balancer = balancerOf("h:1", "!", "h:2");
  assert.deepEqual(balancer.serviceNames(), []);
  const c = await balancer.connect("10.0.0.7", dialing([1]));
  assert.equal(c.channel && c.conn, 2);
});
