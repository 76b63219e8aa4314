import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { availableParallelism } from "node:os";
import { type Backend, type Client, connect, freePort, whoAnswers } from "../support/net.ts";
import { runBalance, type Running, startBalance, withBalancer } from "../support/balance.ts";
import { until } from "../support/wait.ts";

const at = (b: Backend, maxc?: number) => `${b.host}:${b.port}${maxc === undefined ? "" : `:${maxc}`}`;

/** How many clients each worker accepted, from the `-d` traces. */
const acceptedBy = (lb: Running) =>
  [0, 1].map((w) => lb.stderr().split("\n").filter((l) => l.includes(`worker ${w}: accepted`)).length);

/**
 * `balance -w 2` in front of `channels(backends)`, with its own control
 * directory; it must exit 0 and leave no control socket.
 */
function withWorkers(
  names: string[],
  channels: (bs: Backend[]) => string[],
  fn: (f: { port: number; lb: Running; backends: Backend[]; ctl(c: string): Promise<string> }) => Promise<void>,
) {
  return withBalancer({
    backends: names,
    options: ["-w", "2"],
    channels,
    controlDir: true,
    ready: "in 2 thread(s)",
    exitCode: 0,
    socketRemoved: true,
  }, ({ port, lb, backends, env }) => {
    const ctl = async (command: string) => {
      const r = await runBalance(["-c", command, String(port)], { env });
      assert.equal(r.code, 0, `balance -c '${command}': ${r.stderr}`);
      return r.stdout;
    };
    return fn({ port, lb, backends, ctl });
  });
}

test("workers: -w 2 accepts in both threads and keeps one round robin over them", () =>
  withWorkers(["a", "b"], ([a, b]) => [at(a), at(b)], async ({ port, lb, ctl }) => {
    const seen = [];
    for (let i = 0; i < 40; i++) seen.push(await whoAnswers(port));
    // One shared RR position: strict alternation whichever thread accepted.
    assert.deepEqual(seen, Array.from({ length: 40 }, (_, i) => (i % 2 ? "b" : "a")));
    // Worker traces reach the log a moment after the answer.
    const [w0, w1] = await until(() => acceptedBy(lb), ([x, y]) => x + y === 40, "40 accepted traces");
    assert.ok(w0 > 0 && w1 > 0, `both workers accept (worker 0: ${w0}, worker 1: ${w1})`);
    const show = JSON.parse(await ctl("show --json"));
    assert.deepEqual(show.map((r: { totalc: number; rcvd: number }) => [r.totalc, r.rcvd]), [[20, 40], [20, 40]]);
  }));

for (
  const [kind, weights, expected] of [["round robin", ["", ""], [100, 100]], ["weighted", [":0:3", ":0:1"], [
    150,
    50,
  ]]] as const
) {
  test(`workers: 200 clients at once over -w 2 split exactly ${expected.join("/")} (${kind})`, () =>
    withWorkers(["a", "b"], ([a, b]) => [at(a) + weights[0], at(b) + weights[1]], async ({ port, lb, ctl }) => {
      // Both threads pick at the same moment: without a compare-and-swap on
      // the shared position, two of them take the same turn (99/101 was seen).
      for (let round = 0; round < 3; round++) {
        const clients: Client[] = await Promise.all(Array.from({ length: 200 }, () => connect(port)));
        try {
          await Promise.all(clients.map((c) => c.waitFor((d) => d.includes(10))));
          const answers = clients.map((c) => c.received().toString().trim());
          const split = [answers.filter((x) => x === "a").length, answers.filter((x) => x === "b").length];
          assert.deepEqual(split, expected, `round ${round}`);
        } finally {
          clients.forEach((c) => c.socket.destroy());
        }
      }
      const [w0, w1] = await until(() => acceptedBy(lb), ([x, y]) => x + y === 600, "600 accepted traces");
      assert.ok(w0 > 0 && w1 > 0, `both workers accepted (${w0}, ${w1})`);
      const show = JSON.parse(await ctl("show --json"));
      assert.deepEqual(show.map((r: { totalc: number }) => r.totalc), expected.map((n) => 3 * n));
    }));
}

