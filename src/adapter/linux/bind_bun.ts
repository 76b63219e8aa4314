/**
 * The native engine's libc calls under Bun (source and compiled binary),
 * through `bun:ffi`.
 *
 * @module
 */
/// <reference types="bun-types" />
import { dlopen, FFIType, toArrayBuffer } from "bun:ffi";
import { type Engine, loadEngine } from "./engine.ts";
import type { Sys } from "./sys.ts";

const { i32, u32, u64, i64_fast, ptr } = FFIType;
const SYMBOLS = {
  socket: { args: [i32, i32, i32], returns: i32 },
  bind: { args: [i32, ptr, u32], returns: i32 },
  listen: { args: [i32, i32], returns: i32 },
  accept4: { args: [i32, ptr, ptr, i32], returns: i32 },
  connect: { args: [i32, ptr, u32], returns: i32 },
  getsockname: { args: [i32, ptr, ptr], returns: i32 },
  getsockopt: { args: [i32, i32, i32, ptr, ptr], returns: i32 },
  setsockopt: { args: [i32, i32, i32, ptr, u32], returns: i32 },
  read: { args: [i32, ptr, u64], returns: i64_fast },
  write: { args: [i32, ptr, u64], returns: i64_fast },
  shutdown: { args: [i32, i32], returns: i32 },
  close: { args: [i32], returns: i32 },
  epoll_create1: { args: [i32], returns: i32 },
  epoll_ctl: { args: [i32, i32, i32, ptr], returns: i32 },
  epoll_wait: { args: [i32, ptr, i32, i32], returns: i32 },
  eventfd: { args: [u32, i32], returns: i32 },
  splice: { args: [i32, ptr, i32, ptr, u64, u32], returns: i64_fast },
  pipe2: { args: [ptr, i32], returns: i32 },
  fcntl: { args: [i32, i32, i32], returns: i32 },
  __errno_location: { args: [], returns: ptr },
} as const;

function bind(name: string): Sys {
  const s = dlopen(name, SYMBOLS).symbols;
  // This thread's errno stays where it is for the thread's life: one view, read per failure.
  const errno = new Int32Array(toArrayBuffer(s.__errno_location()!, 0, 4));
  return {
    socket: s.socket,
    bind: s.bind,
    listen: s.listen,
    accept4: s.accept4,
    connect: s.connect,
    getsockname: s.getsockname,
    getsockopt: s.getsockopt,
    setsockopt: s.setsockopt,
    read: s.read as (fd: number, buffer: Uint8Array, length: number) => number,
    write: s.write as (fd: number, buffer: Uint8Array, length: number) => number,
    shutdown: s.shutdown,
    close: s.close,
    epoll_create1: s.epoll_create1,
    epoll_ctl: s.epoll_ctl,
    epoll_wait: s.epoll_wait,
    eventfd: s.eventfd,
    splice: (fdIn, fdOut, length, flags) => s.splice(fdIn, null, fdOut, null, length, flags) as number,
    pipe2: s.pipe2,
    fcntl: s.fcntl,
    errno: () => errno[0],
  };
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
