/**
 * The suite of real services (`tests/services/`): the recipes of
 * docs/services.md, the Debian servers they configure (Dovecot, Postfix;
 * nginx is in `nginx.ts`, dnsmasq in `dnsmasq.ts`), each run privately from
 * a temporary directory on free loopback ports by {@link startDaemon}, and the real
 * clients (curl, dig, swaks) run with a time limit.
 *
 * The recipes are the documentation's own text: a test takes a block,
 * replaces the documented addresses with its own, and runs it, so a recipe
 * that stops working fails a test, and one the test no longer finds does
 * too.
 *
 * @module
 */
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { type Daemon, startDaemon } from "./daemon.ts";
import { findProgram } from "./netns.ts";
import { onTimeout } from "./test.ts";

const SERVICES_PAGE = fileURLToPath(import.meta.resolve("../../docs/services.md"));

/**
 * Why the programs cannot run here (the first one missing, with the Debian
 * package that has it), or false when they all can.
 *
 * @example
 * ```ts
 * test("http: …", { skip: missing({ nginx: "nginx-light", curl: "curl" }) }, async () => { ... });
 * ```
 */
export function missing(programs: Record<string, string>): string | false {
  for (const [program, pkg] of Object.entries(programs)) {
    const found = program.startsWith("/") ? existsSync(program) : findProgram(program);
    if (!found) return `${program} is not installed (Debian package ${pkg}; scripts/test-deps installs it)`;
  }
  return false;
}

/**
 * The code block that follows `<!-- recipe: NAME -->` in docs/services.md,
 * with every key of `replace` replaced by its value, in one pass (a value is
 * never replaced again). A key matches only as a whole word: not inside a
 * longer address, port or name. Throws when the recipe or a key is not
 * there, so the page and its tests cannot drift apart.
 *
 * @example
 * ```ts
 * const line = recipe("dns-balance", { "53": String(port), "10.0.0.1:53": `127.0.0.1:${a.port}`, "10.0.0.2:53": `127.0.0.1:${b.port}` });
 * ```
 */
