/**
 * The native engine's libc calls under Deno, through `Deno.dlopen` (needs
 * `--allow-ffi`, part of `--allow-all`; without it the engine is not
 * available and balance runs on the runtime's sockets).
 *
 * @module
 */
import { type Engine, loadEngine } from "./engine.ts";
import type { Sys } from "./sys.ts";

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
  // Deno polls its own sockets only when the JavaScript thread is free: the wait runs on another thread.
  epoll_wait_elsewhere: {
    name: "epoll_wait",
    parameters: ["i32", "buffer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  splice: { parameters: ["i32", "pointer", "i32", "pointer", "usize", "u32"], result: "isize" },
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

function bind(name: string): Sys {
  const s = Deno.dlopen(name, SYMBOLS).symbols;
  // This thread's errno stays where it is for the thread's life: one view, read per failure.
  const errno = new Int32Array(Deno.UnsafePointerView.getArrayBuffer(s.__errno_location()!, 4));
  return {
    socket: s.socket,
    bind: s.bind,
    listen: s.listen,
    accept4: s.accept4,
    connect: s.connect,
    getsockname: s.getsockname,
    getsockopt: s.getsockopt,
    setsockopt: s.setsockopt,
    read: (fd, buffer, length) => Number(s.read(fd, buffer, BigInt(length))),
    write: (fd, buffer, length) => Number(s.write(fd, buffer, BigInt(length))),
    shutdown: s.shutdown,
    close: s.close,
    epoll_create1: s.epoll_create1,
    epoll_ctl: s.epoll_ctl,
    epoll_wait: s.epoll_wait,
    eventfd: s.eventfd,
    splice: (fdIn, fdOut, length, flags) => Number(s.splice(fdIn, null, fdOut, null, BigInt(length), flags)),
    pipe2: s.pipe2,
    fcntl: s.fcntl,
    epollWaitAsync: s.epoll_wait_elsewhere,
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
