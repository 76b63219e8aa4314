import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import * as net from "node:net";
import process from "node:process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { freePort, startBackend, whoAnswers } from "../support/net.ts";
import { runBalance, type Running, startBalance } from "../support/balance.ts";

const USAGE_START = /^usage:\n {2}balance \[-b addr\]/m;

// A mistake is two lines, so that the first is not scrolled away by the usage.
function assertUsageError(r: { code: number | null; stdout: string; stderr: string }, message: RegExp) {
  assert.equal(r.code, 64, r.stderr);
  const [first, ...rest] = r.stderr.split("\n");
  assert.match(first, /^balance: /);
  assert.match(first, message);
  assert.deepEqual(rest, ["Try 'balance --help'.", ""]);
  assert.equal(r.stdout, "");
}

test("command line of the real program: --help prints the usage on stdout and exits 0", async () => {
  const r = await runBalance(["--help"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, USAGE_START);
  assert.match(r.stdout, /-t sec +connect timeout/);
  assert.equal(r.stderr, "");
});
test("command line of the real program: --version prints the version and exits 0", async () => {
  const r = await runBalance(["--version"]);
  assert.equal(r.code, 0);
  const compiled = Boolean(process.env.BALANCE_BIN);
  const runtime = compiled || process.env.BALANCE_RUNTIME === "bun" ? "bun" : "deno";
  // A binary names the commit it was built from; a checkout says "source".
  const origin = compiled ? "commit [0-9a-f]{12}(-dirty)?" : "source";
  assert.match(r.stdout, new RegExp(`^balance \\d+\\.\\d+\\.\\d+ \\(${origin}, ${runtime} \\d+\\.\\d+\\.\\d+\\)\n$`));
});
test("command line of the real program: no arguments print the usage on stderr and exit 64", async () => {
  const r = await runBalance([]);
  assert.equal(r.code, 64);
  assert.match(r.stderr, USAGE_START);
  assert.equal(r.stdout, "");
});
const cases: [string, string[], RegExp][] = [
  ["unknown option", ["-x", "80", "a"], /^balance: unknown option '-x'$/],
  ["unknown long option", ["--bogus", "80", "a"], /^balance: unknown option '--bogus'$/],
  [
    "bad value of a known option",
    ["-f", "-w", "0", "80", "a"],
    /^balance: invalid workers \(-w\) '0': must be 1-64 or auto$/,
  ],
  ["missing port", ["-f"], /missing port/],
  ["port not a number or service", ["-f", "no_such_service", "127.0.0.1"], /invalid listen port 'no_such_service'/],
  ["port out of range", ["-f", "70000", "127.0.0.1"], /invalid listen port '70000'/],
  ["no channel", ["-f", "8080"], /no channel given/],
  ["bad maxc", ["-f", "8080", "127.0.0.1:81:many"], /invalid maxc in channel '127.0.0.1:81:many'/],
  ["connect timeout 0", ["-f", "-t", "0", "8080", "127.0.0.1"], /invalid connect timeout \(-t\) '0': must be 1-/],
  ["separator first", ["-f", "8080", "!", "127.0.0.1"], /group separator '!' with no channel before it/],
  ["two separators", ["-f", "8080", "127.0.0.1", "%", "!", "127.0.0.2"], /group separator '!' with no channel/],
  // Not a name to resolve (exit 68): no host can be spelt so.
  [
    "a mistyped separator",
    ["-f", "8080", "127.0.0.1", "!!", "127.0.0.2"],
    /^balance: invalid channel '!!': '!!' is not a host name or address$/,
  ],
  // An unresolvable host is no usage error: exit 68, see errors.test.ts.
];
for (const [name, args, message] of cases) {
  test(`${name}: one line naming it, then Try 'balance --help'., exit 64`, async () => {
    assertUsageError(await runBalance(args), message);
  });
}
test("command line of the real program: a listen address in use: one clear line, exit 71", async () => {
  const blocker = net.createServer();
  const port = await freePort();
  await new Promise<void>((r) => blocker.listen(port, "127.0.0.1", r));
  try {
    const r = await runBalance(["-f", "-b", "127.0.0.1", String(port), "127.0.0.1:1"]);
    assert.equal(r.code, 71);
    assert.equal(r.stderr, `balance: cannot listen on 127.0.0.1:${port}: address already in use\n`);
  } finally {
    blocker.close();
  }
});
test("command line of the real program: -c with no instance on the port says so and exits 69", async () => {
  const port = await freePort();
  const r = await runBalance(["-c", "show", String(port)]);
  assert.equal(r.code, 69);
  assert.match(r.stderr, new RegExp(`no balance instance .* port ${port}`));
});

test("command line of the real program: SIGTERM after serving: exit 0, control socket removed, port taken again at once", async () => {
  // The backend closes first, so the balancer closes its client side first
  // and leaves that connection in TIME_WAIT on the listen port.
  const backend = await startBackend("a", (s) => s.end("a\n"));
  const port = await freePort();
  let first: Running | undefined;
  let second: Running | undefined;
  try {
    first = await startBalance([String(port), `127.0.0.1:${backend.port}`], port);
    assert.equal(await whoAnswers(port), "a");
    const socketPath = join(first.controlDir, `any-${port}.sock`);
    assert.ok(existsSync(socketPath), "the control socket exists while serving");
    assert.equal(await first.stop(), 0);
    assert.ok(!existsSync(socketPath), "SIGTERM removes the control socket");
    second = await startBalance([String(port), `127.0.0.1:${backend.port}`], port);
    assert.equal(await whoAnswers(port), "a", "a new balancer serves on the port at once");
  } finally {
    await first?.stop();
    await second?.stop();
    await backend.close();
  }
});

test("command line of the real program: outside text reaches no message raw: errors escape it, -c/-i and traces echo none", async () => {
  const nasty = "\x1b[2J\x07\u00e9";
  const printable = /^[\x20-\x7e\n]*$/;
  const error = await runBalance(["-f", "8080", `h${nasty}:80:many`]);
  // A host that cannot be one is named first, escaped as the whole word is.
  assert.match(
    error.stderr,
    /invalid channel 'h\\u001b\[2J\\u0007\\u00e9:80:many': 'h\\u001b\[2J\\u0007\\u00e9' is not a host name or address/,
  );
  assert.match(error.stderr, printable, "the error escapes control bytes and non-ASCII");
  const port = await freePort();
  const lb = await startBalance([String(port), "127.0.0.1:1"], port);
  try {
    const c = await runBalance(["-c", `disable ${nasty}`, String(port)]);
    assert.equal(c.stdout, "syntax error\n");
    assert.match(c.stderr, printable);
    const i = await runBalance(["-i", String(port)], { input: `group ${nasty}\nmaxc 0 ${nasty}\nquit\n` });
    assert.equal(i.stdout, "syntax error\nsyntax error\n");
    assert.match(i.stderr, printable);
  } finally {
    await lb.stop();
  }
  assert.match(lb.stderr(), printable, "the -d trace carries no raw byte");
});
