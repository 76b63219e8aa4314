/**
 * The native engine's libc calls under Deno, through `Deno.dlopen` (needs
 * `--allow-ffi`, part of `--allow-all`; without it the engine is not
 * available and balance runs on the runtime's sockets).
 *
 * @module
 */
import { type Engine, loadEngine } from "./engine.ts";
import { LIBC_CALLS, type Sys, sysOf } from "./sys.ts";

type Symbols = {
  [K in keyof typeof LIBC_CALLS]: {
    parameters: (typeof LIBC_CALLS)[K][0];
    result: (typeof LIBC_CALLS)[K][1];
  };
};

const SYMBOLS = {
  ...Object.fromEntries(
    Object.entries(LIBC_CALLS).map(([name, [parameters, result]]) => [name, { parameters, result }]),
  ) as Symbols,
  // Deno polls its own sockets only when the JavaScript thread is free: the wait runs on another thread.
  epoll_wait_elsewhere: {
    name: "epoll_wait",
    parameters: LIBC_CALLS.epoll_wait[0],
    result: LIBC_CALLS.epoll_wait[1],
    nonblocking: true,
  },
} as const;

function bind(name: string): Sys {
  const s = Deno.dlopen(name, SYMBOLS).symbols;
  // This thread's errno stays where it is for the thread's life: one view, read per failure.
  const errno = new Int32Array(Deno.UnsafePointerView.getArrayBuffer(s.__errno_location()!, 4));
  return sysOf(s, {
    read: (fd, buffer, length) => Number(s.read(fd, buffer, BigInt(length))),
    write: (fd, buffer, length) => Number(s.write(fd, buffer, BigInt(length))),
    splice: (fdIn, fdOut, length, flags) => Number(s.splice(fdIn, null, fdOut, null, BigInt(length), flags)),
    epollWaitAsync: s.epoll_wait_elsewhere,
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
