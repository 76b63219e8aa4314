import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { parseCommandLine } from "../../src/cli/args.ts";
import { USAGE } from "../../src/cli/usage.ts";
import { ExitError, parseServices } from "../../src/core/mod.ts";
import fc from "fast-check";

const services = parseServices("http 80/tcp\nsmtp 25/tcp\n");
const parse = (...argv: string[]) => parseCommandLine(argv, services);
const fails = (argv: string[], message: RegExp) =>
  assert.throws(
    () => parseCommandLine(argv, services),
    (e: unknown) => e instanceof ExitError && e.exitCode === 64 && e.tryHelp && message.test(e.message),
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
test("command line: weights come through; -L makes every RR group least connection, Hash ones stay", () => {
  const c = parse("8080", "a:81:2:5", "[::1]:82::0", "%", "b::4:2", "!", "c");
  assert.deepEqual(c.groups[0].channels, [
    { host: "a", port: 81, maxc: 2, weight: 5 },
    { host: "::1", port: 82, maxc: 0, weight: 0 },
  ]);
  assert.deepEqual(c.groups[1].channels[0], { host: "b", port: 8080, maxc: 4, weight: 2 });
  assert.deepEqual(c.groups.map((g) => g.type), ["Hash", "RR", "RR"]);
  assert.deepEqual(parse("-L", "8080", "a", "%", "b", "!", "c").groups.map((g) => g.type), ["Hash", "LC", "LC"]);
  assert.deepEqual(parse("-fLt", "3", "8080", "a").groups.map((g) => g.type), ["LC"]);
  fails(["80", "a:1:0:257"], /^invalid weight in channel 'a:1:0:257' '257': must be 0-256$/);
  fails(["80", "a:1:0:x"], /^invalid weight in channel 'a:1:0:x'/);
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
  for (const flag of "adfpHLM6") assert.match(synopsis, new RegExp(`\\[-[a-zA-Z0-9]*${flag}`), `-${flag}`);
  assert.match(synopsis, /--help \| --version/);
});
test("command line: --check and its defaults; no checks without it", () => {
  assert.equal(parse("80", "a").check, undefined);
  assert.deepEqual(parse("--check", "80", "a").check, { interval: 2, timeout: 2, rise: 2, fall: 3 });
  assert.equal(parse("--check", "-t", "1", "80", "a").check?.timeout, 1, "the timeout is at most -t");
  const c = parse(
    "--check",
    "--check-interval",
    "0.5",
    "--check-timeout=.25",
    "--rise",
    "1",
    "--fall=10",
    "--check-send",
    "PING\\r\\n",
    "--check-expect",
    "\\x2bOK",
    "80",
    "a",
  ).check!;
  assert.deepEqual([c.interval, c.timeout, c.rise, c.fall], [0.5, 0.25, 1, 10]);
  assert.deepEqual([...c.send!], [80, 73, 78, 71, 13, 10]);
  assert.equal(new TextDecoder().decode(c.expect), "+OK");
  assert.equal(parse("--check", "--check-interval", "10", "80", "a").check?.timeout, 5, "interval, at most -t (5)");
  assert.deepEqual(parse("--check", "--check-exec", " /bin/check  -x web ", "80", "a").check?.exec, [
    "/bin/check",
    "-x",
    "web",
  ]);
});
test("command line: each check option without --check is an error naming it", () => {
  for (
    const argv of [
      ["--check-interval", "1"],
      ["--check-timeout", "1"],
      ["--rise", "2"],
      ["--fall", "2"],
      ["--check-send", "x"],
      ["--check-expect", "x"],
      ["--check-exec", "/bin/true"],
    ]
  ) {
    fails([...argv, "80", "a"], new RegExp(`^option ${argv[0]} needs --check$`));
  }
});
test("command line: bad check values are one-line usage errors", () => {
  fails(
    ["--check", "--check-interval", "0.05", "80", "a"],
    /^invalid check interval \(--check-interval\) '0\.05': must be 0\.1-2000000 seconds$/,
  );
  fails(["--check", "--check-interval", "-1", "80", "a"], /check interval \(--check-interval\) '-1'/);
  fails(["--check", "--check-interval", "1e3", "80", "a"], /check interval/);
  fails(["--check", "--check-timeout", "abc", "80", "a"], /^invalid check timeout \(--check-timeout\) 'abc'/);
  fails(["--check", "--rise", "0", "80", "a"], /^invalid rise \(--rise\) '0': must be 1-1000 checks$/);
  fails(["--check", "--fall", "1.5", "80", "a"], /^invalid fall \(--fall\) '1\.5'/);
  fails(["--check", "--fall", "-2", "80", "a"], /^invalid fall \(--fall\) '-2'/);
  fails(["--check", "--check-send", "", "80", "a"], /^option --check-send needs a value$/);
  fails(["--check", "--check-expect", "\\q", "80", "a"], /^invalid --check-expect '\\\\q': unknown escape/);
  fails(["--check", "--check-exec", "  ", "80", "a"], /^option --check-exec needs a command$/);
});
test("command line: fuzz: every check option's value parses correctly or fails with one line", () => {
  const values = fc.oneof(
    fc.string({ maxLength: 20 }),
    fc.stringMatching(/^-?[0-9.]{0,8}$/),
    fc.double({ noNaN: true }).map(String),
    fc.integer().map(String),
    fc.stringMatching(/^(\\[rntx\\]?[0-9a-fA-F]{0,2}|[a-z ]){0,6}$/),
  );
  const option = fc.constantFrom(
    "--check-interval",
    "--check-timeout",
    "--rise",
    "--fall",
    "--check-send",
    "--check-expect",
    "--check-exec",
  );
  fc.assert(
    fc.property(option, values, (name, value) => {
      let check;
      try {
        check = parse("--check", `${name}=${value}`, "80", "a").check!;
      } catch (err) {
        assert.ok(
          err instanceof ExitError && err.exitCode === 64 && /^[\x20-\x7e]+$/.test(err.message),
          `${name}=${value}: ${err}`,
        );
        return;
      }
      if (name === "--check-interval" || name === "--check-timeout") {
        const n = name === "--check-interval" ? check.interval : check.timeout;
        assert.ok(n >= 0.1 && n <= 2_000_000 && n === Number(value), `${name}=${value} gave ${n}`);
      } else if (name === "--rise" || name === "--fall") {
        const n = name === "--rise" ? check.rise : check.fall;
        assert.ok(Number.isInteger(n) && n >= 1 && n <= 1000 && n === Number(value), `${name}=${value}`);
      } else if (name === "--check-exec") {
        assert.deepEqual(check.exec, value.split(" ").filter((w) => w !== ""));
      } else {
        const bytes = name === "--check-send" ? check.send! : check.expect!;
        assert.ok(bytes.length > 0 || value === "", `${name}=${value}`);
        if (!value.includes("\\")) assert.equal(new TextDecoder().decode(bytes), value);
      }
    }),
    { numRuns: 3000 },
  );
});

test("command line: --resolve-interval takes seconds, decimals and 0; 30 by default", () => {
  assert.equal(parse("80", "web").resolveInterval, 30);
  assert.equal(parse("--resolve-interval", "0.5", "80", "web").resolveInterval, 0.5);
  assert.equal(parse("--resolve-interval=0", "80", "web").resolveInterval, 0);
  assert.equal(parse("-f", "--resolve-interval", "3600", "80", "web").resolveInterval, 3600);
  for (const bad of ["-1", "x", "1e3", "", "2000001"]) {
    fails(
      ["--resolve-interval", bad, "80", "web"],
      /^invalid resolve interval \(--resolve-interval\) '.*': must be 0-2000000 seconds$/,
    );
  }
  fails(["80", "web", "--resolve-interval"], /^option --resolve-interval needs a value$/);
});

test("command line: --resolver ADDR[:PORT] names a DNS server by address; port 53 by default", () => {
  assert.equal(parse("80", "web").resolver, undefined);
  assert.deepEqual(parse("--resolver", "127.0.0.1", "80", "web").resolver, { host: "127.0.0.1", port: 53 });
  assert.deepEqual(parse("--resolver=10.0.0.2:8600", "80", "web").resolver, { host: "10.0.0.2", port: 8600 });
  assert.deepEqual(parse("--resolver", "[::1]:5353", "80", "web").resolver, { host: "::1", port: 5353 });
  assert.deepEqual(parse("--resolver", "::1", "80", "web").resolver, { host: "::1", port: 53 });
  for (const bad of ["dns.example", "", "10.0.0.300", "[fe80::x]:53"]) {
    fails(["--resolver", bad, "80", "web"], /^invalid resolver \(--resolver\) '.*': must be an IP address/);
  }
  fails(["--resolver", "127.0.0.1:0", "80", "web"], /resolver port \(--resolver\)/);
  fails(["--resolver", "127.0.0.1:70000", "80", "web"], /resolver port \(--resolver\)/);
});

test("command line: --proxy-protocol v1|v2 and --accept-proxy; both off by default", () => {
  assert.deepEqual([parse("80", "a").proxyProtocol, parse("80", "a").acceptProxy], [undefined, false]);
  assert.equal(parse("--proxy-protocol", "v1", "80", "a").proxyProtocol, 1);
  assert.equal(parse("--proxy-protocol=v2", "80", "a").proxyProtocol, 2);
  assert.equal(parse("--accept-proxy", "80", "a").acceptProxy, true);
  for (const bad of ["v3", "2", "V2", ""]) {
    fails(
      ["--proxy-protocol", bad, "80", "a"],
      /^invalid PROXY protocol version \(--proxy-protocol\) '.*': must be v1 or v2$/,
    );
  }
});

test("command line: --ftp, --ftp-address and --ftp-data-ports; off by default, the options need --ftp", () => {
  assert.equal(parse("80", "a").ftp, undefined);
  assert.deepEqual(parse("--ftp", "80", "a").ftp, {});
  assert.deepEqual(
    parse("--ftp", "--ftp-address", "::ffff:203.0.113.5", "--ftp-data-ports", "50000-50099", "21", "a").ftp,
    { address: "203.0.113.5", ports: { lo: 50000, hi: 50099 } },
  );
  assert.deepEqual(parse("--ftp", "--ftp-data-ports=21-21", "21", "a").ftp, { ports: { lo: 21, hi: 21 } });
  fails(["--ftp-address", "10.0.0.1", "21", "a"], /^option --ftp-address needs --ftp$/);
  fails(["--ftp-data-ports", "1-2", "21", "a"], /^option --ftp-data-ports needs --ftp$/);
  for (const bad of ["9-3", "0-10", "1-65536", "50000", "a-b", "-", ""]) {
    fails(
      ["--ftp", "--ftp-data-ports", bad, "21", "a"],
      /^invalid data ports \(--ftp-data-ports\) '.*': must be LO-HI, 1 <= LO <= HI <= 65535$|needs a value/,
    );
  }
  for (const bad of ["::1", "ftp.example", "10.0.0", ""]) {
    fails(["--ftp", "--ftp-address", bad, "21", "a"], /must be an IPv4 address$|needs a value/);
  }
  fails(["--ftp", "--sni", "a.example=@a", "443", "x", "@a", "y"], /^--ftp and --sni exclude each other/);
});

test("args: the options in force as words for dump: each once (the last), -f -d -L left out, values quoted when needed", () => {
  const config = parseCommandLine(
    ["-fd", "-t", "3", "-L", "--check", "--check-exec", "/bin/check -q", "-t4", "--check-expect", "#ok", "80", "a"],
    () => undefined,
  );
  assert.deepEqual(config.optionWords, [
    "--check",
    "--check-exec",
    '"/bin/check -q"',
    "-t",
    "4",
    "--check-expect",
    '"#ok"',
  ]);
  assert.equal(config.checkConfig, false);
  assert.deepEqual(config.configFiles, []);
  assert.equal(parseCommandLine(["--check-config", "80", "a"], () => undefined).checkConfig, true);
});
test("command line: an error blames the word at fault, so that one from a file can name its FILE:LINE", () => {
  const blamed = (...argv: string[]) => {
    try {
      parse(...argv);
    } catch (e) {
      assert.ok(e instanceof ExitError && e.exitCode === 64, String(e));
      return e.word;
    }
    assert.fail(`${argv.join(" ")} was accepted`);
  };
  assert.equal(blamed("-f", "--bogus", "80", "a"), 1);
  assert.equal(blamed("-f", "80", "a", "-dx"), 3, "a flag in a group");
  assert.equal(blamed("--check=yes", "80", "a"), 0);
  assert.equal(blamed("-t", "0", "80", "a"), 0, "the option, whose line holds its value as well");
  assert.equal(blamed("-f", "80", "a", "-T", "-5"), 3);
  assert.equal(blamed("-f", "80", "a", "-b"), 3, "a value missing at the end");
  assert.equal(blamed("-b", "-f", "80", "a"), 0, "an option where a value should be");
  assert.equal(blamed("-t", "3", "-t", "0", "80", "a"), 2, "the occurrence in force");
  assert.equal(blamed("99999", "a"), 0);
  assert.equal(blamed("80", "a", "-f", "b:x"), 3);
  assert.equal(blamed("80", "a", "!", "-d", "!"), 4);
  assert.equal(blamed("-d", "80"), 1, "no channel: the port they should follow");
  assert.equal(blamed("--rise", "2", "80", "a"), 0);
  assert.equal(blamed("-i", "-c", "show", "80"), 1);
  assert.equal(blamed("-c", "show", "80", "a"), 3);
  assert.equal(blamed("-f"), undefined, "a missing port is no word's fault");
});

test("command line: --allow and --deny keep their order, interleaved, and dump writes every one", () => {
  const c = parse("--deny", "10.0.0.7", "80", "--allow", "10.0.0.0/8,::1", "a", "--deny", "all", "-t", "3");
  assert.deepEqual(c.access.rules, [
    { action: "deny", spec: "10.0.0.7" },
    { action: "allow", spec: "10.0.0.0/8,::1" },
    { action: "deny", spec: "all" },
  ]);
  assert.deepEqual(c.optionWords, ["--deny", "10.0.0.7", "--allow", "10.0.0.0/8,::1", "--deny", "all", "-t", "3"]);
});

test("command line: per-client limits and the client table, with their defaults and ranges", () => {
  const c = parse("--max-per-client", "10", "--rate-per-client", "20/5", "--client-table", "1000", "80", "a");
  assert.deepEqual(
    [c.access.maxPerClient, c.access.ratePerClient, c.clientTable],
    [10, { connections: 20, seconds: 5 }, 1000],
  );
  assert.deepEqual(parse("--rate-per-client", "7", "80", "a").access.ratePerClient, { connections: 7, seconds: 1 });
  assert.equal(parse("80", "a").clientTable, 65536);
  fails(
    ["--max-per-client", "0", "80"],
    /^invalid connections per client \(--max-per-client\) '0': must be 1-1000000$/,
  );
  fails(
    ["--rate-per-client", "20/0", "80"],
    /^invalid rate period \(--rate-per-client\) '0': must be 1-86400 seconds$/,
  );
  fails(["--rate-per-client", "1/2/3", "80"], /must be N or N\/SEC$/);
  fails(["--client-table", "8", "80"], /^invalid client table \(--client-table\) '8': must be 16-16777216 clients$/);
});

test("command line: a malformed --allow/--deny/--proxy-from SPEC is one line naming it; --proxy-from needs --accept-proxy", () => {
  fails(["--deny", "10.0.0.0/33", "80"], /^invalid address \(--deny\) '10\.0\.0\.0\/33': prefix length must be 0-32$/);
  fails(["--allow", "1.2.3", "80"], /^invalid address \(--allow\) '1\.2\.3': '1\.2\.3' is not an IPv4 or IPv6/);
  fails(["--allow=", "80"], /^invalid address \(--allow\) '': an address, a prefix or 'all' is needed$/);
  fails(["--proxy-from", "127.0.0.2", "80"], /^option --proxy-from needs --accept-proxy$/);
  fails(["--accept-proxy", "--proxy-from", "::1/129", "80"], /^invalid address \(--proxy-from\) '::1\/129'/);
  assert.equal(parse("--accept-proxy", "--proxy-from", "127.0.0.2", "80", "a").access.proxyFrom, "127.0.0.2");
});

test("command line: --udp and --udp-only with their options and defaults; TCP only without them", () => {
  assert.equal(parse("80", "a:53").udp, undefined);
  assert.deepEqual(parse("--udp", "53", "a:53").udp, { only: false, timeout: 30, responses: 0 });
  assert.deepEqual(
    parse("--udp-only", "--udp-timeout", "5", "--udp-responses", "1", "--udp-max-sessions", "100", "53", "a:53").udp,
    { only: true, timeout: 5, responses: 1, maxSessions: 100 },
  );
  assert.deepEqual(parse("--udp", "--proxy-protocol", "v2", "53", "a:53").proxyProtocol, 2);
});

test("command line: what UDP cannot do is a one-line usage error naming it", () => {
  fails(["--udp", "--udp-only", "53", "a:53"], /^--udp and --udp-only exclude each other$/);
  fails(["--udp-timeout", "5", "53", "a:53"], /^option --udp-timeout needs --udp or --udp-only$/);
  fails(["--udp-responses", "1", "53", "a:53"], /^option --udp-responses needs --udp or --udp-only$/);
  fails(["--udp", "--udp-timeout", "0", "53", "a:53"], /UDP timeout \(--udp-timeout\) '0'/);
  fails(["--udp", "--udp-max-sessions", "0", "53", "a:53"], /UDP sessions \(--udp-max-sessions\) '0'/);
  fails(["--udp", "--udp-responses", "x", "53", "a:53"], /UDP responses \(--udp-responses\) 'x'/);
  fails(["--udp", "--proxy-protocol", "v1", "53", "a:53"], /^--proxy-protocol v1 cannot go with UDP/);
  fails(["--udp-only", "--accept-proxy", "53", "a:53"], /^--accept-proxy reads TCP streams/);
  fails(["--udp-only", "--sni", "a=@a", "53", "x:1", "@a", "a:53"], /^--sni reads TLS over TCP/);
  fails(["--udp-only", "--check", "53", "a:53"], /^--check with --udp-only needs --check-send/);
  // With --udp the checks stay TCP connects, and --accept-proxy applies to the TCP clients.
  assert.ok(parse("--udp", "--check", "--accept-proxy", "53", "a:53").check);
  assert.ok(parse("--udp-only", "--check", "--check-send", "\\x00", "53", "a:53").check);
});

test("command line: the UDP options are words dump writes and a file takes; a reload cannot change them", async () => {
  const c = parse("--udp-only", "--udp-timeout", "5", "--udp-responses", "1", "--udp-max-sessions", "9", "53", "a:53");
  assert.deepEqual(c.optionWords, [
    "--udp-only",
    "--udp-timeout",
    "5",
    "--udp-responses",
    "1",
    "--udp-max-sessions",
    "9",
  ]);
  assert.deepEqual(parse(...c.optionWords, "53", "a:53").udp, c.udp, "the words parse to the same settings");
  const { restartOnlyChanges } = await import("../../src/app/reload.ts");
  assert.deepEqual(restartOnlyChanges(c, parse("--udp", "53", "a:53")), ["--udp, --udp-only and their options"]);
});
