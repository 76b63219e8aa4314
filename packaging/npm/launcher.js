#!/usr/bin/env node
// balance's npm launcher: runs the binary from the platform package npm
// installed beside it (one optional dependency per platform, as esbuild does).
// Signals are passed on so that stopping the launcher stops the balancer.
"use strict";
const { spawn } = require("node:child_process");
const { arch, platform } = process;

function isMusl() {
  if (platform !== "linux") return false;
  const report = process.report && process.report.getReport();
  return !(report && report.header && report.header.glibcVersionRuntime);
}

const os = platform === "win32" ? "windows" : platform;
const name = `@balance-lb/${os}-${arch}${isMusl() ? "-musl" : ""}`;
let binary;
try {
  binary = require.resolve(`${name}/bin/balance${platform === "win32" ? ".exe" : ""}`);
} catch {
  console.error(`balance: no binary for ${platform}-${arch}: the package ${name} is not installed`);
  process.exit(69);
}
const child = spawn(binary, process.argv.slice(2), { stdio: "inherit" });
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  try {
    process.on(signal, () => child.kill(signal));
  } catch { /* not on this platform */ }
}
child.on("error", (err) => {
  console.error(`balance: cannot run ${binary}: ${err.message}`);
  process.exit(71);
});
child.on("exit", (code, signal) => {
  if (signal) process.kill(process.pid, signal);
  else process.exit(code ?? 70);
});
