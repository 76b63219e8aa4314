/**
 * balance beyond one machine (issue 16), with the real engines, in network
 * namespaces (tests/support/netns.ts) on 198.18.0.0/15:
 *
 * - an active/passive pair: keepalived (VRRP) in `lb1` and `lb2` holds a
 *   virtual address in front of a balancer on each; a client connecting
 *   every 50 ms sees how long each failover takes;
 * - an active-active pair behind ECMP: bird2 on both nodes announces the
 *   service address over BGP to bird2 on `router`, which installs a
 *   multipath route; both nodes run the same `%` group, listed in different
 *   orders, so a client reaches the same backend whichever node carries it.
 *
 * The configuration files are the examples in packaging/keepalived and
 * packaging/bird, filled in as envsubst(1) would; docs/scaling.md shows them.
 * Backends answer `NAME PEER`: which backend served, and from which node
 * the connection came.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { balanceCommand, type Running, startBalance } from "../support/balance.ts";
import { findProgram, type Lab, labUnavailable, type Started, withLab } from "../support/netns.ts";
import { until } from "../support/wait.ts";
import { Channel, Group, hashClientAddress } from "../../src/core/mod.ts";
import { hashedChannels } from "../../src/core/selection/schedule/rendezvous.ts";
import { sleep } from "../support/helpers.ts";

const PORT = 8080;
const MAX_OUTAGE_S = 5;

/** The file `packaging/NAME` with every `${VAR}` replaced, as envsubst does. */
function filled(name: string, vars: Record<string, string>): string {
  const template = readFileSync(new URL(`../../packaging/${name}`, import.meta.url).pathname, "utf8");
  return template.replace(/\$\{(\w+)\}/g, (_, v: string) => {
    assert.ok(v in vars, `packaging/${name} uses \${${v}}, which the test does not set`);
    return vars[v];
  });
}

// The interpreter itself, not a version manager's shim, for the small
// servers and clients run in the namespaces.
const PYTHON = findProgram("python3") &&
  spawnSync("python3", ["-c", "import sys; print(sys.executable)"], { encoding: "utf8" }).stdout.trim();

/** A server that answers every connection with `NAME PEER-ADDRESS\n` and closes; it stops by itself. */
const BACKEND_PY = `
import socket, sys, time
name, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(512)
s.settimeout(1)
print("listening", flush=True)
end = time.time() + 200
while time.time() < end:
    try:
        c, peer = s.accept()
    except socket.timeout:
        continue
    try:
        c.sendall(f"{name} {peer[0]}\\n".encode())
    except OSError:
        pass
    c.close()
`;

/** The answer to one connection: a line, or the error. */
const ASK_PY = `
import socket, json
def ask(host, port, source=None, timeout=0.5):
    try:
        c = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0) if source else None)
        with c:
            c.settimeout(2)
            data = b""
            for _ in range(10):
                chunk = c.recv(200)
                if not chunk:
                    break
                data += chunk
                if data.endswith(b"\\n"):
                    break
        return data.endswith(b"\\n"), data.decode(errors="replace").strip()
    except OSError as e:
        return False, str(e)
`;

/** One connection every EVERY seconds for at most LIMIT seconds; one JSON line per attempt. */
const LOOP_PY = ASK_PY + `
import sys, time
host, port, every, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
end = time.time() + limit
while time.time() < end:
    t = time.time()
    ok, answer = ask(host, port)
    print(json.dumps({"t": t, "ok": ok, "answer": answer}), flush=True)
    time.sleep(max(0.0, t + every - time.time()))
`;

/** ROUNDS rounds of one connection from each source address; one JSON line (the answers) per round. */
const ROUNDS_PY = ASK_PY + `
import sys
from concurrent.futures import ThreadPoolExecutor
host, port, rounds, sources = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")
with ThreadPoolExecutor(16) as pool:
    for _ in range(rounds):
        got = list(pool.map(lambda s: ask(host, port, s, 2), sources))
        print(json.dumps([a if ok else "failed: " + a for ok, a in got]), flush=True)
`;

/** Starts a backend named `name` in its namespace and waits until it listens. */
async function startBackendIn(lab: Lab, name: string): Promise<Started> {
  const b = lab.spawn(name, [PYTHON!, "-c", BACKEND_PY, name, String(PORT)]);
  await until(() => b.stdout(), (out) => out.includes("listening") || b.child.exitCode !== null, `${name} to listen`);
  assert.equal(b.child.exitCode, null, `${name} exited: ${b.stderr()}`);
  return b;
}

