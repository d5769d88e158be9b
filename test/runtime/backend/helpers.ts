/**
 * Test helpers for backend tests: wait on a condition with a deadline, read a watcher until an
 * event matches, a clock the test moves by hand, and throwaway directories.
 */

import * as fs from 'node:fs';
import { tempDir as sharedTempDir, waitFor as waitUntil } from '../../helpers/proc';
import type { Clock } from '../../../runtime/backend/clock';
import { Event, OpType, Watcher } from '../../../runtime/backend/types';

export const DEFAULT_WAIT_MS = 10_000;

/** Polls `check` until it returns true; fails with `label` after `timeoutMs`. */
export async function waitFor(check: () => boolean | Promise<boolean>, label: string, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
  await waitUntil(label, check, timeoutMs);
}

/** Resolves with the promise's value, or fails with `label` after `timeoutMs`. */
export async function within<T>(promise: Promise<T>, label: string, timeoutMs = DEFAULT_WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${label}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function describeEvent(e: Event): string {
  return `${OpType[e.type]} ${e.item.key}`;
}

/**
 * Reads events until one satisfies `predicate`; returns every event read, the match last.
 * Fails if the watcher closes or nothing matches within `timeoutMs`.
 */
export async function watchUntil(
  watcher: Watcher,
  predicate: (e: Event) => boolean,
  label: string,
  timeoutMs = DEFAULT_WAIT_MS,
): Promise<Event[]> {
  const seen: Event[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    const event = await within(watcher.next(), `${label} (seen: ${seen.map(describeEvent).join(', ') || 'nothing'})`, Math.max(left, 1));
    if (!event) throw new Error(`watcher closed while waiting for ${label} (seen: ${seen.map(describeEvent).join(', ')})`);
    seen.push(event);
    if (predicate(event)) return seen;
  }
}

/** A clock that only moves when the test says so. */
export class FakeClock implements Clock {
  private ms: number;
  constructor(start = Date.UTC(2020, 0, 1)) {
    this.ms = start;
  }
  now(): Date {
    return new Date(this.ms);
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}

export function tempDir(label: string): string {
  return sharedTempDir(`backend-${label}-`);
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}
