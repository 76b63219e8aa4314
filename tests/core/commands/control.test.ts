import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import {
  Balancer,
  Channel,
  commandHost,
  COMMANDS,
  executeCommand,
  Group,
  MAX_CHANNELS,
  parseServices,
  resolveCommand,
  showJson,
} from "../../../src/core/mod.ts";

function setup() {
  const balancer = new Balancer([
    new Group("RR", [new Channel("127.0.0.1", 8081), new Channel("127.0.0.2", 8082, 10)]),
    new Group("Hash", [new Channel("::1", 9000)]),
  ]);
  const ctx = { balancer, version: "4.0.0", lookupPort: parseServices("http 80/tcp\n") };
  const run = (line: string, group = 0, address?: string) => executeCommand(ctx, group, line, address);
  return { balancer, run, ch: (g: number, n: number) => balancer.groups[g].channels[n] };
}

test("control: abbreviations resolve in balance's order", () => {
  assert.equal(resolveCommand("sh"), "show");
  assert.equal(resolveCommand("s"), "show");
  assert.equal(resolveCommand("d"), "disable");
  assert.equal(resolveCommand("dis"), "disable");
  assert.equal(resolveCommand("en"), "enable");
  assert.equal(resolveCommand("e"), "enable");
  assert.equal(resolveCommand("m"), "maxc");
  assert.equal(resolveCommand("mrtg-b"), "mrtg-bytes");
  assert.equal(resolveCommand("mrtg"), "mrtg-bytes");
  assert.equal(resolveCommand("h"), "help");
  assert.equal(resolveCommand("ha"), "hash");
  assert.equal(resolveCommand("r"), "reset");
  assert.equal(resolveCommand("rr"), "rr");
  assert.equal(resolveCommand("q"), "quit");
  assert.equal(resolveCommand("k"), "kill");
  // The new ones come last: no abbreviation of 3.54 changes meaning.
  assert.deepEqual(COMMANDS.slice(-6), ["health", "leastconn", "weight", "reload", "dump", "clients"]);
  assert.equal(resolveCommand("c"), "create");
  assert.equal(resolveCommand("cl"), "clients");
  assert.equal(resolveCommand("l"), "leastconn");
  assert.equal(resolveCommand("w"), "weight");
  assert.equal(resolveCommand("re"), "reset");
  assert.equal(resolveCommand("rel"), "reload");
  assert.equal(resolveCommand("du"), "dump");
  assert.equal(resolveCommand("he"), "help");
  assert.equal(resolveCommand("?"), "help");
  assert.equal(resolveCommand("xyz"), undefined);
  assert.equal(resolveCommand("showx"), undefined);
});

test("control: show prints balance's header and one row per channel", () => {
  const { run, ch } = setup();
  ch(0, 0).tryClaim();
  ch(0, 0).tryClaim();
  ch(0, 0).totalc = 7;
  ch(0, 0).sent = 1234;
  ch(0, 0).rcvd = 56789;
  const lines = run("show").output.split("\n");
  assert.equal(lines.length, 4);
  assert.deepEqual(lines[0].split(/\s+/), [
    "GRP",
    "Type",
    "#",
    "S",
    "ip-address",
    "port",
    "c",
    "totalc",
    "maxc",
    "sent",
    "rcvd",
  ]);
  assert.deepEqual(lines[1].trim().split(/\s+/), [
    "0",
    "RR",
    "0",
    "ENA",
    "127.0.0.1",
    "8081",
    "2",
    "7",
    "0",
    "1234",
    "56789",
  ]);
  assert.deepEqual(lines[2].trim().split(/\s+/), [
    "0",
    "RR",
    "1",
    "ENA",
    "127.0.0.2",
    "8082",
    "0",
    "0",
    "10",
    "0",
    "0",
  ]);
  assert.deepEqual(lines[3].trim().split(/\s+/), ["1", "Hash", "0", "ENA", "::1", "9000", "0", "0", "0", "0", "0"]);
});

test("control: show --json gives the same as data", () => {
  const { run } = setup();
  const rows = JSON.parse(run("show --json").output);
  assert.equal(rows.length, 3);
  assert.deepEqual(rows[2], {
    service: "",
    group: 1,
    type: "Hash",
    channel: 0,
    enabled: true,
    address: "::1",
    port: 9000,
    c: 0,
    totalc: 0,
    maxc: 0,
    weight: 1,
    sent: 0,
    rcvd: 0,
    health: "none",
    checkFailures: 0,
    lastCheck: null,
    proxyProtocol: "none",
    acceptProxy: false,
    access: { rules: [], proxyFrom: null, maxPerClient: null, ratePerClient: null, clientTable: 0 },
    protocols: ["tcp"],
    engine: "runtime",
  });
  assert.equal(run("show --xml").output, "syntax error");
});

