// balance-lb's postinstall: puts this platform's native executable in place of
// the bin/balance launcher, so that the installed command is balance itself:
// no Node process kept beside it (about 44 MB), exit codes and signals direct.
// Whatever prevents that leaves the launcher, which still works: the install
// never fails here.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { nativeBinary } = require("./lib/platform.js");

// npm's Windows shim runs a bin file under node whatever it holds.
if (process.platform !== "win32") {
  const bin = path.join(__dirname, "bin", "balance");
  const temp = path.join(__dirname, "bin", ".balance-native");
  try {
    const binary = nativeBinary();
    fs.rmSync(temp, { force: true });
    try {
      fs.linkSync(binary, temp); // no second copy of ~100 MB
    } catch {
      fs.copyFileSync(binary, temp); // the platform package is on another file system
      fs.chmodSync(temp, 0o755);
    }
    // rename replaces the launcher at once: bin/balance is never missing or half written.
    fs.renameSync(temp, bin);
  } catch (err) {
    console.warn(`balance: keeping the Node launcher: ${err.message}`);
  } finally {
    // rename leaves temp when bin/balance already was this link (a second npm rebuild).
    fs.rmSync(temp, { force: true });
  }
}
