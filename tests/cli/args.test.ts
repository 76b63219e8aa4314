import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { parseCommandLine } from "../../src/cli/args.ts";
import { USAGE } from "../../src/cli/usage.ts";
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
  fails(["-t", "0", "80", "a"], /connect timeout \(-t\) '0'/);
  fails(["-t", "x", "80", "a"], /connect timeout \(-t\) 'x'/);
  fails(["-t", "-1", "80", "a"], /connect timeout|needs a value/);
  fails(["-T", "1.5", "80", "a"], /idle timeout \(-T\) '1.5'/);
  fails(["-t"], /-t needs a value/);
  fails(["80", "!", "a"], /separator '!' with no channel/);
  fails(["80", "a", "!", "!", "b"], /separator '!'/);
  fails(["-b", "", "80", "a"], /-b needs a value/);
  fails(["--log-file=", "80", "a"], /--log-file needs a value/);
  assert.equal(parse("--log-file", "/var/log/balance.log", "80", "a").logFile, "/var/log/balance.log");
});
test("command line: every message about one option names the same valid range", () => {
  const message = (argv: string[]) => {
    try {
      parse(...argv);
    } catch (e) {
      return (e as Error).message.replace(/'[^']*'/, "'V'");
    }
    assert.fail(`${argv.join(" ")} was accepted`);
  };
  for (
    const [option, bad, range] of [
      ["-t", ["0", "abc", "-1", "1.5", "2000001"], "must be 1-2000000 seconds"],
      ["-T", ["-5", "x", "2000001"], "must be 0-2000000 seconds"],
      ["--grace", ["-5", "y"], "must be 0-2000000 seconds"],
      ["-w", ["0", "-1", "65"], "must be 1-64 or auto"],
    ] as const
  ) {
    const messages = new Set(bad.map((v) => message([option, v, "80", "a"])));
    assert.equal(messages.size, 1, `${option}: ${[...messages].join(" | ")}`);
    assert.match([...messages][0], new RegExp(`^invalid .*\\(${option}\\) 'V': ${range}$`));
  }
  assert.equal(message(["-T", "-5", "80", "a"]), "invalid idle timeout (-T) 'V': must be 0-2000000 seconds");
  assert.match(message(["-fT", "-5", "80", "a"]), /idle timeout \(-T\)/, "in a group of flags too");
  assert.equal(parse("-t", "1", "-T", "2000000", "80", "a").idleTimeout, 2000000, "the ends of the range are valid");
});
test("command line: --list takes nothing else", () => {
  assert.equal(parse("--list").mode, "list");
  fails(["--list", "80"], /unexpected argument '80' with --list/);
});
test("command line: the usage synopsis lists every option", () => {
  const synopsis = USAGE.slice(0, USAGE.indexOf("\n\n"));
  for (
    const option of ["-b", "-B", "-t", "-T", "-w", "-c", "-i", "-d", "--grace", "--log-file", "--syslog", "--list"]
  ) {
    assert.match(synopsis, new RegExp(`[\\s[]${option}[\\s\\]]`), `${option} in:\n${synopsis}`);
  }
  for (const flag of "adfpHM6") assert.match(synopsis, new RegExp(`\\[-[a-zA-Z0-9]*${flag}`), `-${flag}`);
  assert.match(synopsis, /--help \| --version/);
});
