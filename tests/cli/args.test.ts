import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { parseCommandLine } from "../../src/cli/args.ts";
import { ExitError, parseServices } from "../../src/core/mod.ts";

const services = parseServices("http 80/tcp\nsmtp 25/tcp\n");
const parse = (...argv: string[]) => parseCommandLine(argv, services);
const fails = (argv: string[], message: RegExp) =>
  assert.throws(
    () => parseCommandLine(argv, services),
    (e: unknown) => e instanceof ExitError && e.exitCode === 64 && e.showUsage && message.test(e.message),
  );

test("command line: defaults are balance's", () => {
  const c = parse("80", "a");
  assert.equal(c.mode, "serve");
  assert.deepEqual(
    [c.connectTimeout, c.idleTimeout, c.foreground, c.autodisable, c.hashFailover, c.packetDump, c.ipv6, c.debug],
    [5, 0, false, false, false, false, false, false],
  );
});
test("command line: grouped flags and attached or separate values", () => {
  const c = parse("-fpaH6d", "-t2", "-T", "30", "-b", "127.0.0.1", "-B127.0.0.2", "-M", "http", "a");
  assert.deepEqual(
    [c.foreground, c.packetDump, c.autodisable, c.hashFailover, c.ipv6, c.debug, c.connectTimeout, c.idleTimeout],
    [true, true, true, true, true, true, 2, 30],
  );
  assert.equal(c.bindAddress, "127.0.0.1");
  assert.equal(c.sourceAddress, "127.0.0.2");
  assert.equal(c.listenPort, 80);
});
test("command line: a value-taking option at the end of a group takes the next argument", () => {
  assert.equal(parse("-ft", "3", "80", "a").connectTimeout, 3);
});
test("command line: options may follow the positionals, as with GNU getopt", () => {
  assert.equal(parse("80", "a", "-f").foreground, true);
});
test("command line: channels and groups come through", () => {
  const c = parse("8080", "a:81:2", "%", "b::4", "!", "c:smtp");
  assert.deepEqual(c.groups.map((g) => g.type), ["Hash", "RR", "RR"]);
  assert.deepEqual(c.groups[1].channels[0], { host: "b", port: 8080, maxc: 4 });
  assert.deepEqual(c.groups[2].channels[0], { host: "c", port: 25, maxc: 0 });
});
test("command line: -c and -i take a port and no channels", () => {
  const c = parse("-b", "10.0.0.1", "-c", "show", "80");
  assert.deepEqual([c.mode, c.command, c.bindAddress, c.listenPort, c.groups], ["control", "show", "10.0.0.1", 80, []]);
  assert.equal(parse("-i", "80").mode, "interactive");
  fails(["-i", "80", "a"], /unexpected argument 'a'/);
  fails(["-i", "-c", "show", "80"], /exclude/);
  fails(["-c", "", "80"], /needs a command/);
});
test("command line: --help and --version need nothing else", () => {
  assert.equal(parse("--help").mode, "help");
  assert.equal(parse("--version").mode, "version");
});
test("command line: bad command lines are usage errors naming the problem", () => {
  fails(["-x", "80", "a"], /unknown option '-x'/);
  fails(["--nope", "80", "a"], /unknown option '--nope'/);
  fails([], /missing port/);
  fails(["80"], /no channel/);
  fails(["0", "a"], /invalid listen port '0'/);
  fails(["99999", "a"], /invalid listen port/);
  fails(["nosuchservice", "a"], /invalid listen port 'nosuchservice'/);
  fails(["80", "a:1:x"], /maxc/);
  fails(["-t", "0", "80", "a"], /at least 1 second/);
  fails(["-t", "x", "80", "a"], /connect timeout 'x'/);
  fails(["-t", "-1", "80", "a"], /connect timeout|needs a value/);
  fails(["-T", "1.5", "80", "a"], /idle timeout '1.5'/);
  fails(["-t"], /-t needs a value/);
  fails(["80", "!", "a"], /separator '!' with no channel/);
  fails(["80", "a", "!", "!", "b"], /separator '!'/);
  fails(["-b", "", "80", "a"], /-b needs a value/);
  fails(["--log-file=", "80", "a"], /--log-file needs a value/);
  assert.equal(parse("--log-file", "/var/log/balance.log", "80", "a").logFile, "/var/log/balance.log");
});
