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
  item: T;
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
  // The time each scheduled item is due; heap rows that disagree are stale.
  private readonly dueAt = new Map<T, number>();
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
    this.dueAt.set(item, at);
    this.push({ at, seq: this.scheduled++, item });
    if (at < this.timerAt) this.arm(at);
  }

  /** Forgets `item`: it does not run unless scheduled again. */
  cancel(item: T): void {
    this.dueAt.delete(item);
  }

  /** Forgets every item and stops the timer. */
  clear(): void {
    this.dueAt.clear();
    this.heap.length = 0;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
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
      const { at, item } = this.pop();
      if (this.dueAt.get(item) !== at) continue;
      this.dueAt.delete(item);
      this.run(item);
    }
    // Stale rows need no timer of their own: drop them before arming.
    while (this.heap.length > 0 && this.dueAt.get(this.heap[0].item) !== this.heap[0].at) this.pop();
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