/** balance in namespace `ns` with the configuration file `config`, its control directory private. */
function startBalanceIn(lab: Lab, ns: string, config: string): Promise<Running> {
  const file = join(lab.dir, `${ns}-balance.conf`);
  writeFileSync(file, config);
  const controlDir = join(lab.dir, `${ns}-control`);
  mkdirSync(controlDir, { recursive: true });
  return startBalance(["-F", file], PORT, {
    command: ["ip", "netns", "exec", lab.ns(ns), ...balanceCommand()],
    env: { BALANCE_CONTROL_DIR: controlDir },
  });
}

/** One attempt of the client loop. */
interface Attempt {
  t: number;
  ok: boolean;
  answer: string;
}

const attempts = (loop: Started): Attempt[] =>
  loop.stdout().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));

/** The address of the node a `NAME PEER` answer came through. */
const via = (answer: string) => answer.split(" ")[1];

/**
 * The outage around `at` (seconds): from the last success before it to the
 * first success after it, which must come through `to`; and every attempt
 * from that success until `end` must succeed through `to`.
 */
function outage(all: Attempt[], at: number, end: number, to: string): number {
  const before = all.filter((a) => a.t < at && a.ok).at(-1);
  assert.ok(before, "a success before the failure");
  const afterIdx = all.findIndex((a) => a.t >= at && a.ok);
  assert.ok(afterIdx >= 0, "a success after the failure");
  const after = all[afterIdx];
  assert.equal(via(after.answer), to, `the first success after the failure comes through ${to}`);
  const rest = all.slice(afterIdx).filter((a) => a.t < end);
  const bad = rest.filter((a) => !a.ok || via(a.answer) !== to);
  assert.deepEqual(bad, [], `every connection after the move succeeds through ${to}`);
  assert.ok(rest.length >= 10, `connections went on after the move: ${rest.length}`);
  return after.t - before.t;
}

const HA_NET = "198.18.1";
const VIP = `${HA_NET}.100`;
const LB = { lb1: `${HA_NET}.11`, lb2: `${HA_NET}.12` } as const;

/** keepalived in `lb`, its liveness check `balance -c show PORT` against that node's balancer. */
function startKeepalived(lab: Lab, lb: "lb1" | "lb2", priority: number): Started {
  const peer = lb === "lb1" ? LB.lb2 : LB.lb1;
  // keepalived runs the check with a clean environment: the script says
  // which balancer (control directory) and which runtime.
  const check = join(lab.dir, `${lb}-check`);
  const env = ["PATH", "HOME", "DENO_DIR", "BALANCE_BIN", "BALANCE_RUNTIME"]
    .filter((v) => process.env[v] !== undefined)
    .map((v) => `export ${v}='${process.env[v]}'\n`).join("");
  writeFileSync(
    check,
    `#!/bin/sh\n${env}export BALANCE_CONTROL_DIR='${join(lab.dir, `${lb}-control`)}'\n` +
      `exec ${balanceCommand().map((w) => `'${w}'`).join(" ")} -c show ${PORT} >/dev/null 2>&1\n`,
  );
  chmodSync(check, 0o755);
  const conf = join(lab.dir, `${lb}-keepalived.conf`);
  writeFileSync(
    conf,
    filled("keepalived/keepalived.conf", {
      NODE: lb,
      INTERFACE: "eth0",
      SELF: LB[lb],
      PEER: peer,
      PRIORITY: String(priority),
      VIP: `${VIP}/24`,
      CHECK: check,
    }),
  );
  const pid = (what: string) => join(lab.dir, `${lb}-${what}.pid`);
  return lab.spawn(lb, [
    findProgram("keepalived")!,
    "-n", // foreground
    "-l", // log to the console
    "-D",
    "-P", // VRRP only
    "-f",
    conf,
    "-p",
    pid("keepalived"),
    "--vrrp_pid",
    pid("vrrp"),
    "--checkers_pid",
    pid("checkers"),
  ]);
}

const holdsVip = (lab: Lab, lb: string) => lab.run(lb, ["ip", "-4", "addr", "show", "dev", "eth0"]).includes(`${VIP}/`);

