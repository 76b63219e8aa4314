/**
 * Property-based tests of everything that parses outside input: the channel
 * grammar, the command line, the control commands and protocol, the packet
 * dump. Whatever the input (random, malformed, huge, non-UTF-8, thousands of
 * channels), the result is a correct parse or a clear error: never a crash,
 * never a hang, and garbage never changes the balancer.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  addressBytes,
  Balancer,
  Channel,
  executeCommand,
  ExitError,
  formatPacketDump,
  Group,
  hashClientAddress,
  MAX_MAXC,
  MAX_WEIGHT,
  parseChannel,
  parseGroups,
  parseServices,
} from "../../src/core/mod.ts";
import { parseCommandLine } from "../../src/cli/args.ts";
import { parseRequest } from "../../src/control/protocol.ts";

const services = parseServices("http 80/tcp\nsmtp 25/tcp\n");
const RUNS = { numRuns: 2000 };

/** Strings that look like balance input: digits, colons, brackets, dashes, and anything. */
const tokenish = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.stringMatching(/^[\[\]:0-9a-f.%!-]{0,30}$/),
  fc.constantFrom("!", "%", "-", "--", "-t", "-T", "-b", "-c", "::", "[::1]", "99999999999999999999", "-1", ""),
  fc.uint8Array({ maxLength: 20 }).map((b) => new TextDecoder().decode(b)),
  fc.integer().map(String),
);

function isUsageError(err: unknown): boolean {
  // One line of printable ASCII: nothing typed reaches the terminal raw.
  return err instanceof ExitError && err.exitCode === 64 && /^[\x20-\x7e]+$/.test(err.message);
}

test("fuzz: parseChannel gives a valid channel or a one-line usage error", () => {
  fc.assert(
    fc.property(tokenish, (spec) => {
      try {
        const c = parseChannel(spec, 80, services);
        assert.ok(c.host.length > 0);
        assert.ok(Number.isInteger(c.port) && c.port >= 1 && c.port <= 65535);
        assert.ok(Number.isInteger(c.maxc) && c.maxc >= 0 && c.maxc <= MAX_MAXC);
        assert.ok(c.weight === undefined || (Number.isInteger(c.weight) && c.weight >= 0 && c.weight <= MAX_WEIGHT));
      } catch (err) {
        assert.ok(isUsageError(err), String(err));
      }
    }),
    RUNS,
  );
});

test("fuzz: every host:port:maxc:weight within range parses back to its fields", () => {
  fc.assert(
    fc.property(
      fc.constantFrom("web1", "10.0.0.1", "[::1]", "[fe80::2]"),
      fc.integer({ min: 1, max: 65535 }),
      fc.nat(MAX_MAXC),
      fc.nat(MAX_WEIGHT),
      (host, port, maxc, weight) => {
        assert.deepEqual(parseChannel(`${host}:${port}:${maxc}:${weight}`, 80, services), {
          host: host.replace(/^\[|\]$/g, ""),
          port,
          maxc,
          weight,
        });
      },
    ),
    RUNS,
  );
});

test("fuzz: the command line parses or fails with exit 64, whatever the arguments", () => {
  fc.assert(
    fc.property(fc.array(tokenish, { maxLength: 12 }), (argv) => {
      try {
        const c = parseCommandLine(argv, services);
        assert.ok(["serve", "control", "interactive", "help", "version"].includes(c.mode));
        if (c.mode === "serve") assert.ok(c.groups.length > 0 && c.connectTimeout >= 1);
      } catch (err) {
        assert.ok(isUsageError(err), `${JSON.stringify(argv)}: ${err}`);
      }
    }),
    RUNS,
  );
});

test("fuzz: thousands of channels parse, in order", () => {
  const args = Array.from(
    { length: 5000 },
    (_, i) => (i % 1000 === 999 ? "!" : `10.0.${i >> 8 & 255}.${i & 255}:${1 + i}:${i}`),
  );
  const groups = parseGroups(args, 80, services);
  assert.equal(groups.length, 5);
  assert.equal(groups.reduce((n, g) => n + g.channels.length, 0), 4995);
  assert.deepEqual(groups[4].channels.at(-1), { host: "10.0.19.134", port: 4999, maxc: 4998 });
});

function freshBalancer(): Balancer {
  return new Balancer([
    new Group("RR", [new Channel("127.0.0.1", 81), new Channel("127.0.0.2", 82, 5)]),
    new Group("Hash", [new Channel("::1", 83)]),
  ]);
}

test("fuzz: control commands never throw, and rejected ones change nothing", () => {
  const REJECTED = /^(syntax error|no such channel \d+|invalid address|value out of range|no channel slots available)$/;
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ maxLength: 60 }),
        fc.tuple(
          fc.constantFrom(
            "d",
            "dis",
            "en",
            "maxc",
            "reset",
            "assign",
            "create",
            "group",
            "mrtg-b",
            "sh",
            "rr",
            "ha",
            "l",
            "w",
          ),
          fc.array(tokenish, { maxLength: 4 }),
        )
          .map(([c, a]) => [c, ...a].join(" ")),
        fc.string({ minLength: 10_000, maxLength: 20_000 }),
      ),
      // The current group comes from the client: any whole number.
      fc.oneof(fc.nat(100), fc.maxSafeNat()),
      (line, group) => {
        const balancer = freshBalancer();
        const ctx = { balancer, version: "4", lookupPort: services };
        const before = JSON.stringify(executeCommand(ctx, 0, "show --json").output);
        const result = executeCommand(ctx, group, line);
        assert.equal(typeof result.output, "string");
        if (REJECTED.test(result.output)) {
          assert.equal(JSON.stringify(executeCommand(ctx, 0, "show --json").output), before, line);
        }
      },
    ),
    RUNS,
  );
});

