/**
 * The facts both ends of a recording upload agree on (part size and count,
 * playback chunk size) and the checks on names that become file paths, so a
 * session ID or namespace from the network can never leave its directory.
 */
import { BadParameterError } from '../utils/errors';

/** The largest upload part and the largest playback chunk: 5 MiB, as `MaxChunkBytes` in formats.md §6.5. */
export const MAX_PART_BYTES = 5 * 1024 * 1024;
export const MAX_CHUNK_BYTES = MAX_PART_BYTES;
/**
 * Part numbers run from 1 to this: 40 GiB of recording in 5 MiB parts, and a part list that
 * stays under the API's 1 MiB JSON body limit (S3 itself allows 10 000).
 */
export const MAX_PARTS = 8192;
/** The most session events one playback request returns. */
export const MAX_EVENTS_PAGE = 10_000;
/** `ei` of the `session.upload` event (formats.md §6.2). */
export const SESSION_UPLOAD_EI = 2 ** 31 - 1;
export const DEFAULT_NAMESPACE = 'default';

const SID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const NAMESPACE_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** A session ID is a UUID; returns it in lower case. */
export function checkSessionId(sid: unknown, where = 'session ID'): string {
  const s = typeof sid === 'string' ? sid.toLowerCase() : '';
  if (!SID_RE.test(s)) throw new BadParameterError(`${where} ${JSON.stringify(sid)} is not a UUID`);
  return s;
}

export function checkNamespace(ns: unknown): string {
  if (typeof ns !== 'string' || !NAMESPACE_RE.test(ns)) {
    throw new BadParameterError(`namespace ${JSON.stringify(ns)} is invalid: use lower-case letters, digits, "-" and "_" (at most 64)`);
  }
  return ns;
}

export function checkPartNumber(part: unknown): number {
  if (typeof part !== 'number' || !Number.isInteger(part) || part < 1 || part > MAX_PARTS) {
    throw new BadParameterError(`part number ${JSON.stringify(part)} is out of range: expected an integer from 1 to ${MAX_PARTS}`);
  }
  return part;
}

/** Parses a non-negative integer from a query string value; `fallback` when absent. */
export function parseCount(value: string | null | undefined, name: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === null || value === undefined || value === '') return fallback;
  if (!/^\d{1,16}$/.test(value)) throw new BadParameterError(`${name} must be a non-negative integer, got ${JSON.stringify(value)}`);
  const n = Number(value);
  if (n > max) throw new BadParameterError(`${name} must be at most ${max}, got ${n}`);
  return n;
}