test("ha pair: keepalived moves the VIP when the master's balancer dies, and when the master dies", {
  skip: labUnavailable(["keepalived", "python3"]),
  timeoutMs: 180_000,
}, () =>
  withLab(async (lab) => {
    lab.namespaces("sw", "client", "lb1", "lb2", "backend1", "backend2");
    lab.bridge("sw", "br0");
    const hosts = { client: 10, lb1: 11, lb2: 12, backend1: 21, backend2: 22 };
    for (const [ns, host] of Object.entries(hosts)) lab.plug(ns, `${HA_NET}.${host}/24`, "sw", "br0");
    await startBackendIn(lab, "backend1");
    await startBackendIn(lab, "backend2");
    const config = `# the same on lb1 and lb2\n${PORT}\n${HA_NET}.21:${PORT}\n${HA_NET}.22:${PORT}\n`;
    const balancers = { lb1: await startBalanceIn(lab, "lb1", config), lb2: await startBalanceIn(lab, "lb2", config) };
    const keepalived = { lb1: startKeepalived(lab, "lb1", 150), lb2: startKeepalived(lab, "lb2", 100) };
    const said = (lb: "lb1" | "lb2") => keepalived[lb].stdout() + keepalived[lb].stderr();
    const logs = () => `lb1:\n${said("lb1")}\nlb2:\n${said("lb2")}`;
    await until(() => holdsVip(lab, "lb1"), Boolean, `lb1 to hold the VIP:\n${logs()}`, { ms: 20_000, everyMs: 200 });
    assert.ok(!holdsVip(lab, "lb2"), "only the master holds the VIP");

    const loop = lab.spawn("client", [PYTHON!, "-c", LOOP_PY, VIP, String(PORT), "0.05", "150"]);
    const successesVia = (lb: string, since: number) =>
      attempts(loop).filter((a) => a.t >= since && a.ok && via(a.answer) === lb).length;
    await until(() => successesVia(LB.lb1, 0), (n) => n >= 10, `the client to connect through lb1:\n${loop.stderr()}`);

    // 1. The master's balancer dies; its track_script fails, it gives up the VIP.
    process.kill(balancers.lb1.child.pid!, "SIGKILL");
    const killedBalancer = Date.now() / 1000;
    await until(() => successesVia(LB.lb2, killedBalancer), (n) => n >= 20, `lb2 to serve:\n${logs()}`, {
      ms: 30_000,
    });
    // lb1 comes back as the backup (nopreempt: it does not take the VIP back).
    balancers.lb1 = await startBalanceIn(lab, "lb1", config);
    await until(
      () => said("lb1").split("Entering FAULT STATE").at(-1)!,
      (since) => since.includes("Entering BACKUP STATE"),
      `lb1 back to BACKUP:\n${logs()}`,
      { ms: 20_000, everyMs: 200 },
    );
    // Longer than the backup's master-down interval (3 adverts and a skew),
    // so that lb1 is a settled backup hearing lb2's adverts.
    await sleep(4_000);
    assert.ok(holdsVip(lab, "lb2") && !holdsVip(lab, "lb1"), `lb2 keeps the VIP:\n${logs()}`);

    // 2. The master node dies: its link is cut, then keepalived is killed
    // (in that order, so that no goodbye advert of a dying keepalived gets out).
    const lastOfLb2 = Date.now() / 1000;
    lab.run("lb2", ["ip", "link", "set", "eth0", "down"]);
    for (const pid of lab.pids("lb2", "keepalived")) process.kill(pid, "SIGKILL");
    const killedNode = Date.now() / 1000;
    await until(() => successesVia(LB.lb1, killedNode), (n) => n >= 20, `lb1 to serve again:\n${logs()}`, {
      ms: 30_000,
    });
    const end = Date.now() / 1000;
    loop.child.kill("SIGKILL");

    const all = attempts(loop);
    const first = outage(all, killedBalancer, lastOfLb2, LB.lb2);
    const second = outage(all, killedNode, end, LB.lb1);
    console.log(
      `ha pair: outage ${first.toFixed(2)} s when the master's balancer died (track_script), ` +
        `${second.toFixed(2)} s when the master node died; ${all.length} connections, ` +
        `${all.filter((a) => !a.ok).length} failed during the moves`,
    );
    assert.ok(first <= MAX_OUTAGE_S, `outage ${first} s after the balancer died`);
    assert.ok(second <= MAX_OUTAGE_S, `outage ${second} s after the master died`);
    assert.ok(all.some((a) => a.ok && a.answer.startsWith("backend1")), "backend1 served");
    assert.ok(all.some((a) => a.ok && a.answer.startsWith("backend2")), "backend2 served");
  }));

