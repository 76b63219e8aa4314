import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import {
  type AccessSettings,
  Balancer,
  Channel,
  ClientGate,
  ClientTable,
  type ConnectionRecord,
  Group,
  parseSniRoute,
  sniRouting,
} from "../../../src/core/mod.ts";
import { type Fixture, OPENSSL_NO_SNI, OPENSSL_SNI } from "../tls/fixtures.ts";
import { sleep } from "../../support/helpers.ts";
import { Listener, type ListenerOptions } from "../../../src/core/session/listener.ts";
import type { Session, SessionLink } from "../../../src/core/session/session.ts";

/**
 * A link as an adapter keeps one: closing it finishes the session at once,
 * unless a relay is running (the Deno adapter), which then finishes it.
 */
class FakeLink implements SessionLink {
  session!: Session<FakeLink>;
  aborted = 0;
  relaying = false;
  abort(): void {
    this.aborted++;
    if (!this.relaying) this.session.finish();
  }
  clientPort(): number {
    return 40000;
  }
  endpoints() {
    return { src: { address: "10.0.0.7", port: 40000 }, dst: { address: "10.0.0.1", port: 80 } };
  }
  serverLocalAddress(): string {
    return "10.0.1.1";
  }
}

/** A listener over one channel (or `channels`) that records what it is told. */
function fixture(options: Partial<ListenerOptions> = {}, channels = [new Channel("127.0.0.1", 81)]) {
  const records: ConnectionRecord[] = [];
  const traces: string[] = [];
  const warnings: string[] = [];
  const dumped: string[] = [];
  const balancer = new Balancer([new Group("RR", channels)]);
  balancer.warn = (m) => warnings.push(m);
  const listener = new Listener(balancer, {
    connectTimeoutMs: 5000,
    idleTimeoutMs: 0,
    warn: (m) => warnings.push(m),
    trace: (m) => traces.push(m),
    dump: (d, c) => dumped.push(`${d}${new TextDecoder().decode(c)}`),
    onConnectionEnd: (r) => records.push(r),
    ...options,
  }, "turn-away");
  const open = (address = "10.0.0.7") => {
    const link = new FakeLink();
    link.session = listener.open(link, address);
    return link;
  };
  return { balancer, listener, records, traces, warnings, dumped, open, channel: channels[0] };
}

/** A dial that the test settles by hand. */
function pendingDial() {
  let settle!: { resolve: (conn: string) => void; reject: (err: Error) => void };
  const promise = new Promise<string>((resolve, reject) => (settle = { resolve, reject }));
  return { dial: () => promise, settle };
}

const hungUp: string[] = [];
const hangUp = (conn: string) => void hungUp.push(conn);
const encode = (s: string) => new TextEncoder().encode(s);

test("session: relayed bytes are dumped before they are written and counted once written; the first FIN names the end", async () => {
  const f = fixture();
  const { session } = f.open();
  assert.equal(await session.connect(() => Promise.resolve("conn"), hangUp), "conn");
  session.relaying("->", encode("GET /"));
  assert.equal(f.channel.sent, 0, "not counted before it is written");
  session.countSent(5);
  session.relaying("-<", encode("200"));
  session.countRcvd(3);
  session.ended("server");
  session.ended("client");
  session.finish();
  session.finish();
  assert.deepEqual(f.dumped, ["->GET /", "-<200"]);
  assert.equal(f.records.length, 1, "recorded exactly once");
  const [r] = f.records;
  assert.deepEqual([r.channel, r.sent, r.rcvd, r.reason], ["group 0 channel 0 (127.0.0.1:81)", 5, 3, "server-closed"]);
  assert.deepEqual([f.channel.sent, f.channel.rcvd, f.channel.c, f.balancer.openConnections()], [5, 3, 0, 0]);
  assert.ok(f.traces.includes("10.0.0.7: closed group 0 channel 0 (127.0.0.1:81), channel sent 5 rcvd 3"));
});