test("control: show --json tells on every channel which PROXY options are on", () => {
  const { balancer } = setup();
  const rows = showJson(balancer, undefined, { send: 2, accept: true });
  assert.deepEqual(rows.map((r) => [r.proxyProtocol, r.acceptProxy]), [["v2", true], ["v2", true], ["v2", true]]);
  assert.equal(showJson(balancer, undefined, { send: 1, accept: false })[0].proxyProtocol, "v1");
});

test("control: show --json says which engine moves TCP bytes (--engine)", () => {
  const { balancer } = setup();
  assert.deepEqual(showJson(balancer, undefined, undefined, undefined, ["tcp"], "native").map((r) => r.engine), [
    "native",
    "native",
    "native",
  ]);
});

test("control: enable and disable answer as balance does", () => {
  const { run, ch } = setup();
  assert.equal(run("disable 1").output, "channel 1 disabled");
  assert.equal(ch(0, 1).enabled, false);
  assert.equal(run("dis 1").output, "channel 1 already disabled");
  assert.equal(run("en 1").output, "channel 1 enabled");
  assert.equal(run("enable 1").output, "channel 1 already enabled");
  assert.equal(run("disable 0", 1).output, "channel 0 disabled");
  assert.equal(ch(1, 0).enabled, false, "acts on the current group");
  assert.equal(ch(0, 0).enabled, true);
});

test("control: bad arguments are syntax errors and change nothing", () => {
  const { run, balancer } = setup();
  const before = run("show --json").output;
  for (
    const line of [
      "disable x",
      "disable",
      "disable 1 2",
      "enable -1",
      "maxc 0",
      "maxc 0 x",
      "maxc 0 -3",
      "frobnicate",
      "reset",
      "group",
      "group x",
      "create 1.2.3.4",
      "assign 0 1.2.3.4",
      "mrtg-bytes 0",
      "mrtg-conns x 0",
      "version 2",
      "disable 0x1",
      "disable 1e2",
      "maxc 0 99999999999",
    ]
  ) {
    assert.equal(run(line).output, "syntax error", line);
  }
  assert.equal(run("show --json").output, before);
  assert.equal(balancer.groups.length, 2);
});

test("control: unknown channels", () => {
  const { run } = setup();
  assert.equal(run("disable 2").output, "no such channel 2");
  assert.equal(run("enable 9").output, "no such channel 9");
  assert.equal(run("reset 1", 1).output, "no such channel 1");
  assert.equal(run("mrtg-bytes 3 0").output, "no such channel 0");
});

test("control: maxc and reset", () => {
  const { run, ch } = setup();
  assert.equal(run("maxc 0 16").output, "maxc of channel 0 changed to 16");
  assert.equal(ch(0, 0).maxc, 16);
  ch(0, 0).tryClaim();
  Object.assign(ch(0, 0), { totalc: 9, sent: 10, rcvd: 11 });
  assert.equal(run("reset 0").output, "channel 0 counters reset");
  assert.deepEqual([ch(0, 0).c, ch(0, 0).totalc, ch(0, 0).sent, ch(0, 0).rcvd], [1, 0, 0, 0], "c is live: kept");
});

test("control: create adds a disabled channel; assign only when disabled", () => {
  const { run, ch, balancer } = setup();
  assert.equal(run("create 127.0.0.9 http").output, "channel created");
  assert.deepEqual([ch(0, 2).address, ch(0, 2).port, ch(0, 2).enabled], ["127.0.0.9", 80, false]);
  assert.equal(run("create not-an-ip 80").output, "invalid address");
  assert.equal(run("create 127.0.0.9 0").output, "invalid address");
  assert.equal(run("create ::1 99999").output, "invalid address");
  assert.equal(run("assign 0 127.0.0.5 81").output, "channel must be disabled to assign new address");
  assert.equal(run("assign 2 127.0.0.5 81").output, "channel reassigned");
  assert.deepEqual([ch(0, 2).address, ch(0, 2).port], ["127.0.0.5", 81]);
  assert.equal(run("assign 2 bogus 81").output, "invalid address");
  assert.equal(balancer.groups[0].channels.length, 3);
});

test("control: create stops at the channel limit", () => {
  const { run, balancer } = setup();
  while (balancer.groups[0].channels.length < MAX_CHANNELS) {
    balancer.groups[0].channels.push(new Channel("127.0.0.1", 1));
  }
  assert.equal(run("create 127.0.0.1 2").output, "no channel slots available");
});

