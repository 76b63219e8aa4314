/**
 * The OCI image as a container engine runs it: `./scripts/image` builds it
 * with podman from this machine's files (nothing pulled), and the container
 * proxies on the host network with a read-only root filesystem, answers
 * `balance -c show` through `podman exec`, and stops gracefully on
 * `podman stop`. Needs root (podman's storage here) and dist/balance-linux-x64.
 */
import { test } from "../support/test.ts";
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import process from "node:process";
import { onTimeout } from "../support/test.ts";
import { connect, freePort, startBackend, whoAnswers } from "../support/net.ts";
import { until } from "../support/wait.ts";

const ROOT = fileURLToPath(import.meta.resolve("../.."));
const IMAGE_SCRIPT = join(ROOT, "scripts/image");
const VERSION = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version as string;
const TAGS = [`localhost/balance:${VERSION}`, "localhost/balance:latest"];
const run = promisify(execFile);

/** podman through scripts/image, with the storage and runtime the build used; async, so our backend keeps serving. */
async function podman(...args: string[]): Promise<string> {
  const { stdout } = await run(IMAGE_SCRIPT, ["podman", ...args], { encoding: "utf8", timeout: 60_000 });
  return stdout;
}

/** Removes the container and both tags whatever state they are in; also on a timeout. */
function removeAll(container: string): void {
  spawnSync(IMAGE_SCRIPT, ["podman", "rm", "--force", "--volumes", container], { stdio: "ignore" });
  spawnSync(IMAGE_SCRIPT, ["podman", "rmi", "--force", ...TAGS], { stdio: "ignore" });
}

const skip = process.getuid?.() !== 0
  ? "needs root: podman's vfs storage and runc run as root here"
  : spawnSync("podman", ["--version"]).status !== 0
  ? "podman is not installed (scripts/test-deps installs it)"
  : spawnSync("runc", ["--version"]).status !== 0
  ? "runc is not installed (scripts/test-deps installs it)"
  : false;

test(
  "image: built by podman from nothing pulled; read-only, non-root, proxies, answers podman exec balance -c show, podman stop exits 0",
  {
    skip,
    timeoutMs: 180_000,
  },
  async () => {
    const container = `balance-image-test-${process.pid}`;
    onTimeout(() => removeAll(container));
    const backend = await startBackend("from the image");
    const port = await freePort();
    try {
      const built = await run(IMAGE_SCRIPT, [], { encoding: "utf8", timeout: 120_000 });
      assert.match(
        built.stdout,
        new RegExp(`^image: localhost/balance:${VERSION.replaceAll(".", "\\.")} and :latest, \\d+ MB$`, "m"),
      );
      const [config] = JSON.parse(await podman("image", "inspect", TAGS[0]));
      assert.equal(config.Config.User, "10001:10001", "runs as the non-root user balance");
      assert.deepEqual(config.Config.Entrypoint, ["/usr/bin/balance", "-f"], "serves in the foreground");
      assert.equal(config.Id, JSON.parse(await podman("image", "inspect", TAGS[1]))[0].Id, "latest is the same image");

      await podman(
        "run",
        "--detach",
        "--name",
        container,
        "--network",
        "host",
        "--read-only",
        "localhost/balance",
        String(port),
        `127.0.0.1:${backend.port}`,
      );
      await until(
        () => whoAnswers(port).catch((err: Error) => err.message),
        (who) => who === "from the image",
        `the container to proxy to the backend (logs: see podman logs ${container})`,
        { ms: 20_000, everyMs: 200 },
      );

      const client = await connect(port);
      client.socket.write("bytes through the container\n");
      const echoed = await client.waitFor((d) => d.toString().endsWith("bytes through the container\n"));
      assert.equal(echoed.toString(), "from the image\nbytes through the container\n");
      client.socket.destroy();

      const top = await podman("top", container, "user", "huser", "args");
      assert.match(top, /^balance\s+10001\s+\/usr\/bin\/balance -f /m, `balance runs as uid 10001:\n${top}`);

      const show = await podman("exec", container, "balance", "-c", "show", String(port));
      assert.match(show, new RegExp(`^\\s+0 RR\\s+0 ENA 127\\.0\\.0\\.1\\s+${backend.port}\\s`, "m"), show);

      await podman("stop", "--time", "20", container);
      const exit = (await podman("inspect", "--format", "{{.State.ExitCode}}", container)).trim();
      const logs = await run(IMAGE_SCRIPT, ["podman", "logs", container], { encoding: "utf8" })
        .then((r) => r.stdout + r.stderr, (err: Error) => err.message);
      assert.equal(exit, "0", `graceful stop exits 0, not ${exit}:\n${logs}`);
    } finally {
      removeAll(container);
      await backend.close();
    }
    const left = spawnSync(IMAGE_SCRIPT, ["podman", "image", "exists", TAGS[0]]);
    assert.notEqual(left.status, 0, "the image is removed");
  },
);