export function recipe(name: string, replace: Record<string, string> = {}): string {
  const page = readFileSync(SERVICES_PAGE, "utf8");
  const marker = `<!-- recipe: ${name} -->`;
  const at = page.indexOf(marker);
  if (at < 0) throw new Error(`docs/services.md has no ${marker}`);
  const block = /^```[^\n]*\n([\s\S]*?)^```/m.exec(page.slice(at + marker.length));
  if (!block) throw new Error(`docs/services.md: no code block after ${marker}`);
  const text = block[1];
  const keys = Object.keys(replace).sort((a, b) => b.length - a.length);
  if (keys.length === 0) return text;
  const escaped = keys.map((k) => k.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const word = new RegExp(`(?<![\\w.:])(${escaped.join("|")})(?![\\w.:])`, "g");
  const seen = new Set<string>();
  const filled = text.replace(word, (key) => (seen.add(key), replace[key]));
  const absent = keys.filter((k) => !seen.has(k));
  if (absent.length) throw new Error(`docs/services.md recipe ${name} no longer has ${absent.join(", ")}:\n${text}`);
  return filled;
}

/**
 * A command line's words: split at blanks outside single or double quotes
 * (the quoting the recipes use), the quotes removed.
 *
 * @example
 * ```ts
 * words("curl 'imap://a@h/INBOX;UID=1'"); // ["curl", "imap://a@h/INBOX;UID=1"]
 * ```
 */
export function words(line: string): string[] {
  return [...line.trim().matchAll(/(?:'[^']*'|"[^"]*"|[^\s'"])+/g)].map((m) =>
    m[0].replace(/'([^']*)'|"([^"]*)"/g, "$1$2")
  );
}

/**
 * balance's arguments from a documented `balance …` line: without the
 * program and without `-f`, which {@link startBalance} adds.
 *
 * @example
 * ```ts
 * await withBalancer({ args: () => balanceArgs(recipe("smtp-balance", { ... })) }, async ({ port }) => { ... });
 * ```
 */
export function balanceArgs(line: string): string[] {
  const [program, ...args] = words(line);
  if (program !== "balance") throw new Error(`not a balance command line: ${line}`);
  return args.filter((a) => a !== "-f");
}

/** What a client printed and how it exited. */
export interface ClientRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a client (curl, dig, swaks) to completion, killed after `ms`
 * (default 20 s) or when the test times out; never throws for its exit code.
 *
 * @example
 * ```ts
 * const r = await runClient("curl", ["-sS", `http://127.0.0.1:${port}/`]);
 * assert.equal(r.code, 0, r.stderr);
 * ```
 */
export function runClient(program: string, args: string[], ms = 20_000): Promise<ClientRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: ["ignore", "pipe", "pipe"] });
    onTimeout(() => child.kill("SIGKILL"));
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      stderr += `\n[the test killed ${program} after ${ms / 1000} s]\n`;
      child.kill("SIGKILL");
    }, ms);
    child.on("error", (err) => (clearTimeout(timer), reject(err)));
    child.on("close", (code) => (clearTimeout(timer), resolve({ code, stdout, stderr })));
  });
}

/** The one message in the mailbox of {@link startDovecot}'s user, as stored. */
export const MAILBOX_MESSAGE = "From: bob@example.test\r\nTo: alice@example.test\r\n" +
  "Subject: hello through balance\r\n\r\nThe one message of this mailbox.\r\n";

/** A mail user of {@link startDovecot}: `alice`, password `secret`. */
export const MAIL_USER = { name: "alice", password: "secret" };

/** The user a private server runs as: the current one, or nobody under root (mail may not be read as root). */
function serverUser(): { name: string; group: string; uid: number; gid: number; setpriv: string[] } {
  const uid = process.getuid?.() ?? 0;
  if (uid === 0) {
    return {
      name: "nobody",
      group: "nogroup",
      uid: 65534,
      gid: 65534,
      setpriv: ["--reuid=65534", "--regid=65534", "--clear-groups", "--"],
    };
  }
  const id = (flag: string) => spawnSync("id", [flag], { encoding: "utf8" }).stdout.trim();
  return { name: id("-un"), group: id("-gn"), uid, gid: Number(id("-g")), setpriv: [] };
}

/** Every file and directory under `dir`, `dir` included, given to `uid`:`gid`. */
function chownTree(dir: string, uid: number, gid: number): void {
  chownSync(dir, uid, gid);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) chownTree(path, uid, gid);
    else chownSync(path, uid, gid);
  }
}

/** A Dovecot started by {@link startDovecot}. */
export interface Dovecot extends Daemon {
  /** Its log so far (logins with `rip=`, errors). */
  log(): string;
}

/**
 * Starts Dovecot (IMAP and POP3) from a private configuration: its own
 * base and state directories and log, TLS off, a passwd-file with
 * {@link MAIL_USER}, whose maildir holds {@link MAILBOX_MESSAGE}. The whole
 * server runs as one unprivileged user (the current one; nobody under
 * root), Dovecot's non-root mode. `listeners(imapPort, pop3Port)` gives the
 * listener settings, from docs/services.md; they must listen on 127.0.0.1.
 *
 * @example
 * ```ts
 * const dovecot = await startDovecot((imap, pop3) => recipe("mail-dovecot", { "10.0.0.1": "127.0.0.1", "143": String(imap), ... }));
 * try { ... } finally { await dovecot.stop(); }
 * ```
 */
export async function startDovecot(listeners: (imapPort: number, pop3Port: number) => string): Promise<Dovecot> {
  const dovecot = findProgram("dovecot");
  if (!dovecot) throw new Error("dovecot is not installed");
  const user = serverUser();
  const daemon = await startDaemon({
    name: "dovecot",
    program: user.setpriv.length ? "setpriv" : dovecot,
    ports: 2,
    files: (dir, imap, [, pop3]) => ({
      "users":
        `${MAIL_USER.name}:{PLAIN}${MAIL_USER.password}:${user.uid}:${user.gid}::${dir}/mail/${MAIL_USER.name}::\n`,
      "dovecot.conf": `
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
instance_name = balance-test-${imap}
default_internal_user = ${user.name}
default_internal_group = ${user.group}
default_login_user = ${user.name}
protocols = imap pop3
listen = 127.0.0.1
ssl = no
# Plain passwords without TLS, on loopback only.
disable_plaintext_auth = no
passdb {
  driver = passwd-file
  args = ${dir}/users
}
userdb {
  driver = passwd-file
  args = ${dir}/users
}
mail_location = maildir:${dir}/mail/%n/Maildir
# A server not started as root cannot chroot its login processes and anvil.
service anvil {
  chroot =
}
service imap-login {
  chroot =
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  chroot =
  inet_listener pop3s {
    port = 0
  }
}
${listeners(imap, pop3)}
`,
    }),
    prepare: (dir) => {
      const maildir = join(dir, "mail", MAIL_USER.name, "Maildir");
      for (const sub of ["cur", "new", "tmp"]) mkdirSync(join(maildir, sub), { recursive: true });
      writeFileSync(join(maildir, "new", "1700000000.M1P1.balance-test"), MAILBOX_MESSAGE);
      chownTree(dir, user.uid, user.gid);
    },
    args: (dir) => [...user.setpriv, ...(user.setpriv.length ? [dovecot] : []), "-F", "-c", `${dir}/dovecot.conf`],
  });
  return { ...daemon, log: () => readOr(join(daemon.dir, "dovecot.log")) };
}

/** A Postfix started by {@link startPostfix}. */
export interface Postfix extends Daemon {
  /** Its mail log so far (`connect from`, `client=`, deliveries). */
  log(): string;
  /** The messages delivered to {@link MAIL_USER}'s maildir so far. */
  delivered(): string[];
}

/** Why {@link startPostfix} cannot run here, or false. */
export function postfixUnavailable(): string | false {
  if (process.getuid?.() !== 0) {
    return "needs root (Postfix's master starts as root and its daemons change to user postfix)";
  }
  return missing({ "/usr/lib/postfix/sbin/master": "postfix" });
}

/**
 * Starts a private Postfix: its own configuration directory, queue, data
 * directory and mail log (postlogd), one `smtpd` on a free port of
 * 127.0.0.1, delivering mail for `alice@example.test` into a maildir of its
 * own and nowhere else (no relaying, no DNS). `mainCf` is added to
 * `main.cf` (the settings from docs/services.md). Needs root: see
 * {@link postfixUnavailable}.
 *
 * @example
 * ```ts
 * const postfix = await startPostfix(recipe("smtp-postfix"));
 * try { ... } finally { await postfix.stop(); }
 * ```
 */
export async function startPostfix(mainCf: string): Promise<Postfix> {
  const master = "/usr/lib/postfix/sbin/master";
  const postfix = findProgram("postfix");
  if (!postfix) throw new Error("postfix is not installed");
  const daemon = await startDaemon({
    name: "postfix",
    program: master,
    files: (dir, port) => ({
      "main.cf": `
compatibility_level = 3.6
queue_directory = ${dir}/queue
data_directory = ${dir}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = smtp.example.test
mydestination =
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
alias_database =
smtputf8_enable = no
# No DNS: the clients have no names, and the tests must not wait for a resolver.
smtpd_peername_lookup = no
maillog_file = ${dir}/maillog
maillog_file_prefixes = ${dir}
virtual_mailbox_domains = example.test
virtual_mailbox_base = ${dir}/mail
virtual_mailbox_maps = texthash:${dir}/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
${mainCf}
`,
      "vmailbox": `${MAIL_USER.name}@example.test ${MAIL_USER.name}/\n`,
      // Debian's services, chroot off (the directory has no chroot tree), and one smtpd.
      "master.cf": `
127.0.0.1:${port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`,
    }),
    prepare: (dir) => {
      // Postfix's daemons read the configuration as user postfix.
      chmodSync(dir, 0o755);
      mkdirSync(join(dir, "queue"));
      mkdirSync(join(dir, "mail"));
      chownSync(join(dir, "mail"), 65534, 65534);
      // `postfix check` creates the queue's directories with their owners and modes.
      const check = spawnSync(postfix, ["-c", dir, "check"], { encoding: "utf8", timeout: 30_000 });
      if (check.status !== 0) {
        throw new Error(`postfix check exited ${check.status}: ${check.stderr}${readOr(join(dir, "maillog"))}`);
      }
    },
    args: (dir) => ["-d", "-c", dir],
  });
  return {
    ...daemon,
    log: () => readOr(join(daemon.dir, "maillog")),
    delivered: () => {
      const box = join(daemon.dir, "mail", MAIL_USER.name, "new");
      try {
        return readdirSync(box).map((f) => readFileSync(join(box, f), "utf8"));
      } catch {
        return [];
      }
    },
  };
}

/** The file's text, or "" when it cannot be read (not written yet). */
function readOr(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}
