import { test } from "../../support/test.ts";
import assert from "node:assert/strict";
import fc from "fast-check";
import { FtpControl, type FtpHost, MAX_LINE } from "../../../src/core/ftp/control.ts";
import type { HostPort } from "../../../src/core/ftp/addresses.ts";

const encode = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const decode = (b: Uint8Array) => String.fromCharCode(...b);

/** A host that opens "listeners" on 10.0.0.1 (client side) and 10.0.1.1 (channel side), port 40000 on. */
function host(opens = true) {
  const passive: HostPort[] = [];
  const active: HostPort[] = [];
  const warnings: string[] = [];
  let next = 40000;
  const h: FtpHost = {
    clientAddress: "10.0.0.7",
    serverAddress: "10.0.2.2",
    openPassive(server) {
      passive.push(server);
      return opens ? { address: "10.0.0.1", port: next++ } : undefined;
    },
    openActive(client) {
      active.push(client);
      return opens ? { address: "10.0.1.1", port: next++ } : undefined;
    },
    warn: (m) => void warnings.push(m),
  };
  return { h, passive, active, warnings };
}

/** Client and server lines, in the order given, through one control; what each side received. */
function converse(control: FtpControl, steps: ["c" | "s", string][]) {
  let toServer = "";
  let toClient = "";
  for (const [side, text] of steps) {
    if (side === "c") toServer += decode(control.fromClient(encode(text)));
    else toClient += decode(control.fromServer(encode(text)));
  }
  return { toServer, toClient };
}

const GREETING: ["s", string] = ["s", "220 (vsFTPd 3.0.3)\r\n"];

test("ftp control: 227 and 229 replies name balance's data listener; the channel's end is where it goes on to", () => {
  const t = host();
  const { toClient } = converse(new FtpControl(t.h), [
    GREETING,
    ["c", "PASV\r\n"],
    ["s", "227 Entering Passive Mode (10,0,2,2,117,48).\r\n"],
    ["c", "EPSV\r\n"],
    ["s", "229 Entering Extended Passive Mode (|||30001|)\r\n"],
  ]);
  assert.equal(
    toClient,
    "220 (vsFTPd 3.0.3)\r\n227 Entering Passive Mode (10,0,0,1,156,64).\r\n229 Entering Extended Passive Mode (|||40001|)\r\n",
  );
  assert.deepEqual(t.passive, [{ address: "10.0.2.2", port: 30000 }, { address: "10.0.2.2", port: 30001 }]);
});

test("ftp control: PORT and EPRT name balance's channel-side listener; the client's end is where it goes on to", () => {
  const t = host();
  const { toServer } = converse(new FtpControl(t.h), [
    GREETING,
    ["c", "PORT 10,0,0,7,200,1\r\n"],
    ["s", "200 PORT command successful.\r\n"],
    ["c", "EPRT |1|10.0.0.7|51202|\r\n"],
  ]);
  assert.equal(toServer, "PORT 10,0,1,1,156,64\r\nEPRT |1|10.0.1.1|40001|\r\n");
  assert.deepEqual(t.active, [{ address: "10.0.0.7", port: 51201 }, { address: "10.0.0.7", port: 51202 }]);
});

test("ftp control: a bounce is sent on as NOOP, and its reply becomes a 500 in its place among the replies", () => {
  const t = host();
  const c = new FtpControl(t.h);
  const { toServer, toClient } = converse(c, [
    GREETING,
    // Pipelined: the CWD's reply comes first, then the NOOP's.
    ["c", "CWD /pub\r\nPORT 192,0,2,9,0,25\r\n"],
    ["s", "250 Directory successfully changed.\r\n"],
    ["s", "200 NOOP ok.\r\n"],
    ["c", "NOOP\r\n"],
    ["s", "200 NOOP ok.\r\n"],
  ]);
  assert.equal(toServer, "CWD /pub\r\nNOOP\r\nNOOP\r\n");
  assert.equal(
    toClient,
    "220 (vsFTPd 3.0.3)\r\n250 Directory successfully changed.\r\n" +
      "500 Illegal PORT command: only the client's own address may be named.\r\n200 NOOP ok.\r\n",
  );
  assert.deepEqual(t.active, [], "no listener for a bounce");
  assert.match(t.warnings[0], /FTP bounce refused: 10\.0\.0\.7 sent PORT naming 192\.0\.2\.9 port 25/);
});

test("ftp control: no data listener to be had: 425 for the client, in place of the reply or the command's", () => {
  const t = host(false);
  const { toServer, toClient } = converse(new FtpControl(t.h), [
    GREETING,
    ["c", "PASV\r\n"],
    ["s", "227 Entering Passive Mode (10,0,2,2,117,48).\r\n"],
    ["c", "EPRT |1|10.0.0.7|51202|\r\n"],
    ["s", "200 NOOP ok.\r\n"],
  ]);
  assert.equal(toServer, "PASV\r\nNOOP\r\n");
  assert.equal(
    toClient,
    "220 (vsFTPd 3.0.3)\r\n425 Can't open data connection.\r\n425 Can't open data connection.\r\n",
  );
});

