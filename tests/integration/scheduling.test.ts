/**
 * Weights, smooth weighted round robin and least connection on real
 * sockets, against the real balancer, in one thread and in two (`-w 2`).
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { type Backend, type Client, connect, freePort, startBackend, whoAnswers } from "../support/net.ts";
import { runBalance, type Running, startBalance } from "../support/balance.ts";
import { until } from "../support/wait.ts";

/** `host:port:maxc:weight` of a backend (no maxc). */
const weighted = (b: Backend, weight: number) => `${b.host}:${b.port}:0:${weight}`;
const at = (b: Backend) => `${b.host}:${b.port}`;

interface Scene {
  port: number;
  lb: Running;
  backends: Backend[];
  ctl(command: string): Promise<string>;
  /** Each channel's `c`, from `show --json`. */
  counts(): Promise<number[]>;
}

/** Backends named `names`, balance with `options` in front of `channels(backends)`. */
async function scene(
  names: string[],
  options: string[],
  channels: (bs: Backend[]) => string[],
  fn: (s: Scene) => Promise<void>,
): Promise<void> {
  const backends: Backend[] = [];
  let lb: Running | undefined;
  try {
    for (const name of names) backends.push(await startBackend(name));
    const port = await freePort();
    lb = await startBalance([...options, String(port), ...channels(backends)], port);
    const ctl = async (command: string) => {
      const r = await runBalance(["-c", command, String(port)]);
      assert.equal(r.code, 0, `balance -c '${command}': ${r.stderr}`);
      return r.stdout.trimEnd();
    };
    const counts = async () => JSON.parse(await ctl("show --json")).map((r: { c: number }) => r.c);
    await fn({ port, lb, backends, ctl, counts });
  } finally {
    await lb?.stop();
    await Promise.all(backends.map((b) => b.close()));
  }
}

/** A client that stays connected, once its backend has greeted it: the backend's name. */
async function hold(port: number): Promise<{ client: Client; name: string }> {
  const client = await connect(port);
  const data = await client.waitFor((d) => d.includes(10));
  return { client, name: data.toString().split("\n")[0] };
}

const SMOOTH_5_1_1 = ["a", "a", "b", "a", "c", "a", "a"];

