/**
 * The Kubernetes manifests of packaging/kubernetes/: checked against the
 * Kubernetes API's schema as the Kubernetes Python client's generated models
 * carry it (kubernetes_schema.py; no schema validator such as kubeconform is
 * packaged in Debian, and kubectl validates only against a cluster), then
 * for what ties them together: the image, the mounted ConfigMap key, the
 * configuration file balance reads, the ports, probes and names.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../support/net.ts";
import { runBalance } from "../support/balance.ts";

const ROOT = fileURLToPath(import.meta.resolve("../.."));
const MANIFESTS = join(ROOT, "packaging/kubernetes");
const VALIDATOR = join(ROOT, "tests/packaging/kubernetes_schema.py");
const VERSION = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version as string;
// Debian's interpreter, where python3-kubernetes is installed (not a python3 earlier on the PATH).
const PYTHON = "/usr/bin/python3";

// deno-lint-ignore no-explicit-any
type Doc = any;

const hasClient = spawnSync(PYTHON, ["-c", "import kubernetes, yaml"]).status === 0;

/** The validated documents of every manifest, or the validator's errors as the failure. */
function validated(files: string[]): { status: number | null; docs: Doc[]; errors: string } {
  const out = spawnSync(PYTHON, [VALIDATOR, ...files], { encoding: "utf8" });
  return { status: out.status, docs: out.status === 0 ? JSON.parse(out.stdout) : [], errors: out.stderr };
}

const find = (docs: Doc[], kind: string, name: string) => {
  const doc = docs.find((d) => d.kind === kind && d.metadata.name === name);
  assert.ok(doc, `${kind} ${name} is in packaging/kubernetes/`);
  return doc;
};

const skip = hasClient ? false : "python3-kubernetes is not installed (scripts/test-deps installs it)";

test(
  "kubernetes: every manifest passes the API schema; a misspelt field, a wrong type or a missing required field fails it",
  {
    skip,
  },
  () => {
    const files = readdirSync(MANIFESTS).filter((f) => f.endsWith(".yaml")).map((f) => join(MANIFESTS, f));
    const all = validated(files);
    assert.equal(all.status, 0, all.errors);
    assert.deepEqual(
      all.docs.map((d: Doc) => `${d.apiVersion} ${d.kind} ${d.metadata.name}`).sort(),
      [
        "apps/v1 Deployment balance",
        "apps/v1 StatefulSet web",
        "v1 ConfigMap balance-config",
        "v1 Service balance",
        "v1 Service web",
      ],
    );

    // The validator can fail: three broken copies of the Deployment.
    const deployment = readFileSync(join(MANIFESTS, "deployment.yaml"), "utf8");
    const dir = mkdtempSync(join(tmpdir(), "balance-k8s-"));
    try {
      const broken: [string, string, RegExp][] = [
        ["containerPort: 8080", "containerPrt: 8080", /unknown field 'containerPrt' in V1ContainerPort/],
        ["replicas: 2", 'replicas: "2"', /spec\.replicas: an integer is expected/],
        [
          "  selector:\n    matchLabels:\n      app.kubernetes.io/name: balance\n",
          "",
          /`selector`, must not be `None`/,
        ],
      ];
      for (const [from, to, error] of broken) {
        assert.ok(deployment.includes(from), from);
        const file = join(dir, "deployment.yaml");
        writeFileSync(file, deployment.replace(from, to));
        const bad = validated([file]);
        assert.equal(bad.status, 1, `${to || "no selector"} is refused`);
        assert.match(bad.errors, error);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test(
  "kubernetes: the Deployment runs localhost/balance -F on the mounted ConfigMap key; ports, probes, Services and backend names agree",
  {
    skip,
    timeoutMs: 30_000,
  },
  async () => {
    const files = readdirSync(MANIFESTS).filter((f) => f.endsWith(".yaml")).map((f) => join(MANIFESTS, f));
    const { docs, errors, status } = validated(files);
    assert.equal(status, 0, errors);
    const deployment = find(docs, "Deployment", "balance");
    const pod = deployment.spec.template.spec;
    const balance = pod.containers.find((c: Doc) => c.name === "balance");
    assert.equal(balance.image, `localhost/balance:${VERSION}`, "the image ./scripts/image tags");
    assert.equal(pod.securityContext.runAsUser, 10001, "the image's user");
    assert.equal(balance.securityContext.readOnlyRootFilesystem, true);

    // -F FILE: FILE's folder is a mount of the ConfigMap, FILE's name one of its keys.
    const file = balance.args[balance.args.indexOf("-F") + 1];
    assert.ok(balance.args.includes("-F") && file, `args ${JSON.stringify(balance.args)} give -F FILE`);
    const mount = balance.volumeMounts.find((m: Doc) => m.mountPath === dirname(file));
    assert.ok(mount, `${dirname(file)} is mounted`);
    const volume = pod.volumes.find((v: Doc) => v.name === mount.name);
    const configMap = find(docs, "ConfigMap", volume.configMap?.name);
    const config = configMap.data[basename(file)];
    assert.equal(typeof config, "string", `the ConfigMap has the key ${basename(file)}`);
    assert.ok(
      balance.volumeMounts.some((m: Doc) => m.mountPath === "/run/balance"),
      "the control socket's folder is writable",
    );

    // The file as balance reads it: it parses (the first failure is resolving a
    // backend's name, asked of a local port where no DNS server answers).
    const words = config.split(/\s+/).filter((w: string) => w && !w.startsWith("#"));
    const channels = words.filter((w: string) => w.includes(":"));
    const listen = words[words.indexOf(channels[0]) - 1]; // the port comes right before the channels
    const dir = mkdtempSync(join(tmpdir(), "balance-k8s-"));
    try {
      writeFileSync(join(dir, "balance.conf"), config);
      const deadDns = await freePort();
      const checked = await runBalance([
        "--check-config",
        "--resolver",
        `127.0.0.1:${deadDns}`,
        "-F",
        join(dir, "balance.conf"),
      ]);
      assert.equal(checked.code, 68, checked.stderr);
      assert.equal(checked.stderr.trim(), `balance: cannot resolve channel host '${channels[0].split(":")[0]}'`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }

    // The listen port is the container's port, the Service's target, the probes'.
    const port = balance.ports.find((p: Doc) => p.containerPort === Number(listen));
    assert.ok(port, `the container declares the listen port ${listen}`);
    assert.equal(balance.readinessProbe.tcpSocket.port, port.name);
    assert.deepEqual(balance.livenessProbe.exec.command, ["balance", "-c", "show", listen]);
    const service = find(docs, "Service", "balance");
    assert.deepEqual(service.spec.selector, deployment.spec.template.metadata.labels);
    assert.equal(service.spec.ports[0].targetPort, port.name);

    // The channels are the StatefulSet's pods by name, through its headless Service.
    const web = find(docs, "StatefulSet", "web");
    const headless = find(docs, "Service", web.spec.serviceName);
    assert.equal(headless.spec.clusterIP, "None");
    assert.deepEqual(headless.spec.selector, web.spec.template.metadata.labels);
    const backendPort = headless.spec.ports[0].port;
    assert.deepEqual(
      channels,
      Array.from(
        { length: web.spec.replicas },
        (_, i) => `${web.metadata.name}-${i}.${headless.metadata.name}:${backendPort}`,
      ),
    );
  },
);
