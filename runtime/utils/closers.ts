/**
 * What a start-up has opened so far (storage, timers, listeners, clients),
 * to close in reverse order: all of it when the start-up fails half way, so
 * that a failed start leaves no handle keeping the process alive, and the
 * same list when the started service stops.
 */
export class Closers {
  private readonly steps: (() => unknown)[] = [];

  /** Registers how to undo what was just opened. */
  add(close: () => unknown): void {
    this.steps.push(close);
  }

  /** Closes everything, last opened first; a step that fails does not stop the others, and the first failure is thrown at the end. */
  async close(): Promise<void> {
    let first: unknown;
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      try {
        await step();
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== undefined) throw first;
  }

  /** Runs a start-up step by step; if it throws, closes what it opened and rethrows its error (not a closing one). */
  async guard<T>(start: () => Promise<T>): Promise<T> {
    try {
      return await start();
    } catch (err) {
      await this.close().catch(() => undefined);
      throw err;
    }
  }
}
