#!/usr/bin/env node
// balance's npm launcher, the fallback: the install script replaces this file
// with the native executable, so it runs only where that could not happen
// (npm --ignore-scripts, Windows, where npm's shim runs bin files under node).
// Signals are passed on so that stopping the launcher stops the balancer.
"use strict";
const { spawn } = require("node:child_process");
const { nativeBinary } = require("../lib/platform.js");

let binary;
try {
  binary = nativeBinary();
} catch (err) {
  console.error(`balance: ${err.message}`);
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