test("control: group, hash and rr", () => {
  const { run, balancer } = setup();
  assert.deepEqual(run("group 1"), { output: "", group: 1 });
  assert.equal(run("group 99999").output, "value out of range");
  assert.equal(run("group 99999").group, 0);
  // The current group comes from the client: a bad one changes nothing.
  assert.equal(run("rr", 64).output, "value out of range");
  assert.equal(run("create 127.0.0.1 80", 1e9).output, "value out of range");
  assert.equal(balancer.groups.length, 2);
  assert.equal(run("hash", 0).output, "group 0 set to hash");
  assert.equal(balancer.groups[0].type, "Hash");
  assert.equal(run("rr", 1).output, "group 1 set to round robin");
  assert.equal(balancer.groups[1].type, "RR");
  assert.deepEqual(run("leastconn", 1), { output: "group 1 set to least connection", group: 1 });
  assert.equal(balancer.groups[1].type, "LC");
  assert.match(run("show").output.split("\n")[3], /^ {2}1 LC {4}0 ENA/);
  assert.equal(JSON.parse(run("show --json").output)[2].type, "LC");
  assert.equal(run("rr", 1).output, "group 1 set to round robin");
  assert.equal(balancer.groups[1].type, "RR");
  // A new group: select it, create a channel in it.
  assert.equal(run("group 2").group, 2);
  assert.equal(run("create 127.0.0.3 83", 2).output, "channel created");
  assert.equal(balancer.groups.length, 3);
});

test("control: weight N W sets a channel's weight, 0-256, and tells every thread", () => {
  const { run, ch, balancer } = setup();
  const generation = balancer.groups[0].generation;
  assert.deepEqual(run("weight 1 5"), { output: "weight of channel 1 changed to 5", group: 0 });
  assert.equal(ch(0, 1).weight, 5);
  assert.notEqual(balancer.groups[0].generation, generation, "derived schedules are rebuilt");
  assert.equal(run("w 0 0").output, "weight of channel 0 changed to 0");
  assert.equal(run("weight 0 256").output, "weight of channel 0 changed to 256");
  assert.equal(JSON.parse(run("show --json").output)[1].weight, 5);
  for (
    const [line, answer] of [
      ["weight 0 257", "value out of range"],
      ["weight 0 -1", "syntax error"],
      ["weight 0", "syntax error"],
      ["weight 0 x", "syntax error"],
      ["weight 9 1", "no such channel 9"],
    ]
  ) {
    assert.deepEqual(run(line), { output: answer, group: 0, error: true }, line);
  }
  assert.equal(ch(0, 0).weight, 256);
  assert.equal(run("weight 0 2", 1).output, "weight of channel 0 changed to 2");
  assert.equal(ch(1, 0).weight, 2);
});

test("control: mrtg formats", () => {
  const { run, ch } = setup();
  Object.assign(ch(1, 0), { totalc: 5, sent: 100, rcvd: 200 });
  assert.equal(run("mrtg-bytes 1 0").output, "200\n100\nUNKNOWN\ngroup 1 channel 0");
  assert.equal(run("mrtg-conns 1 0").output, "5\nUNKNOWN\nUNKNOWN\ngroup 1 channel 0");
});

test("control: help, version, kill, quit, empty line", () => {
  const { run } = setup();
  const help = run("?").output.split("\n");
  assert.equal(help.length, COMMANDS.length);
  for (const c of COMMANDS) assert.ok(help.some((l) => l.startsWith(c)), c);
  assert.match(run("version").output, /^This is balance 4\.0\.0\nMAXGROUPS=\d+\nMAXCHANNELS=\d+$/);
  assert.deepEqual(run("kill"), { output: "shutdown complete, exiting.", group: 0, kill: true });
  assert.deepEqual(run("quit"), { output: "", group: 0, quit: true });
  assert.deepEqual(run("   "), { output: "", group: 0 });
});

test("control: reload is an effect the application carries out, like kill; only alone", () => {
  const { run } = setup();
  assert.deepEqual(run("rel"), { output: "", group: 0, reload: true });
  assert.deepEqual(run("reload now"), { output: "syntax error", group: 0, error: true });
});

test("control: error answers say so (-c exits 65 on them); successful ones do not", () => {
  const { run } = setup();
  for (
    const [line, group] of [
      ["frobnicate", 0],
      ["disable x", 0],
      ["disable 7", 0],
      ["group 99999", 0],
      ["rr", 64],
      ["create not-an-ip 80", 0],
      ["create 127.0.0.1 0", 0],
      ["assign 0 127.0.0.5 81", 0],
      ["mrtg-bytes 3 0", 0],
      ["show --xml", 0],
      ["maxc 0 x", 0],
      ["weight 0 257", 0],
    ] as const
  ) {
    assert.equal(run(line, group).error, true, line);
  }
  for (
    const line of [
      "show",
      "disable 0",
      "disable 0",
      "enable 0",
      "maxc 0 3",
      "reset 0",
      "hash",
      "rr",
      "leastconn",
      "weight 0 3",
      "help",
      "",
    ]
  ) {
    assert.equal(run(line).error, undefined, `${line}: 'already disabled' is the state asked for, no error`);
  }
  const { balancer, run: fill } = setup();
  while (balancer.groups[0].channels.length < MAX_CHANNELS) balancer.groups[0].channels.push(new Channel("::1", 1));
  assert.deepEqual(fill("create 127.0.0.1 2"), { output: "no channel slots available", group: 0, error: true });
});