test("session: a reset beats a FIN that came before it; the first tear-down reason stays", async () => {
  const f = fixture();
  const link = f.open();
  await link.session.connect(() => Promise.resolve("conn"), hangUp);
  link.session.ended("client");
  link.session.abort("server-reset");
  link.session.abort("shutdown");
  assert.equal(link.aborted, 1, "a finished session is not aborted again");
  assert.equal(f.records[0].reason, "server-reset");
});

test("session: no usable channel, or every connect refused: the client is closed and recorded without a channel", async () => {
  const f = fixture();
  f.channel.enabled = false;
  const none = f.open();
  assert.equal(await none.session.connect(() => Promise.resolve("conn"), hangUp), undefined);
  f.channel.enabled = true;
  const refused = f.open();
  const got = await refused.session.connect(() => Promise.reject(new Error("connection refused")), hangUp);
  assert.equal(got, undefined);
  assert.deepEqual([none.aborted, refused.aborted], [1, 1]);
  assert.deepEqual(f.records.map((r) => [r.channel, r.reason]), [
    [undefined, "no-channel"],
    [undefined, "connect-failed"],
  ]);
  assert.equal(f.balancer.openConnections(), 0);
});

test("session: a client that leaves during the connect is reported once the connect settles, with its channel", async () => {
  const f = fixture();
  const link = f.open();
  const { dial, settle } = pendingDial();
  const connecting = link.session.connect(dial, hangUp);
  // The adapter saw the client's FIN and closed: the session waits for the connect.
  link.session.ended("client");
  link.abort();
  assert.equal(f.records.length, 0, "nothing reported while connecting");
  hungUp.length = 0;
  settle.resolve("late-conn");
  assert.equal(await connecting, undefined, "nothing to relay");
  assert.deepEqual(hungUp, ["late-conn"], "the connection made is closed");
  assert.equal(f.records.length, 1);
  assert.deepEqual([f.records[0].channel, f.records[0].reason], ["group 0 channel 0 (127.0.0.1:81)", "client-closed"]);
  assert.deepEqual([f.channel.c, f.balancer.openConnections()], [0, 0], "released");
});

test("session: a client that leaves during a connect that then fails is reported as connect-failed", async () => {
  const f = fixture();
  const link = f.open();
  const { dial, settle } = pendingDial();
  const connecting = link.session.connect(dial, hangUp);
  link.session.ended("client");
  link.abort();
  settle.reject(new Error("connection refused"));
  assert.equal(await connecting, undefined);
  assert.deepEqual(f.records.map((r) => [r.channel, r.reason]), [[undefined, "connect-failed"]]);
});

test("session: the server resets during the early bytes: server-reset, only what it took is counted", async () => {
  const f = fixture();
  const link = f.open();
  await link.session.connect(() => Promise.resolve("conn"), hangUp);
  assert.deepEqual(link.session.opening(encode("early")), encode("early"));
  link.session.abort("server-reset");
  assert.deepEqual([f.records[0].reason, f.records[0].sent, f.channel.sent], ["server-reset", 0, 0]);
  assert.deepEqual(f.dumped, ["->early"]);
});

test("session: with --proxy-protocol the header carries the client and the address it reached", async () => {
  const f = fixture({ proxyProtocol: 1 });
  const link = f.open();
  await link.session.connect(() => Promise.resolve("conn"), hangUp);
  assert.equal(
    new TextDecoder().decode(link.session.opening(undefined)),
    "PROXY TCP4 10.0.0.7 10.0.0.1 40000 80\r\n",
  );
  assert.equal(fixture().open().session.opening(undefined), undefined);
});

