import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import { Balancer, Channel, Group } from "../../../src/core/mod.ts";
import { Listener, type ListenerOptions } from "../../../src/core/session/listener.ts";
import type { Session, SessionLink } from "../../../src/core/session/session.ts";
import type { DataAccept, DataSockets } from "../../../src/core/ftp/data.ts";
import { DataSession, FtpSession } from "../../../src/core/ftp/sessions.ts";

class FakeLink implements SessionLink {
  session!: Session<FakeLink>;
  aborted = 0;
  constructor(readonly peer = "10.0.0.7") {}
  abort(): void {
    this.aborted++;
    this.session?.finish();
  }
  clientPort(): number {
    return 40000;
  }
  endpoints() {
    return { src: { address: this.peer, port: 40000 }, dst: { address: "::ffff:10.0.0.1", port: 21 } };
  }
  serverLocalAddress(): string {
    return "10.0.1.1";
  }
}

/** Data sockets that record each listen and hand its `accept` to the test. */
function sockets(taken: number[] = []) {
  const listens: { host: string; port: number; from?: string; accept: DataAccept; closed: boolean }[] = [];
  const data: DataSockets = {
    listen(host, port, from, accept) {
      if (taken.includes(port)) throw new Error("address in use");
      const row = { host, port: port || 50000 + listens.length, from, accept, closed: false };
      listens.push(row);
      return { port: row.port, close: () => void (row.closed = true) };
    },
  };
  return { data, listens };
}

function fixture(options: Partial<ListenerOptions> = {}, taken: number[] = []) {
  const warnings: string[] = [];
  const dumped: string[] = [];
  const channel = new Channel("10.0.2.2", 21);
  const balancer = new Balancer([new Group("RR", [channel])]);
  balancer.warn = (m) => warnings.push(m);
  const s = sockets(taken);
  const listener = new Listener(
    balancer,
    {
      connectTimeoutMs: 200,
      idleTimeoutMs: 0,
      warn: (m) => warnings.push(m),
      dump: (d, c) => dumped.push(`${d}${new TextDecoder().decode(c)}`),
      ftp: {},
      ...options,
    },
    "turn-away",
    s.data,
  );
  return { balancer, listener, channel, warnings, dumped, ...s };
}

const encode = (s: string) => new TextEncoder().encode(s);
const decode = (b: Uint8Array) => new TextDecoder().decode(b);

async function control(f: ReturnType<typeof fixture>) {
  const link = new FakeLink();
  const session = link.session = f.listener.open(link, "10.0.0.7");
  assert.ok(session instanceof FtpSession);
  await session.connect(() => Promise.resolve("server"), () => {});
  session.relaying("-<", encode("220 hello\r\n"));
  session.relaying("->", encode("PASV\r\n"));
  return { link, session };
}

test("ftp sessions: a passive reply opens a listener on the client's side; only the client may connect, once", async () => {
  const f = fixture({ ftp: { address: "203.0.113.5" } });
  const { session } = await control(f);
  const reply = decode(session.relaying("-<", encode("227 Entering Passive Mode (10,0,2,2,117,48).\r\n")));
  assert.equal(reply, "227 Entering Passive Mode (203,0,113,5,195,80).\r\n", "--ftp-address is announced");
  assert.equal(f.listens.length, 1);
  const [l] = f.listens;
  assert.deepEqual(
    [l.host, l.from],
    ["10.0.0.1", "10.0.1.1"],
    "listens where the client connected, dials from the channel side",
  );
  const stranger = new FakeLink("192.0.2.9");
  assert.equal(l.accept(stranger, "192.0.2.9"), undefined);
  assert.equal(f.balancer.state.ftpDataRefused, 1, "the stranger is counted");
  assert.match(
    f.warnings.join("\n"),
    /FTP data connection refused from 192\.0\.2\.9:40000: only 10\.0\.0\.7 may connect/,
  );
  assert.ok(!l.closed, "the listener waits on for the client");
  const link = new FakeLink();
  const data = link.session = l.accept(link, "::ffff:10.0.0.7")!;
  assert.ok(data instanceof DataSession);
  assert.ok(l.closed, "one connection, then the listener closes");
  assert.equal(l.accept(new FakeLink(), "10.0.0.7"), undefined, "no second connection");
  let dialled: Channel | undefined;
  await data.connect((target) => Promise.resolve(void (dialled = target)), () => {});
  assert.deepEqual([dialled!.address, dialled!.port], ["10.0.2.2", 30000], "on to the end the channel named");
  assert.equal(data.opening(undefined), undefined, "no PROXY header on a data connection");
  data.relaying("-<", encode("file"));
  data.countRcvd(4);
  data.countSent(2);
  assert.deepEqual([session.rcvd, session.sent], [4, 2], "data bytes count as the control connection's (the log)");
  assert.deepEqual([f.channel.rcvd, f.channel.sent], [4, 2], "data bytes count on the control's channel");
  assert.equal(f.channel.totalc, 1, "totalc counts the control connection only");
  assert.deepEqual(f.dumped.slice(-1), ["-<file"]);
});