test("control: every change is logged, errors and reads are not", () => {
  const { balancer } = setup();
  const lines: string[] = [];
  const ctx = { balancer, version: "4.0.0", lookupPort: parseServices(""), log: (l: string) => lines.push(l) };
  const run = (line: string, group = 0, address?: string) => executeCommand(ctx, group, line, address);
  for (const line of ["show", "disable 9", "disable x", "help", "version", "mrtg-bytes 0 0", "group 1"]) run(line);
  assert.deepEqual(lines, []);
  run("disable 1");
  run("disable 1");
  run("enable 1");
  run("disable 0", 1);
  run("maxc 0 16");
  run("reset 0");
  run("hash", 1);
  run("rr", 1);
  run("leastconn", 1);
  run("weight 0 3");
  run("weight 0 300");
  run("create [fd00::1] 8080");
  run("assign 2 web9 81", 0, "10.0.0.9");
  run("kill");
  assert.deepEqual(lines, [
    "control: channel 1 of group 0 disabled",
    "control: channel 1 of group 0 enabled",
    "control: channel 0 of group 1 disabled",
    "control: maxc of channel 0 of group 0 changed to 16",
    "control: channel 0 of group 0 counters reset",
    "control: group 1 set to hash",
    "control: group 1 set to round robin",
    "control: group 1 set to least connection",
    "control: weight of channel 0 of group 0 changed to 3",
    "control: channel 2 of group 0 created for [fd00::1]:8080 (disabled)",
    "control: channel 2 of group 0 reassigned to 10.0.0.9:81",
    "control: kill",
  ]);
});

test("control: create and assign take bracketed IPv6 and the address a host name resolved to", () => {
  const { run, ch } = setup();
  assert.equal(commandHost("create [fd00::1] 80"), "fd00::1");
  assert.equal(commandHost("cr web1 http"), "web1");
  assert.equal(commandHost("assign 2 [::1] 80"), "::1");
  assert.equal(commandHost("as 2 web2 80"), "web2");
  for (const line of ["show", "create web1", "assign 2 web2", "disable 1", "create a b c"]) {
    assert.equal(commandHost(line), undefined, line);
  }
  assert.equal(run("create [fd00::1] 80").output, "channel created");
  assert.deepEqual([ch(0, 2).address, ch(0, 2).port], ["fd00::1", 80]);
  assert.equal(run("create web1 81", 0, "10.1.2.3").output, "channel created");
  assert.deepEqual([ch(0, 3).address, ch(0, 3).port], ["10.1.2.3", 81]);
  assert.equal(run("create web1 81").output, "invalid address", "a name nobody resolved");
  assert.equal(run("create web1 81", 0, "garbage").output, "invalid address", "only an address is taken");
  assert.equal(run("create [fd00::1 81").output, "invalid address");
  assert.equal(run("assign 3 [::1] 82").output, "channel reassigned");
  assert.deepEqual([ch(0, 3).address, ch(0, 3).port], ["::1", 82]);
  assert.equal(run("assign 3 web2 83", 0, "192.0.2.1").output, "channel reassigned");
  assert.deepEqual([ch(0, 3).address, ch(0, 3).port], ["192.0.2.1", 83]);
  assert.equal(run("assign 3 web2 83").output, "invalid address");
});

test("control: show widens the address column for long addresses, keeping every column aligned", () => {
  const { run } = setup();
  const long = "fd00:1234:5678:9abc:def0:1234:5678:9abc";
  assert.equal(run(`create [${long}] 8080`).output, "channel created");
  const lines = run("show").output.split("\n");
  const header = lines[0];
  // Each row's fields end where the header's column titles end.
  const ends = (line: string) => [...line.matchAll(/\S+/g)].map((m) => m.index! + m[0].length);
  const titleEnds = ends(header);
  for (const row of lines.slice(1)) {
    const fieldEnds = ends(row);
    assert.deepEqual(
      fieldEnds.slice(5),
      titleEnds.slice(5),
      `port..rcvd right-aligned under the header:\n${header}\n${row}`,
    );
    assert.equal(
      row.indexOf(row.trim().split(/\s+/)[4]),
      header.indexOf("ip-address"),
      "address column starts at its title",
    );
  }
  assert.equal(header.indexOf("port"), header.indexOf("ip-address") + long.length + 2);
  // Short addresses keep balance 3.54's width of 15.
  assert.match(setup().run("show").output, /^GRP Type {2}# S {3}ip-address {7}port/);
});