test("session: the PROXY header and the early bytes go in one write; only the client's bytes are counted, however the write is cut", async () => {
  const f = fixture({ proxyProtocol: 1 });
  const link = f.open();
  await link.session.connect(() => Promise.resolve("conn"), hangUp);
  const opening = link.session.opening(encode("GET /"))!;
  const header = "PROXY TCP4 10.0.0.7 10.0.0.1 40000 80\r\n";
  assert.equal(new TextDecoder().decode(opening), header + "GET /");
  assert.deepEqual(f.dumped, ["->GET /"]);
  link.session.countSent(10); // inside the header
  link.session.countSent(header.length - 10 + 2); // the rest of it and "GE"
  assert.equal(link.session.sent, 2);
  link.session.countSent(3);
  link.session.countSent(7); // later chunks count whole
  assert.deepEqual([link.session.sent, f.channel.sent], [12, 12]);
});

test("session: --accept-proxy: a header in pieces, then the client is known by the address it names", () => {
  const f = fixture({ acceptProxy: true });
  const { session } = f.open("127.0.0.1");
  assert.equal(session.inspecting, true);
  assert.equal(session.inspect(encode("PROXY TCP4 10.9.8.7 ")), "more");
  const rest = session.inspect(encode("10.0.0.1 4000 80\r\nGET /"));
  assert.ok(rest instanceof Uint8Array);
  assert.equal(new TextDecoder().decode(rest), "GET /");
  assert.deepEqual([session.clientAddress, session.clientPort, session.inspecting], ["10.9.8.7", 4000, false]);
  assert.equal(f.listener.admit(), true);
  session.abort("client-closed");
  assert.equal(f.records[0].clientAddress, "10.9.8.7");
});

test("session: --accept-proxy: a bare connect that leaves is a front balancer's check: not refused, not recorded", () => {
  const f = fixture({ acceptProxy: true });
  const link = f.open();
  link.session.inspectionCut();
  assert.equal(link.aborted, 1);
  assert.deepEqual([f.records.length, f.balancer.state.proxyRefused, f.warnings.length], [0, 0, 0]);
});

test("session: --accept-proxy: a client that leaves during its header is refused, counted and recorded", () => {
  const f = fixture({ acceptProxy: true });
  const link = f.open();
  assert.equal(link.session.inspect(encode("PROXY TCP4 10.")), "more");
  link.session.inspectionCut();
  assert.deepEqual([f.records[0].reason, f.balancer.state.proxyRefused], ["proxy-refused", 1]);
  assert.match(f.warnings[0], /^PROXY header refused from 10\.0\.0\.7:40000: client closed after 14 bytes$/);
});

test("session: --accept-proxy: a malformed header is refused at once", () => {
  const f = fixture({ acceptProxy: true });
  const link = f.open();
  assert.equal(link.session.inspect(encode("GET / HTTP/1.1\r\n")), "refused");
  assert.deepEqual([link.aborted, f.records[0].reason, f.balancer.state.proxyRefused], [1, "proxy-refused", 1]);
});

