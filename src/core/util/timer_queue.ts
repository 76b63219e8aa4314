/**
 * Many timers on one: the health checks of 1,000 channels would otherwise
 * arm and clear thousands of runtime timers a second, each costing more CPU
 * than the check's own bookkeeping.
 *
 * @module
 */

interface Due<T> {
  at: number;
  // Items due at the same time run in the order they were scheduled.
  seq: number;
  /** Undefined once cancelled or scheduled again: a stale row. */
  item: T | undefined;
}

function before<T>(a: Due<T>, b: Due<T>): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/**
 * Runs each scheduled item once its time has come, from a binary heap
 * behind a single runtime timer. Scheduling an item again replaces its
 * earlier time; items due within `slackMs` of each other run together.
 *
 * @example
 * ```ts
 * const queue = new TimerQueue<string>((name) => console.log(name), 5);
 * queue.schedule("check web1", Date.now() + 2000);
 * queue.cancel("check web1");
 * ```
 */
export class TimerQueue<T> {
  private readonly heap: Due<T>[] = [];
  // Each scheduled item's live row.
  private readonly pending = new Map<T, Due<T>>();
  private timer?: ReturnType<typeof setTimeout>;
  private timerAt = Infinity;
  private scheduled = 0;

  constructor(
    private readonly run: (item: T) => void,
    private readonly slackMs = 5,
    private readonly now: () => number = Date.now,
  ) {}

  /** Runs `item` at time `at` (ms) instead of whenever it was due. */
  schedule(item: T, at: number): void {
    this.drop(item);
    const due = { at, seq: this.scheduled++, item };
    this.pending.set(item, due);
    this.push(due);
    if (at < this.timerAt) this.arm(at);
  }

  /** Forgets `item`: it does not run unless scheduled again. */
  cancel(item: T): void {
    this.drop(item);
  }

  /** Forgets every item and stops the timer. */
  clear(): void {
    this.pending.clear();
    this.heap.length = 0;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  // A stale row stays in the heap until its time but lets go of its item at
  // once: a connection's deadline must not keep the connection in memory.
  private drop(item: T): void {
    const due = this.pending.get(item);
    if (due === undefined) return;
    due.item = undefined;
    this.pending.delete(item);
  }

  private arm(at: number): void {
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.fire(), Math.max(0, at - this.now()));
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const until = this.now() + this.slackMs;
    while (this.heap.length > 0 && this.heap[0].at <= until) {
      const { item } = this.pop();
      if (item === undefined) continue;
      this.pending.delete(item);
      this.run(item);
    }
    // Stale rows need no timer of their own: drop them before arming.
    while (this.heap.length > 0 && this.heap[0].item === undefined) this.pop();
    // An item run above may have armed the timer for a later time than the next one due.
    if (this.heap.length > 0 && this.heap[0].at < this.timerAt) this.arm(this.heap[0].at);
  }

  private push(due: Due<T>): void {
    const heap = this.heap;
    let i = heap.push(due) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(due, heap[parent])) break;
      heap[i] = heap[parent];
      i = parent;
    }
    heap[i] = due;
  }

  private pop(): Due<T> {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop()!;
    if (heap.length === 0) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && before(heap[right], heap[left]) ? right : left;
      if (!before(heap[child], last)) break;
      heap[i] = heap[child];
      i = child;
    }
    heap[i] = last;
    return top;
  }
}
