/**
 * The native engine's libc calls under Bun (source and compiled binary),
 * through `bun:ffi`.
 *
 * @module
 */
/// <reference types="bun-types" />
import { dlopen, FFIType, type Pointer, toArrayBuffer } from "bun:ffi";
import { type Engine, loadEngine } from "./engine.ts";
import { type CType, LIBC_CALLS, type Sys, sysOf } from "./sys.ts";

const BUN_TYPES: Record<CType, FFIType> = {
  i32: FFIType.i32,
  u32: FFIType.u32,
  usize: FFIType.u64,
  isize: FFIType.i64_fast,
  buffer: FFIType.ptr,
  pointer: FFIType.ptr,
};

const SYMBOLS = Object.fromEntries(
  Object.entries(LIBC_CALLS).map(([name, [args, result]]) => [
    name,
    { args: args.map((type) => BUN_TYPES[type]), returns: BUN_TYPES[result] },
  ]),
);

/** The loaded functions as Bun calls them: numbers and typed arrays in, a number out (i64_fast fits one). */
type Loaded = Parameters<typeof sysOf>[0] & {
  read(fd: number, buffer: Uint8Array, length: number): number;
  write(fd: number, buffer: Uint8Array, length: number): number;
  splice(fdIn: number, offIn: null, fdOut: number, offOut: null, length: number, flags: number): number;
  __errno_location(): Pointer;
};

function bind(name: string): Sys {
  const s = dlopen(name, SYMBOLS).symbols as unknown as Loaded;
  // This thread's errno stays where it is for the thread's life: one view, read per failure.
  const errno = new Int32Array(toArrayBuffer(s.__errno_location(), 0, 4));
  return sysOf(s, {
    read: s.read,
    write: s.write,
    splice: (fdIn, fdOut, length, flags) => s.splice(fdIn, null, fdOut, null, length, flags),
    errno: () => errno[0],
  });
}

/**
 * The native engine for this thread, or why it cannot run here.
 *
 * @example
 * ```ts
 * const engine = loadNativeEngine();
 * if (typeof engine !== "string") await engine.serve(balancer, options);
 * ```
 */
export function loadNativeEngine(): Engine | string {
  return loadEngine(bind);
}