test("ftp sessions: an active command opens a listener on the channel side; only the channel may connect, and its bytes go to the client", async () => {
  const f = fixture();
  const { session } = await control(f);
  const sent = decode(session.relaying("->", encode("PORT 10,0,0,7,200,1\r\n")));
  assert.equal(sent, "PORT 10,0,1,1,195,80\r\n");
  const [l] = f.listens;
  assert.deepEqual([l.host, l.from], ["10.0.1.1", "10.0.0.1"]);
  assert.equal(
    l.accept(new FakeLink("10.0.0.7"), "10.0.0.7"),
    undefined,
    "the client may not connect to the channel side",
  );
  const link = new FakeLink("10.0.2.2");
  const data = link.session = l.accept(link, "10.0.2.2")!;
  let dialled: Channel | undefined;
  await data.connect((target) => Promise.resolve(void (dialled = target)), () => {});
  assert.deepEqual([dialled!.address, dialled!.port], ["10.0.0.7", 51201]);
  data.relaying("->", encode("file"));
  data.countSent(4);
  assert.equal(session.rcvd, 4, "what the channel sends on a data connection is rcvd");
  assert.deepEqual(f.dumped.slice(-1), ["-<file"], "-p shows it as the channel's");
});

test("ftp sessions: a listener nobody connects to closes after -t; the control connection's end ends its data connections", async () => {
  const f = fixture();
  const { session, link } = await control(f);
  session.relaying("-<", encode("229 Entering Extended Passive Mode (|||30001|)\r\n"));
  session.relaying("->", encode("EPSV\r\n"));
  session.relaying("-<", encode("229 Entering Extended Passive Mode (|||30002|)\r\n"));
  const [late, used] = f.listens;
  const dataLink = new FakeLink();
  const data = dataLink.session = used.accept(dataLink, "10.0.0.7")!;
  await data.connect(() => Promise.resolve("conn"), () => {});
  await new Promise((r) => setTimeout(r, 400));
  assert.ok(late.closed, "closed after -t");
  assert.equal(late.accept(new FakeLink(), "10.0.0.7"), undefined);
  link.abort();
  assert.equal(dataLink.aborted, 1, "the data connection ends with its control connection");
  assert.ok(data.isFinished);
});

test("ftp sessions: --ftp-data-ports: a taken port is skipped; none free: 425 and a warning", async () => {
  const f = fixture({ ftp: { ports: { lo: 50010, hi: 50011 } } }, [50010]);
  const { session } = await control(f);
  session.relaying("-<", encode("229 (|||30001|)\r\n"));
  assert.equal(f.listens[0].port, 50011);
  const g = fixture({ ftp: { ports: { lo: 50010, hi: 50011 } } }, [50010, 50011]);
  const c = await control(g);
  assert.equal(decode(c.session.relaying("-<", encode("229 (|||30001|)\r\n"))), "425 Can't open data connection.\r\n");
  assert.match(g.warnings.join("\n"), /no free data port on 10\.0\.0\.1/);
});

test("ftp sessions: data listeners and connections count against the descriptor budget", async () => {
  const f = fixture({ maxConnections: 2 });
  const { session } = await control(f);
  assert.ok(f.listener.admit(), "one control connection of two");
  session.relaying("-<", encode("229 (|||30001|)\r\n"));
  assert.ok(!f.listener.admit(), "its data listener takes the other");
  session.relaying("->", encode("EPSV\r\n"));
  assert.equal(decode(session.relaying("-<", encode("229 (|||30002|)\r\n"))), "425 Can't open data connection.\r\n");
});
