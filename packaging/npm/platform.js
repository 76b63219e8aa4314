// Finds the native executable in the platform package npm installed beside
// balance-lb (one optional dependency per platform, as esbuild does). Used by
// the install script and by the launcher.
"use strict";
const { arch, platform } = process;

function isMusl() {
  if (platform !== "linux") return false;
  const report = process.report && process.report.getReport();
  return !(report && report.header && report.header.glibcVersionRuntime);
}

/** The path of this platform's balance executable; throws a one-line reason when its package is missing. */
function nativeBinary() {
  const os = platform === "win32" ? "windows" : platform;
  const name = `@balance-lb/${os}-${arch}${isMusl() ? "-musl" : ""}`;
  try {
    return require.resolve(`${name}/bin/balance${platform === "win32" ? ".exe" : ""}`);
  } catch {
    throw new Error(`no binary for ${platform}-${arch}: the package ${name} is not installed`);
  }
}

module.exports = { nativeBinary };
