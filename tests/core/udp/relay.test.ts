import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import {
  Balancer,
  Channel,
  type ChannelSocket,
  type ConnectionRecord,
  DatagramRelay,
  Group,
  MAX_DATAGRAM,
  type UdpFlow,
  type UdpSettings,
} from "../../../src/core/mod.ts";
import type { ListenerOptions } from "../../../src/core/session/listener.ts";

const text = (d: Uint8Array) => new TextDecoder().decode(d);
const bytes = (s: string) => new TextEncoder().encode(s);

/**
 * A relay over `channels` whose sockets are fakes: what the relay sends to
 * clients and channels is recorded; a dial resolves when the test says.
 */
function fixture(udp: Partial<UdpSettings> = {}, options: Partial<ListenerOptions> = {}, channels = 1) {
  const balancer = new Balancer([
    new Group("RR", Array.from({ length: channels }, (_, i) => new Channel("127.0.0.1", 53 + i))),
  ]);
  const toClients: string[] = [];
  const toChannels: string[][] = Array.from({ length: channels }, () => []);
  const records: ConnectionRecord[] = [];
  const dials: (() => void)[] = [];
  const sockets: { closed: boolean }[] = [];
  /** Each session's flow, as the adapter holds it to hand it the channel's answers. */
  const flows: UdpFlow[] = [];
  const relay = new DatagramRelay(
    balancer,
    {
      connectTimeoutMs: 5000,
      idleTimeoutMs: 0,
      warn: () => {},
      onConnectionEnd: (r) => records.push(r),
      ...options,
    },
    { only: true, timeoutMs: 30_000, responses: 0, maxSessions: Infinity, ...udp },
    { send: (d, port, address) => toClients.push(`${address}:${port} ${text(d)}`) },
    (channel, session) =>
      new Promise<ChannelSocket>((resolve) => {
        flows.push(session.link);
        const socket = { closed: false };
        sockets.push(socket);
        const index = channel.port - 53;
        dials.push(() =>
          resolve({ send: (d) => toChannels[index].push(text(d)), close: () => (socket.closed = true) })
        );
      }),
    { address: "127.0.0.1", port: 5353 },
  );
  const connectAll = async () => {
    while (dials.length) dials.shift()!();
    await new Promise((r) => setTimeout(r, 0));
  };
  return { balancer, relay, toClients, toChannels, records, sockets, flows, connectAll };
}

test("udp relay: datagrams that come while the channel socket opens go on in order; one session per client port", async () => {
  const f = fixture({}, {}, 2);
  f.relay.receive(bytes("a1"), "10.0.0.7", 4000);
  f.relay.receive(bytes("a2"), "10.0.0.7", 4000);
  f.relay.receive(bytes("b1"), "10.0.0.7", 4001);
  await f.connectAll();
  f.relay.receive(bytes("a3"), "10.0.0.7", 4000);
  assert.deepEqual(f.toChannels, [["a1", "a2", "a3"], ["b1"]]);
  assert.equal(f.relay.sessions, 2);
  assert.equal(f.balancer.state.udpSessions, 2);
  assert.deepEqual(f.balancer.groups[0].channels.map((c) => [c.c, c.sent]), [[1, 6], [1, 2]]);
});

test("udp relay: --udp-responses N ends a session once N answers came for each client datagram", async () => {
  const f = fixture({ responses: 1 });
  f.relay.receive(bytes("q1"), "10.0.0.7", 4000);
  f.relay.receive(bytes("q2"), "10.0.0.7", 4000);
  await f.connectAll();
  assert.equal(f.records.length, 0);
  const [flow] = f.flows;
  flow.fromChannel(bytes("r1"));
  assert.equal(f.relay.sessions, 1, "two queries in flight: one answer is not the end");
  flow.fromChannel(bytes("r2"));
  assert.equal(f.relay.sessions, 0);
  assert.deepEqual(f.toClients, ["10.0.0.7:4000 r1", "10.0.0.7:4000 r2"]);
  assert.equal(f.records[0].reason, "responses");
  assert.equal(f.records[0].udp, true);
  assert.deepEqual([f.records[0].sent, f.records[0].rcvd], [4, 4]);
  assert.deepEqual(f.sockets.map((s) => s.closed), [true]);
  assert.equal(f.balancer.groups[0].channels[0].c, 0);
  assert.equal(f.balancer.state.udpSessions, 0);
  // An answer after the end goes nowhere.
  flow.fromChannel(bytes("late"));
  assert.equal(f.toClients.length, 2);
});

test("udp relay: the cap, no channel and too large are dropped and counted by reason", async () => {
  const capped = fixture({ maxSessions: 1 });
  capped.relay.receive(bytes("x"), "10.0.0.7", 4000);
  capped.relay.receive(bytes("y"), "10.0.0.8", 4000);
  assert.equal(capped.balancer.state.udpDropped("over-cap"), 1);
  assert.equal(capped.relay.sessions, 1);

  const none = fixture();
  none.balancer.groups[0].channels[0].enabled = false;
  none.relay.receive(bytes("x"), "10.0.0.7", 4000);
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(none.balancer.state.udpDropped("no-channel"), 1);
  assert.equal(none.records[0].reason, "no-channel");
  assert.equal(none.relay.sessions, 0);

  const proxied = fixture({}, { proxyProtocol: 2 });
  proxied.relay.receive(new Uint8Array(MAX_DATAGRAM), "10.0.0.7", 4000);
  proxied.relay.receive(bytes("small"), "10.0.0.7", 4000);
  await proxied.connectAll();
  assert.equal(proxied.balancer.state.udpDropped("too-large"), 1, "a header in front would make it too large");
  assert.equal(proxied.toChannels[0].length, 1);
  assert.ok(proxied.toChannels[0][0].endsWith("small"));
});

test("udp relay: after a stop no session opens; open ones go on; endAll ends them as shutdown", async () => {
  const f = fixture();
  f.relay.receive(bytes("a"), "10.0.0.7", 4000);
  await f.connectAll();
  f.relay.stop();
  f.relay.receive(bytes("b"), "10.0.0.8", 4000);
  f.relay.receive(bytes("c"), "10.0.0.7", 4000);
  assert.deepEqual(f.toChannels, [["a", "c"]]);
  await f.relay.endAll();
  assert.deepEqual(f.records.map((r) => r.reason), ["shutdown"]);
  assert.equal(f.relay.sessions, 0);
});
