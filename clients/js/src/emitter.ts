type Listener = (...args: unknown[]) => void;

/**
 * A typed event emitter whose events are queued and dispatched after the
 * code that raised them returns (in a microtask), in the order raised. A
 * listener that calls back into the client therefore never runs in the
 * middle of the client's own bookkeeping. A listener that throws is
 * reported (reportError in browsers) and the others still run. @internal
 */
export class Emitter<Events extends { [K in keyof Events]: unknown[] }> {
  // Listeners are stored untyped; on and emit keep the types per event.
  private readonly listeners = new Map<keyof Events, Set<Listener>>();
  private queue: Array<(() => void) | undefined> = [];
  private head = 0;
  private scheduled = false;

  on<K extends keyof Events>(event: K, listener: (...args: Events[K]) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener as Listener);
    return () => this.off(event, listener);
  }

  off<K extends keyof Events>(event: K, listener: (...args: Events[K]) => void): void {
    this.listeners.get(event)?.delete(listener as Listener);
  }

  /** emit queues event for dispatch. */
  emit<K extends keyof Events>(event: K, ...args: Events[K]): void {
    this.queue.push(() => {
      const set = this.listeners.get(event);
      if (!set) return;
      for (const l of [...set]) {
        try {
          l(...(args as unknown[]));
        } catch (err) {
          report(err);
        }
      }
    });
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** clear drops every event not dispatched yet. */
  clear(): void {
    this.queue = [];
    this.head = 0;
  }

  private flush(): void {
    this.scheduled = false;
    // Events raised by listeners are appended and run in this loop.
    while (this.head < this.queue.length) {
      const run = this.queue[this.head];
      this.queue[this.head++] = undefined;
      run?.();
    }
    this.clear();
  }
}

function report(err: unknown): void {
  const g = globalThis as { reportError?: (e: unknown) => void };
  if (typeof g.reportError === 'function') {
    g.reportError(err);
    return;
  }
  setTimeout(() => {
    throw err;
  });
}