test("workers: maxc holds across threads: of maxc+k concurrent clients exactly maxc reach the channel", () =>
  withWorkers(["a", "b"], ([a, b]) => [at(a, 10), "!", at(b)], async ({ port, lb, backends: [a, b], ctl }) => {
    const clients: Client[] = await Promise.all(Array.from({ length: 30 }, () => connect(port)));
    try {
      await Promise.all(clients.map((c) => c.waitFor((d) => d.includes(10))));
      const answers = clients.map((c) => c.received().toString().trim());
      assert.equal(answers.filter((x) => x === "a").length, 10);
      assert.equal(answers.filter((x) => x === "b").length, 20);
      assert.equal(a.sockets.size, 10, "the channel itself saw exactly maxc connections");
      const [w0, w1] = acceptedBy(lb);
      assert.ok(w0 > 0 && w1 > 0, `clients came through both workers (${w0}, ${w1})`);
      const show = JSON.parse(await ctl("show --json"));
      assert.deepEqual(show.map((r: { c: number }) => r.c), [10, 20]);
    } finally {
      clients.forEach((c) => c.socket.destroy());
    }
    // Every thread's releases reach the one c.
    await until(
      async () => JSON.parse(await ctl("show --json")).map((r: { c: number }) => r.c),
      (cs: number[]) => cs.every((c) => c === 0),
      "every channel's c back to 0",
    );
    await until(
      () => [a.sockets.size, b.sockets.size],
      (open) => open.every((n) => n === 0),
      "backends' sockets closed",
    );
  }));

test("workers: the control channel changes what every thread does (disable, create, assign, enable)", () =>
  withWorkers(["a", "b", "n"], ([a, b]) => [at(a), at(b)], async ({ port, lb, backends: [, , n], ctl }) => {
    assert.equal((await ctl("disable 0")).trim(), "channel 0 disabled");
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) seen.add(await whoAnswers(port));
    assert.deepEqual([...seen], ["b"], "no thread uses the disabled channel");
    // A new channel, made and pointed in the control thread, reaches the workers.
    assert.equal((await ctl("create 127.0.0.1 1")).trim(), "channel created");
    assert.equal((await ctl(`assign 2 127.0.0.1 ${n.port}`)).trim(), "channel reassigned");
    assert.equal((await ctl("disable 1")).trim(), "channel 1 disabled");
    assert.equal((await ctl("enable 2")).trim(), "channel 2 enabled");
    const before = acceptedBy(lb);
    for (let i = 0; i < 20; i++) assert.equal(await whoAnswers(port), "n");
    const after = acceptedBy(lb);
    assert.ok(
      after[0] > before[0] && after[1] > before[1],
      `both workers served the new channel (${before} → ${after})`,
    );
    const show = JSON.parse(await ctl("show --json"));
    assert.deepEqual(show.map((r: { totalc: number }) => r.totalc), [0, 20, 20]);
  }));

test("workers: -w takes 1-64 or auto; anything else is a usage error", async () => {
  for (const bad of ["0", "65", "x", "-1", ""]) {
    const r = await runBalance(["-f", "-w", bad, "8080", "127.0.0.1:1"]);
    assert.equal(r.code, 64, `-w '${bad}': ${r.stderr}`);
    assert.match(r.stderr, /^balance: invalid workers \(-w\) '.*': must be 1-64 or auto\n/);
  }
  for (const [n, threads] of [["1", "1"], ["64", "64"], ["auto", String(Math.min(availableParallelism(), 64))]]) {
    const port = await freePort();
    const lb = await startBalance(["-w", n, String(port), "127.0.0.1:1"], port);
    let code;
    try {
      await lb.waitForTrace(`in ${threads} thread(s)`, 30_000);
    } finally {
      code = await lb.stop();
    }
    assert.equal(code, 0, `-w ${n}`);
  }
});