test("session: --accept-proxy: no whole header within -t is refused by the listener's timer", async () => {
  const f = fixture({ acceptProxy: true, connectTimeoutMs: 30 });
  const link = f.open();
  link.session.inspect(encode("PROXY"));
  const deadline = Date.now() + 5000;
  while (f.records.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(f.records[0]?.reason, "proxy-refused");
  assert.match(f.warnings[0], /: none within 0\.03s$/);
});

test("session: --accept-proxy: a stop during a header ends it as shutdown, not as a refusal", async () => {
  const f = fixture({ acceptProxy: true });
  const link = f.open();
  link.session.inspect(encode("PROXY TCP4"));
  await f.listener.endAll();
  assert.deepEqual([f.records[0].reason, f.balancer.state.proxyRefused, f.warnings.length], ["shutdown", 0, 0]);
  assert.equal(f.listener.admit(), true, "no longer awaiting a header");
});

test("listener: a stop ends every open session as shutdown and waits for a relay to wind down", async () => {
  const f = fixture();
  const relayed = f.open();
  await relayed.session.connect(() => Promise.resolve("conn"), hangUp);
  relayed.relaying = true;
  const idle = f.open();
  const ending = f.listener.endAll();
  assert.deepEqual(f.records.map((r) => r.reason), ["shutdown"], "the one without a relay at once");
  relayed.relaying = false;
  relayed.session.finish();
  await ending;
  assert.deepEqual(f.records.map((r) => r.reason), ["shutdown", "shutdown"]);
  assert.equal(idle.aborted, 1);
});

test("listener: clients awaiting a header count against the budget; the warning says so once", () => {
  const f = fixture({ acceptProxy: true, maxConnections: 2 });
  assert.equal(f.listener.admit(), true);
  f.open();
  f.open();
  assert.equal(f.listener.admit(), false);
  assert.equal(f.listener.admit(), false);
  assert.deepEqual(f.warnings, ["at the limit of 2 connections: turning new clients away"]);
});

test("session: the idle timeout tears a quiet session down as idle-timeout", async () => {
  const f = fixture({ idleTimeoutMs: 60 });
  const link = f.open();
  await link.session.connect(() => Promise.resolve("conn"), hangUp);
  const deadline = Date.now() + 5000;
  while (f.records.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(f.records[0]?.reason, "idle-timeout");
});

test("session: without a connection log nothing is recorded and the client's port is not asked for", () => {
  const f = fixture({ onConnectionEnd: undefined, trace: undefined });
  const link = f.open();
  assert.equal(link.session.clientPort, 0);
  link.session.abort("client-reset");
  assert.equal(f.records.length, 0);
});

test("listener: a connect still in flight after -t is timed out by the listener's one clock; a settled one is not", async () => {
  const f = fixture({ connectTimeoutMs: 30 });
  const expired: string[] = [];
  const slow = { timedOut: () => expired.push("slow") };
  const quick = { timedOut: () => expired.push("quick") };
  f.listener.watchConnect(slow);
  f.listener.watchConnect(quick);
  f.listener.connectSettled(quick);
  const deadline = Date.now() + 5000;
  while (expired.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(expired, ["slow"]);
  assert.equal(f.listener.connectTimeoutError().message, "connect timed out after 0.03s");
});

test("listener: a session task that throws is reported as an internal error, not lost", () => {
  const f = fixture();
  f.listener.unexpected(new Error("boom"));
  assert.deepEqual(f.warnings, ["internal error in a connection: boom"]);
});

/** A fixture whose listener has an access gate with `settings`; the gate's warnings are kept with the others. */
function gated(settings: AccessSettings, options: Partial<ListenerOptions> = {}) {
  const warned: string[] = [];
  const f = fixture(options);
  const gate = new ClientGate(ClientTable.create(64), f.balancer.state, (m) => warned.push(m), settings);
  (f.listener.options as ListenerOptions).gate = gate;
  return { ...f, gate, warned };
}

test("session: a denied client is closed before any channel is chosen: no dial, c and totalc unmoved, recorded as denied", async () => {
  const f = gated({ rules: [{ action: "deny", spec: "10.0.0.0/24" }] });
  let dialled = 0;
  const link = f.open("10.0.0.7");
  assert.equal(await link.session.connect(() => Promise.resolve(String(++dialled)), hangUp), undefined);
  assert.deepEqual([dialled, link.aborted, f.channel.c, f.channel.totalc], [0, 1, 0, 0]);
  assert.deepEqual([f.records[0].reason, f.records[0].channel], ["denied", undefined]);
  assert.deepEqual(f.warned, ["client 10.0.0.7 denied by --deny 10.0.0.0/24"]);
  assert.equal(f.balancer.state.denied, 1);
  const other = f.open("10.0.1.7");
  assert.equal(await other.session.connect(() => Promise.resolve("conn"), hangUp), "conn");
});

test("session: --max-per-client: the connection over the limit is refused as limited; one that ends makes room", async () => {
  const f = gated({ rules: [], maxPerClient: 1 });
  const first = f.open();
  assert.equal(await first.session.connect(() => Promise.resolve("conn"), hangUp), "conn");
  const second = f.open();
  assert.equal(await second.session.connect(() => Promise.resolve("conn"), hangUp), undefined);
  assert.equal(f.records[0].reason, "limited");
  assert.deepEqual(f.warned, ["client 10.0.0.7 limited by --max-per-client 1"]);
  assert.equal(f.balancer.state.limited("concurrent"), 1);
  first.session.abort("client-closed");
  const third = f.open();
  assert.equal(await third.session.connect(() => Promise.resolve("conn"), hangUp), "conn");
  assert.deepEqual(f.gate.top(1).map((r) => [r.open, r.total, r.refused]), [[1, 2, 1]]);
});

test("session: --accept-proxy: rules apply to the header's client; --proxy-from closes any other peer before its header", async () => {
  const f = gated({ rules: [{ action: "deny", spec: "10.9.8.7" }], proxyFrom: "127.0.0.2" }, { acceptProxy: true });
  const stranger = f.open("127.0.0.3");
  assert.equal(stranger.session.inspecting, false, "no header is read from a peer --proxy-from does not name");
  assert.equal(await stranger.session.connect(() => Promise.resolve("conn"), hangUp), undefined);
  assert.equal(f.records[0].reason, "denied");
  assert.equal(f.warned[0], "client 127.0.0.3 denied by --proxy-from");
  const front = f.open("127.0.0.2");
  assert.equal(front.session.inspect(encode("PROXY TCP4 10.9.8.7 10.0.0.1 4000 80\r\nGET /")), "refused");
  assert.equal(front.aborted, 1, "closed as soon as the header names a denied client");
  assert.deepEqual([f.records[1].reason, f.records[1].clientAddress], ["denied", "10.9.8.7"]);
  assert.equal(f.warned[1], "client 10.9.8.7 denied by --deny 10.9.8.7");
  assert.equal(f.balancer.state.denied, 2);
});

test("session: a reload's new rules take the next client at once; counts survive it", async () => {
  const f = gated({ rules: [], maxPerClient: 5 });
  const open = f.open();
  assert.equal(await open.session.connect(() => Promise.resolve("conn"), hangUp), "conn");
  f.gate.configure({ rules: [{ action: "deny", spec: "10.0.0.7" }], maxPerClient: 5 });
  assert.equal(await f.open().session.connect(() => Promise.resolve("conn"), hangUp), undefined);
  assert.equal(open.session.isFinished, false, "the open connection stays");
  assert.deepEqual(f.gate.top(1).map((r) => [r.open, r.total, r.refused]), [[1, 1, 1]]);
});

const helloBytes = (f: Fixture) => Uint8Array.from(f.hex.replace(/\s/g, "").match(/../g)!.map((b) => parseInt(b, 16)));

/** A fixture with --sni routes over three services: default (channel 81), @a (82), @api (83). */
function sniFixture(options: Partial<ListenerOptions> = {}, defaultService = "") {
  const channels = [81, 82, 83].map((p) => new Channel("127.0.0.1", p));
  const f = fixture({
    sni: sniRouting([parseSniRoute("a.test=@a"), parseSniRoute("*.api.test=@api")], defaultService),
    ...options,
  }, channels);
  f.balancer.groups.splice(0, 1, ...channels.map((c) => new Group("RR", [c])));
  f.balancer.groups[1].service = "a";
  f.balancer.groups[2].service = "api";
  f.balancer.servicesChanged();
  const port = async (link: { session: Session<SessionLink> }) =>
    Number(await link.session.connect((ch) => Promise.resolve(String(ch.port)), hangUp));
  return { ...f, port };
}

test("session: --sni: a ClientHello in pieces picks its service; the bytes read go to the channel first, byte for byte", async () => {
  const f = sniFixture();
  const link = f.open();
  const hello = helloBytes(OPENSSL_SNI);
  assert.equal(link.session.inspecting, true);
  assert.equal(link.session.inspect(hello.subarray(0, 7)), "more");
  const early = link.session.inspect(hello.subarray(7));
  assert.ok(early instanceof Uint8Array);
  assert.deepEqual(early, hello);
  assert.equal(link.session.inspecting, false);
  assert.equal(await f.port(link), 82);
  assert.ok(f.traces.some((t) => t.endsWith("server name a.test: --sni a.test=@a service @a")), f.traces.join("\n"));
  link.session.abort("client-closed");
  assert.equal(f.records[0].serverName, "a.test");
  assert.match(f.records[0].channel!, /^@a group 1 channel 0/);
});

test("session: --sni: no server name, or not TLS at all, goes to --sni-default; the PROXY header is read first", async () => {
  const f = sniFixture({ acceptProxy: true }, "api");
  const noName = f.open("127.0.0.2");
  assert.equal(noName.session.inspect(encode("PROXY TCP4 10.9.8.7 10.0.0.1 4000 443\r\n")), "more");
  assert.ok(noName.session.inspect(helloBytes(OPENSSL_NO_SNI)) instanceof Uint8Array);
  assert.deepEqual([noName.session.clientAddress, await f.port(noName)], ["10.9.8.7", 83]);
  const ssh = f.open("127.0.0.2");
  const rest = ssh.session.inspect(encode("PROXY TCP4 10.9.8.6 10.0.0.1 4000 443\r\nSSH-2.0-OpenSSH\r\n"));
  assert.equal(new TextDecoder().decode(rest as Uint8Array), "SSH-2.0-OpenSSH\r\n");
  assert.equal(await f.port(ssh), 83);
});

test("session: --sni: a malformed ClientHello, one cut short, or none within -t is refused without a channel", async () => {
  const f = sniFixture({ connectTimeoutMs: 30 });
  const bad = f.open();
  assert.equal(bad.session.inspect(Uint8Array.from([0x16, 3, 1, 0, 5, 2, 0, 0, 1, 0])), "refused");
  const cut = f.open();
  assert.equal(cut.session.inspect(helloBytes(OPENSSL_SNI).subarray(0, 40)), "more");
  cut.session.inspectionCut();
  const late = f.open();
  late.session.inspect(Uint8Array.from([0x16, 3, 1]));
  await sleep(150);
  assert.deepEqual(f.records.map((r) => [r.reason, r.channel]), [
    ["sni-refused", undefined],
    ["sni-refused", undefined],
    ["sni-refused", undefined],
  ]);
  assert.equal(f.balancer.state.sniRefused, 3);
  assert.match(f.warnings.join("\n"), /TLS ClientHello refused from 10\.0\.0\.7:40000: not a ClientHello/);
  assert.deepEqual([f.channel.totalc, f.balancer.openConnections()], [0, 0]);
  // A bare connect that leaves is a check, as with --accept-proxy: nothing to report.
  const probe = f.open();
  probe.session.inspectionCut();
  assert.equal(f.records.length, 3);
});

test("session: --sni with rules: a denied client is closed at accept, before any ClientHello is read", async () => {
  const f = sniFixture();
  const gate = new ClientGate(ClientTable.create(64), f.balancer.state, () => {}, {
    rules: [{ action: "deny", spec: "10.0.0.7" }],
  });
  (f.listener.options as ListenerOptions).gate = gate;
  const denied = f.open("10.0.0.7");
  assert.equal(denied.session.inspecting, false);
  assert.equal(await denied.session.connect(() => Promise.resolve("conn"), hangUp), undefined);
  assert.deepEqual([f.records[0].reason, f.balancer.state.sniRefused, f.balancer.state.denied], ["denied", 0, 1]);
  assert.equal(f.open("10.0.0.8").session.inspecting, true, "an allowed client's ClientHello is read");
});
