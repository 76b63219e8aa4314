/**
 * The figures of the standard `process_*` metrics, read where the platform
 * tells them: Linux's /proc for descriptors, node:process (which both
 * runtimes implement) for memory, CPU time and the start.
 *
 * @module
 */
import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";
import type { ProcessFigures } from "../core/observe/metrics.ts";

// Taken once at load, which is the start as near as a scrape can tell.
const START_SECONDS = Date.now() / 1000 - process.uptime();

/**
 * This process's figures now; descriptor counts only where /proc has them.
 *
 * @example
 * ```ts
 * processFigures().residentBytes; // 41943040
 * ```
 */
export function processFigures(): ProcessFigures {
  const cpu = process.cpuUsage();
  return {
    residentBytes: process.memoryUsage.rss(),
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    startTimeSeconds: START_SECONDS,
    openFds: openFiles(),
    maxFds: openFilesLimit(),
  };
}

/**
 * The open-files soft limit (both runtimes raise it to the hard limit at
 * start), where the platform tells it; `undefined` elsewhere.
 *
 * @example
 * ```ts
 * openFilesLimit(); // 1048576 on Linux
 * ```
 */
export function openFilesLimit(): number | undefined {
  try {
    const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"));
    const soft = Number(line!.trim().split(/\s+/)[3]);
    return Number.isFinite(soft) ? soft : undefined;
  } catch {
    return undefined;
  }
}

// The directory listing counts its own descriptor, as every exporter's does.
function openFiles(): number | undefined {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return undefined;
  }
}