const NODES_NET = "198.18.2";
const SERVICE = "198.18.5.1";
const NODE = { n1: `${NODES_NET}.11`, n2: `${NODES_NET}.12` } as const;
const BACKENDS = ["b1", "b2", "b3", "b4"];
const backendAddress = (b: string) => `${NODES_NET}.${20 + Number(b.slice(1))}`;
const CLIENTS = Array.from({ length: 200 }, (_, i) => `198.18.4.${i + 1}`);
const BGP = { SERVICE: `${SERVICE}/32`, NODE_AS: "64512", ROUTER_AS: "64500" };

function startBird(lab: Lab, ns: string, config: string): { socket: string; daemon: Started } {
  const file = join(lab.dir, `${ns}-bird.conf`);
  writeFileSync(file, config);
  const socket = join(lab.dir, `${ns}-bird.ctl`);
  const daemon = lab.spawn(ns, [
    findProgram("bird")!,
    "-f",
    "-c",
    file,
    "-s",
    socket,
    "-P",
    join(lab.dir, `${ns}-bird.pid`),
  ]);
  return { socket, daemon };
}

/** The next hops of the router's route to the service address. */
const nextHops = (lab: Lab) =>
  [...lab.run("router", ["ip", "-4", "route", "show", `${SERVICE}/32`]).matchAll(/via (\S+)/g)].map((m) => m[1]).sort();

/** ROUNDS rounds of one connection from every client address: the answers, per round. */
async function rounds(lab: Lab, count: number): Promise<string[][]> {
  const run = lab.spawn("client", [PYTHON!, "-c", ROUNDS_PY, SERVICE, String(PORT), String(count), CLIENTS.join(",")]);
  const code = await until(() => run.child.exitCode, (c) => c !== null, `the client rounds:\n${run.stderr()}`, {
    ms: 60_000,
    everyMs: 100,
  });
  assert.equal(code, 0, run.stderr());
  return run.stdout().trim().split("\n").map((l) => JSON.parse(l));
}

/** The backend the rendezvous model gives each client over the four backends. */
function model(): string[] {
  const group = new Group("Hash", BACKENDS.map((b) => new Channel(backendAddress(b), PORT)));
  return CLIENTS.map((src) => {
    const top = hashedChannels(group, hashClientAddress(src), false).next().value!;
    return BACKENDS[group.channels.indexOf(top)];
  });
}

