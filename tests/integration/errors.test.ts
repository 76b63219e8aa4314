/**
 * Errors a user meets first: a host that does not resolve (exit 68, one
 * line, no usage), option messages that agree, a synopsis with every option.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import { freePort } from "../support/net.ts";
import { runBalance } from "../support/balance.ts";
import { withTempDir } from "../support/helpers.ts";

/** A private control directory for the duration of `fn`. */
const withControlDir = (fn: (env: Record<string, string>) => Promise<void>) =>
  withTempDir("balance-err-", (dir) => fn({ BALANCE_CONTROL_DIR: dir }));

test("errors: an unresolvable host exits 68 with one line naming it, no usage", () =>
  withControlDir(async (env) => {
    const port = String(await freePort());
    for (
      const [args, line] of [
        [["-f", port, "nosuchhost.invalid:80"], "cannot resolve channel host 'nosuchhost.invalid'"],
        [["-f", port, "127.0.0.1:1", "!", "nosuchhost.invalid"], "cannot resolve channel host 'nosuchhost.invalid'"],
        [
          ["-f", "-b", "nosuchhost.invalid", port, "127.0.0.1:1"],
          "cannot resolve bind address (-b) 'nosuchhost.invalid'",
        ],
        [
          ["-f", "-B", "nosuchhost.invalid", port, "127.0.0.1:1"],
          "cannot resolve source address (-B) 'nosuchhost.invalid'",
        ],
        // In the background the detached copy fails; its line and code reach the terminal.
        // (--log-file: a machine without /dev/log would add syslog's warning.)
        [
          ["--log-file", join(env.BALANCE_CONTROL_DIR, "log"), port, "nosuchhost.invalid:80"],
          "cannot resolve channel host 'nosuchhost.invalid'",
        ],
      ] as [string[], string][]
    ) {
      const r = await runBalance(args, { env });
      assert.deepEqual([r.code, r.stdout, r.stderr], [68, "", `balance: ${line}\n`], args.join(" "));
    }
  }));

test("errors: messages about one option agree; -T -5 says the value is invalid", async () => {
  const first = async (args: string[]) => {
    const r = await runBalance([...args, "80", "127.0.0.1:1"]);
    assert.equal(r.code, 64, args.join(" "));
    assert.match(r.stderr, /\nTry 'balance --help'\.\n$/, "a command-line mistake points at --help");
    return r.stderr.split("\n")[0];
  };
  assert.equal(await first(["-t", "0"]), "balance: invalid connect timeout (-t) '0': must be 1-2000000 seconds");
  assert.equal(await first(["-t", "abc"]), "balance: invalid connect timeout (-t) 'abc': must be 1-2000000 seconds");
  assert.equal(await first(["-T", "-5"]), "balance: invalid idle timeout (-T) '-5': must be 0-2000000 seconds");
  assert.equal(await first(["-T", "x"]), "balance: invalid idle timeout (-T) 'x': must be 0-2000000 seconds");
  assert.equal(
    await first(["--grace", "-1"]),
    "balance: invalid grace period (--grace) '-1': must be 0-2000000 seconds",
  );
  assert.equal(await first(["-w", "-2"]), "balance: invalid workers (-w) '-2': must be 1-64 or auto");
});

test("errors: the usage synopsis lists every option", async () => {
  const r = await runBalance(["--help"]);
  assert.equal(r.code, 0);
  const synopsis = r.stdout.slice(0, r.stdout.indexOf("\n\n"));
  const options = [
    ...["-b", "-B", "-t", "-T", "-w", "-c", "-i", "-d", "-F", "--grace", "--log-file", "--syslog", "--list"],
    ...["--check-config", "--resolver", "--resolve-interval"],
  ];
  for (const option of options) {
    assert.match(synopsis, new RegExp(`[\\s[]${option}[\\s\\]]`), `${option} in the synopsis:\n${synopsis}`);
  }
  assert.match(synopsis, /\[-adfpHM6\]/);
  assert.match(synopsis, /--help \| --version/);
  // Each has its line below the synopsis too.
  for (const option of [...options, "--help", "--version"]) {
    assert.match(r.stdout.slice(synopsis.length), new RegExp(`^ {2}${option}\\b`, "m"), option);
  }
});