test("ftp control: inside a multi-line reply, a line that looks like 227 is text", () => {
  const t = host();
  const lines = "230-Welcome\r\n227 Entering Passive Mode (1,2,3,4,5,6).\r\n230 Login successful.\r\n";
  const { toClient } = converse(new FtpControl(t.h), [GREETING, ["c", "PASS x\r\n"], ["s", lines]]);
  assert.equal(toClient, `220 (vsFTPd 3.0.3)\r\n${lines}`);
  assert.deepEqual(t.passive, []);
});

test("ftp control: AUTH TLS accepted makes the connection opaque; refused, rewriting goes on", () => {
  const refused = host();
  const r = converse(new FtpControl(refused.h), [
    GREETING,
    ["c", "AUTH TLS\r\n"],
    ["s", "530 Please login with USER and PASS.\r\n"],
    ["c", "PASV\r\n"],
    ["s", "227 Entering Passive Mode (10,0,2,2,117,48).\r\n"],
  ]);
  assert.match(r.toClient, /\(10,0,0,1,156,64\)/);
  const t = host();
  const c = new FtpControl(t.h);
  const tls = "\x16\x03\x01\x02\x00\x01PORT 192,0,2,9,0,25\r\n227 (1,2,3,4,5,6)\r\n";
  const { toServer, toClient } = converse(c, [
    GREETING,
    ["c", "AUTH TLS\r\n"],
    ["s", "234 Proceed with negotiation.\r\n"],
    ["c", tls],
    ["s", tls],
  ]);
  assert.ok(c.ended);
  assert.equal(toServer, `AUTH TLS\r\n${tls}`);
  assert.equal(toClient, `220 (vsFTPd 3.0.3)\r\n234 Proceed with negotiation.\r\n${tls}`);
  assert.equal(t.warnings.length, 1);
  assert.match(t.warnings[0], /switched to TLS .*cannot be followed/);
});

test("ftp control: a line longer than 512 bytes passes unchanged and ends the rewriting, with a warning", () => {
  const t = host();
  const c = new FtpControl(t.h);
  const long = `200 ${"x".repeat(MAX_LINE)}`;
  const { toClient } = converse(c, [
    GREETING,
    ["s", long], // no end yet: more than 512 bytes waiting
    ["s", "\r\n227 Entering Passive Mode (10,0,2,2,117,48).\r\n"],
  ]);
  assert.equal(toClient, `220 (vsFTPd 3.0.3)\r\n${long}\r\n227 Entering Passive Mode (10,0,2,2,117,48).\r\n`);
  assert.ok(c.ended);
  assert.match(t.warnings[0], /longer than 512 bytes/);
});

// Arbitrary control traffic: lines the rewriter acts on and lines it passes, in any mix.
const LINE = fc.oneof(
  fc.constantFrom(
    "227 Entering Passive Mode (10,0,2,2,117,48).\r\n",
    "229 Entering Extended Passive Mode (|||30001|)\r\n",
    "230-Welcome\r\n",
    "230 Login successful.\r\n",
    "150 Here comes the directory listing.\r\n",
    "226 Directory send OK.\r\n",
    "PORT 10,0,0,7,200,1\r\n",
    "EPRT |1|192.0.2.9|25|\r\n",
    "PASV\r\n",
    "AUTH TLS\r\n",
  ),
  fc.string({ maxLength: 80 }).map((s) => `${s}\r\n`),
  fc.string({ minLength: 500, maxLength: 600 }).map((s) => `${s}\n`),
);

function cuts(text: string, at: number[]): Uint8Array[] {
  const points = [...new Set(at.map((a) => a % (text.length + 1)))].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const p of [...points, text.length]) {
    pieces.push(encode(text.slice(from, p)));
    from = p;
  }
  return pieces;
}

test("ftp control: however the reads split the bytes, both sides get the same bytes (property)", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.boolean(), LINE), { maxLength: 20 }),
      fc.array(fc.nat(), { maxLength: 10 }),
      (script, at) => {
        const run = (split: boolean) => {
          const c = new FtpControl(host().h);
          let toServer = "";
          let toClient = decode(c.fromServer(encode(GREETING[1])));
          for (const [fromClient, line] of script) {
            for (const piece of split ? cuts(line, at) : [encode(line)]) {
              if (fromClient) toServer += decode(c.fromClient(piece));
              else toClient += decode(c.fromServer(piece));
            }
          }
          return { toServer, toClient };
        };
        assert.deepEqual(run(true), run(false));
      },
    ),
  );
});

test("ftp control: lines it does not act on pass byte for byte (property)", () => {
  const passive = fc.string({ maxLength: 200 }).filter((s) => !/[\r\n]/.test(s) && !/^\d{3}[ -]/.test(s));
  fc.assert(
    fc.property(fc.array(passive, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 10 }), (lines, at) => {
      const c = new FtpControl(host().h);
      c.fromServer(encode(GREETING[1]));
      const text = lines.map((l) => `${l}\r\n`).join("");
      let toClient = "";
      for (const piece of cuts(text, at)) toClient += decode(c.fromServer(piece));
      assert.equal(toClient, text);
    }),
  );
});