for (const workers of [[], ["-w", "2"]]) {
  const w = workers.length ? " (-w 2)" : "";

  test(`scheduling${w}: weights 5,1,1 interleave, 5/1/1 in every 7 connections`, () =>
    scene(["a", "b", "c"], workers, ([a, b, c]) => [weighted(a, 5), weighted(b, 1), weighted(c, 1)], async (s) => {
      const rounds = workers.length ? 4 : 2;
      const seen = [];
      for (let i = 0; i < 7 * rounds; i++) seen.push(await whoAnswers(s.port));
      assert.deepEqual(seen, Array(rounds).fill(SMOOTH_5_1_1).flat());
      const rows = JSON.parse(await s.ctl("show --json"));
      const totals = [5, 1, 1].map((weight) => [weight, weight * rounds]);
      assert.deepEqual(rows.map((r: { weight: number; totalc: number }) => [r.weight, r.totalc]), totals);
      if (workers.length) {
        // One shared position: the sequence held whichever thread accepted.
        const accepted = await until(
          () => [0, 1].map((n) => s.lb.stderr().split("\n").filter((l) => l.includes(`worker ${n}: accepted`)).length),
          ([x, y]) => x + y === 7 * rounds,
          "every accept traced",
        );
        assert.ok(accepted.every((n) => n > 0), `both workers accepted (${accepted})`);
      }
    }));

  test(`scheduling${w}: -L with long-lived connections: the next ones go to the channel that emptied`, () =>
    scene(["a", "b"], ["-L", ...workers], ([a, b]) => [at(a), at(b)], async (s) => {
      const held: { client: Client; name: string }[] = [];
      try {
        for (let i = 0; i < 6; i++) held.push(await hold(s.port));
        assert.deepEqual(held.map((h) => h.name).sort(), ["a", "a", "a", "b", "b", "b"]);
        assert.deepEqual(await s.counts(), [3, 3]);
        assert.match(await s.ctl("show"), /\n {2}0 LC {4}0 ENA/);
        for (const h of held.filter((h) => h.name === "a")) h.client.socket.destroy();
        await until(s.counts, (cs: number[]) => cs[0] === 0, "channel a's connections released");
        const next = [];
        for (let i = 0; i < 3; i++) {
          const h = await hold(s.port);
          held.push(h);
          next.push(h.name);
        }
        assert.deepEqual(next, ["a", "a", "a"]);
        assert.deepEqual(await s.counts(), [3, 3]);
      } finally {
        held.forEach((h) => h.client.socket.destroy());
      }
    }));

  test(`scheduling${w}: weight 0 drains: the open connection keeps working, new ones go elsewhere`, () =>
    scene(["a", "b"], workers, ([a, b]) => [at(a), at(b)], async (s) => {
      const first = await hold(s.port);
      try {
        assert.equal(first.name, "a");
        assert.equal(await s.ctl("weight 0 0"), "weight of channel 0 changed to 0");
        for (let i = 0; i < 6; i++) assert.equal(await whoAnswers(s.port), "b");
        first.client.socket.write("still here\n");
        await first.client.waitFor((d) => d.toString() === "a\nstill here\n");
        assert.deepEqual(await s.counts(), [1, 0]);
        assert.equal(JSON.parse(await s.ctl("show --json"))[0].weight, 0);
        assert.equal(await s.ctl("weight 0 1"), "weight of channel 0 changed to 1");
        const back = new Set<string>();
        for (let i = 0; i < 4; i++) back.add(await whoAnswers(s.port));
        assert.deepEqual([...back].sort(), ["a", "b"]);
      } finally {
        first.client.socket.destroy();
      }
    }));
}

test("scheduling: the weight command changes the interleaving at once", () =>
  scene(["a", "b"], [], ([a, b]) => [at(a), at(b)], async (s) => {
    assert.equal(await s.ctl("weight 1 3"), "weight of channel 1 changed to 3");
    const seen = [];
    for (let i = 0; i < 8; i++) seen.push(await whoAnswers(s.port));
    // nginx's smooth WRR for weights 1,3.
    assert.deepEqual(seen, ["b", "a", "b", "b", "b", "a", "b", "b"]);
    const bad = await runBalance(["-c", "weight 1 257", String(s.port)]);
    assert.equal(bad.code, 65, "an error answer");
    assert.match(bad.stdout + bad.stderr, /value out of range/);
    assert.deepEqual(JSON.parse(await s.ctl("show --json")).map((r: { weight: number }) => r.weight), [1, 3]);
  }));

test("scheduling: leastconn and rr answer and switch the current group; show reads LC", () =>
  scene(["a", "b"], [], ([a, b]) => [at(a), "!", at(b)], async (s) => {
    assert.equal(await s.ctl("leastconn"), "group 0 set to least connection");
    const show = (await s.ctl("show")).split("\n");
    assert.match(show[1], /^ {2}0 LC {4}0 ENA/);
    assert.match(show[2], /^ {2}1 RR {4}0 ENA/);
    assert.deepEqual(JSON.parse(await s.ctl("show --json")).map((r: { type: string }) => r.type), ["LC", "RR"]);
    assert.equal(await whoAnswers(s.port), "a");
    assert.equal(await s.ctl("rr"), "group 0 set to round robin");
    assert.match((await s.ctl("show")).split("\n")[1], /^ {2}0 RR {4}0 ENA/);
  }));

test("scheduling: a bad weight on the command line exits 64 with one line naming the channel", async () => {
  const r = await runBalance(["-f", "8080", "127.0.0.1:80:0:300"]);
  assert.equal(r.code, 64);
  assert.match(r.stderr, /^balance: invalid weight in channel '127\.0\.0\.1:80:0:300' '300': must be 0-256\n/);
});