test(
  "ecmp: two nodes announce the service over BGP; each client keeps its backend whichever node carries it, and when one is withdrawn",
  {
    skip: labUnavailable(["bird", "birdc", "python3"]),
    timeoutMs: 180_000,
  },
  () =>
    withLab(async (lab) => {
      lab.namespaces("sw", "router", "client", "n1", "n2", ...BACKENDS);
      lab.bridge("sw", "br0");
      lab.plug("router", `${NODES_NET}.1/24`, "sw", "br0");
      for (const [n, address] of Object.entries(NODE)) {
        lab.plug(n, `${address}/24`, "sw", "br0");
        lab.run(n, ["ip", "addr", "add", `${SERVICE}/32`, "dev", "lo"]);
        lab.run(n, ["ip", "route", "add", "default", "via", `${NODES_NET}.1`]);
      }
      for (const b of BACKENDS) lab.plug(b, `${backendAddress(b)}/24`, "sw", "br0");
      // The clients' addresses are routed to the client namespace, where
      // every one of them is local: a client binds its source address.
      lab.wire("client", "eth0", "198.18.3.2/24", "router", "up0", "198.18.3.1/24");
      lab.run("client", ["ip", "route", "add", "default", "via", "198.18.3.1"]);
      lab.run("client", ["ip", "route", "add", "local", "198.18.4.0/24", "dev", "lo"]);
      lab.run("router", ["ip", "route", "add", "198.18.4.0/24", "via", "198.18.3.2"]);
      lab.run("router", ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"]);

      for (const b of BACKENDS) await startBackendIn(lab, b);
      // The same `%` group on both nodes, listed in different orders.
      const order = { n1: ["b1", "b2", "b3", "b4"], n2: ["b3", "b1", "b4", "b2"] };
      for (const [n, backends] of Object.entries(order)) {
        await startBalanceIn(lab, n, `${PORT}\n${backends.map((b) => `${backendAddress(b)}:${PORT}`).join("\n")}\n%\n`);
      }

      const router = startBird(
        lab,
        "router",
        filled("bird/router.conf", { ...BGP, SELF: `${NODES_NET}.1`, NODE1: NODE.n1, NODE2: NODE.n2 }),
      );
      const birds = Object.fromEntries(
        Object.entries(NODE).map((
          [n, self],
        ) => [n, startBird(lab, n, filled("bird/bird.conf", { ...BGP, SELF: self, ROUTER: `${NODES_NET}.1` }))]),
      );
      const birdLogs = () => [router, ...Object.values(birds)].map((b) => b.daemon.stderr()).join("\n---\n");
      await until(
        () => nextHops(lab),
        (hops) => hops.join() === `${NODE.n1},${NODE.n2}`,
        `a multipath route over both nodes:\n${birdLogs()}`,
        {
          ms: 40_000,
          everyMs: 250,
        },
      );

      const expected = model();
      const before = await rounds(lab, 3);
      const flows = new Map<string, number>();
      const nodesOf = CLIENTS.map(() => new Set<string>());
      for (const answers of before) {
        answers.forEach((answer, i) => {
          assert.equal(answer.split(" ")[0], expected[i], `${CLIENTS[i]} reaches its backend: ${answer}`);
          nodesOf[i].add(via(answer));
          flows.set(via(answer), (flows.get(via(answer)) ?? 0) + 1);
        });
      }
      const both = nodesOf.filter((s) => s.size === 2).length;
      console.log(
        `ecmp: ${CLIENTS.length * before.length} flows split n1 ${flows.get(NODE.n1) ?? 0} / n2 ${
          flows.get(NODE.n2) ?? 0
        }; ` +
          `${both} of ${CLIENTS.length} clients went through both nodes, each to the same backend`,
      );
      for (const address of Object.values(NODE)) {
        assert.ok((flows.get(address) ?? 0) >= 150, `node ${address} carried flows`);
      }
      assert.ok(both >= 50, `clients through both nodes: ${both}`);
      assert.equal(new Set(expected).size, 4, "every backend has clients");

      /** Seconds until the router's route is over `hops` only. */
      const routeBecomes = async (hops: string[], what: string) => {
        const start = Date.now();
        await until(
          () => nextHops(lab),
          (now) => now.join() === hops.join(),
          `${what}:\n${birdLogs()}`,
          {
            ms: 20_000,
            everyMs: 50,
          },
        );
        return (Date.now() - start) / 1000;
      };
      /** A round in which every flow goes through `node` (or any node) to the client's backend. */
      const sameBackends = async (node?: string) => {
        const [answers] = await rounds(lab, 1);
        answers.forEach((answer, i) => {
          if (node) assert.equal(via(answer), node, `${CLIENTS[i]} through ${node}: ${answer}`);
          assert.equal(answer.split(" ")[0], expected[i], `${CLIENTS[i]} keeps its backend: ${answer}`);
        });
        return answers;
      };
      const birdc = (n: keyof typeof NODE, command: string) =>
        lab.run(n, [findProgram("birdc")!, "-s", birds[n].socket, ...command.split(" ")]);

      // n1 withdraws the service address (as to drain it); the router drops it.
      birdc("n1", "disable uplink");
      const withdrawn = await routeBecomes([NODE.n2], "the route over n2 only after n1 withdrew");
      await sameBackends(NODE.n2);
      await sameBackends(NODE.n2);
      // n1 announces it again.
      birdc("n1", "enable uplink");
      const announced = await routeBecomes([NODE.n1, NODE.n2], "the route over both nodes again");
      const back = await sameBackends();
      assert.ok(back.some((a) => via(a) === NODE.n1), "n1 carries flows again");
      // n1 dies (its link is cut, it says nothing): the router's hold timer removes it.
      lab.run("n1", ["ip", "link", "set", "eth0", "down"]);
      const died = await routeBecomes([NODE.n2], "the route over n2 only after n1 died");
      await sameBackends(NODE.n2);
      console.log(
        `ecmp: n1's route gone ${withdrawn.toFixed(2)} s after it withdrew, back ${announced.toFixed(2)} s after it ` +
          `announced again, gone ${
            died.toFixed(2)
          } s after it died (hold time 3 s); every client kept its backend throughout`,
      );
      assert.ok(died <= MAX_OUTAGE_S, `a dead node's route is gone within ${MAX_OUTAGE_S} s: ${died} s`);
    }),
);