/** Request-shaped JSON lines, valid and not: `group` and `command` of right and wrong types, extra keys. */
const requestLike = fc.record(
  {
    group: fc.oneof(
      fc.nat(),
      fc.maxSafeNat(),
      fc.integer({ min: -100, max: -1 }),
      fc.double(),
      fc.string(),
      fc.constant(null),
    ),
    command: fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom("show", "disable 0", "kill"), fc.integer()),
    extra: fc.jsonValue(),
  },
  { requiredKeys: [] },
).map((v) => JSON.stringify(v));

test("fuzz: the control protocol accepts exactly the well-formed requests", () => {
  let accepted = 0;
  let rejected = 0;
  fc.assert(
    fc.property(
      fc.oneof(
        requestLike,
        requestLike,
        fc.string({ maxLength: 80 }),
        fc.json(),
        fc.jsonValue().map((v) => JSON.stringify(v)),
      ),
      (line) => {
        let value: unknown;
        try {
          value = JSON.parse(line);
        } catch { /* not JSON: must be rejected */ }
        const v = (typeof value === "object" && value !== null ? value : {}) as Record<string, unknown>;
        const wellFormed = Number.isSafeInteger(v.group) && (v.group as number) >= 0 && typeof v.command === "string";
        const r = parseRequest(line);
        if (wellFormed) assert.deepEqual(r, { group: v.group, command: v.command }, line);
        else assert.equal(r, undefined, line);
        if (r) accepted++;
        else rejected++;
      },
    ),
    RUNS,
  );
  // Both sides of the property were exercised, not just the rejection.
  assert.ok(accepted >= RUNS.numRuns / 20, `${accepted} of ${RUNS.numRuns} generated requests accepted`);
  assert.ok(rejected >= RUNS.numRuns / 20, `${rejected} of ${RUNS.numRuns} generated lines rejected`);
});

test("control protocol: a well-formed request is accepted as it is, whatever else the object carries", () => {
  assert.deepEqual(parseRequest('{"group":0,"command":"show"}'), { group: 0, command: "show" });
  assert.deepEqual(parseRequest('{"command":"disable 1","group":3,"x":[1]}'), { group: 3, command: "disable 1" });
  assert.deepEqual(parseRequest(`{"group":${Number.MAX_SAFE_INTEGER},"command":""}`), {
    group: Number.MAX_SAFE_INTEGER,
    command: "",
  });
  for (const bad of ['{"group":-1,"command":"show"}', '{"group":1.5,"command":"show"}', '{"group":0}', "[0]", "show"]) {
    assert.equal(parseRequest(bad), undefined, bad);
  }
});

/** Reads a packet dump back into bytes: the format loses nothing. */
function undump(text: string): Uint8Array {
  const body = text.slice(text.indexOf("\n") + 1).replaceAll("\n", "");
  const out: number[] = [];
  for (let i = 0; i < body.length; i++) {
    if (body[i] !== "\\") out.push(body.charCodeAt(i));
    else if (body[i + 1] === "\\") out.push(0x5c), i++;
    else out.push(parseInt(body.slice(i + 1, i + 3), 16)), i += 2;
  }
  return new Uint8Array(out);
}

test("fuzz: the packet dump prints only safe characters and loses no byte", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 600 }),
      fc.constantFrom("->", "-<") as fc.Arbitrary<"->" | "-<">,
      (bytes, dir) => {
        const text = formatPacketDump(dir, bytes);
        assert.ok(text.startsWith(`${dir} ${bytes.length}\n`));
        assert.match(text, /^[\x20-\x7e\n]*$/, "no control byte reaches the terminal");
        for (const line of text.split("\n")) assert.ok(line.length <= 82, `line of ${line.length}`);
        assert.deepEqual(undump(text), bytes);
      },
    ),
    RUNS,
  );
});

test("fuzz: client addresses of any shape hash without throwing", () => {
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 50 }), fc.ipV4(), fc.ipV6(), fc.ipV4Extended()), (address) => {
      const h = hashClientAddress(address);
      assert.ok(Number.isInteger(h) && h >= 0 && h < 2 ** 32);
      const bytes = addressBytes(address);
      if (bytes) assert.ok(bytes.length === 4 || bytes.length === 16);
    }),
    RUNS,
  );
});

test("fuzz: every IPv6 address parses, and IPv4-mapped ones hash as their IPv4", () => {
  fc.assert(
    fc.property(fc.ipV6(), (address) => assert.ok(addressBytes(address), address)),
    RUNS,
  );
  fc.assert(
    fc.property(fc.ipV4(), (v4) => assert.equal(hashClientAddress(`::ffff:${v4}`), hashClientAddress(v4))),
    RUNS,
  );
});
