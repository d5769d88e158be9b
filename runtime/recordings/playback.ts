/**
 * Playing a recording back, for `tsh play` and `tctl`: fetch its events and
 * its bytes from the auth service (formats.md §7.5: the events, then the
 * stream in chunks of at most 5 MiB until an empty one), and replay the
 * `print` events in order, with the recorded delays when in real time.
 */
import type { AuthClient } from '../auth/client';
import { EventFields } from '../events/filelog';
import { BadParameterError } from '../utils/errors';
import { checkNamespace, checkSessionId, DEFAULT_NAMESPACE, MAX_CHUNK_BYTES, MAX_EVENTS_PAGE } from './limits';

export interface Recording {
  events: EventFields[];
  bytes: Buffer;
}

/** Reads a whole recording from the auth service. */
export async function fetchRecording(client: Pick<AuthClient, 'get' | 'callRaw'>, sid: string, opts: { namespace?: string } = {}): Promise<Recording> {
  const base = `/v1/namespaces/${encodeURIComponent(checkNamespace(opts.namespace ?? DEFAULT_NAMESPACE))}/sessions/${checkSessionId(sid)}`;
  const events: EventFields[] = [];
  for (let after = 0; ; ) {
    const page = await client.get<EventFields[]>(`${base}/events?after=${after}&limit=${MAX_EVENTS_PAGE}`);
    events.push(...page);
    if (page.length < MAX_EVENTS_PAGE) break;
    const last = Number(page[page.length - 1].ei);
    if (!Number.isSafeInteger(last) || last < after) throw new BadParameterError(`the events of session ${sid} are out of order at index ${after}`);
    after = last + 1;
  }
  const chunks: Buffer[] = [];
  for (let offset = 0; ; ) {
    const chunk = await client.callRaw('GET', `${base}/stream?offset=${offset}&bytes=${MAX_CHUNK_BYTES}`);
    if (!chunk.length) break;
    chunks.push(chunk);
    offset += chunk.length;
  }
  return { events, bytes: Buffer.concat(chunks) };
}

export interface ReplayOptions {
  /** Playback speed in real time: 2 is twice as fast. @default 1 */
  speed?: number;
  /** Wait the recorded delays between prints; otherwise write everything at once. @default false */
  realtime?: boolean;
  /** Stops the replay (it then resolves early). */
  signal?: AbortSignal;
  /** Called for each non-print event in order (a resize, for instance). */
  onEvent?: (e: EventFields) => void;
  /** How to wait; the default is a timer. */
  sleep?: (ms: number) => Promise<void>;
}

const timer = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Writes each print event's bytes in event order; returns the number of bytes written. */
export async function replay(events: EventFields[], bytes: Buffer, write: (b: Buffer) => void, opts: ReplayOptions = {}): Promise<number> {
  const speed = opts.speed ?? 1;
  if (!(speed > 0) || !Number.isFinite(speed)) throw new BadParameterError(`playback speed must be a positive number, got ${speed}`);
  const sleep = opts.sleep ?? timer;
  const ordered = [...events].sort((a, b) => Number(a.ei) - Number(b.ei));
  let elapsed = 0;
  let written = 0;
  for (const e of ordered) {
    if (opts.signal?.aborted) break;
    if (e.event !== 'print') {
      opts.onEvent?.(e);
      continue;
    }
    const offset = Number(e.offset);
    const size = Number(e.bytes);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(size) || offset < 0 || size < 0) continue;
    if (opts.realtime) {
      const at = Number(e.ms) / speed;
      if (at > elapsed) {
        await sleep(at - elapsed);
        elapsed = at;
        if (opts.signal?.aborted) break;
      }
    }
    // A crash of the recording node can leave a print event past the end of the bytes it wrote.
    const chunk = bytes.subarray(offset, Math.min(offset + size, bytes.length));
    if (chunk.length) {
      write(chunk);
      written += chunk.length;
    }
  }
  return written;
}
