/**
 * Argument checks shared by every backend implementation, so that all of them reject the same
 * inputs with the same BadParameterError.
 *
 * Keys may not contain UTF-16 surrogates (characters outside the Basic Multilingual Plane) or
 * U+FFFF. Within the rest of the BMP, JS string comparison (code units), code-point order and
 * UTF-8 byte order agree, which is what lets SQLite's BINARY collation, DynamoDB's sort keys and
 * the in-memory sorted array return ranges in the same order. U+FFFF is reserved for
 * `rangeEnd(prefix)`, the exclusive upper bound of a prefix scan.
 */

import { BadParameterError } from '../utils/errors';
import type { Item } from './types';

const FORBIDDEN_IN_KEY = /[\ud800-\udfff\uffff]/;
const FORBIDDEN_IN_BOUND = /[\ud800-\udfff]/;

export function checkKey(key: unknown, op: string): string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new BadParameterError(`backend ${op}: key must be a non-empty string`);
  }
  if (FORBIDDEN_IN_KEY.test(key)) {
    throw new BadParameterError(
      `backend ${op}: key ${JSON.stringify(key)} contains a character outside the Basic Multilingual Plane or U+FFFF`,
    );
  }
  return key;
}

/** Range bounds may contain U+FFFF (that is what `rangeEnd` appends) but no surrogates. */
export function checkBound(bound: unknown, name: 'start' | 'end', op: string): string {
  if (typeof bound !== 'string') {
    throw new BadParameterError(`backend ${op}: range ${name} must be a string`);
  }
  if (FORBIDDEN_IN_BOUND.test(bound)) {
    throw new BadParameterError(
      `backend ${op}: range ${name} ${JSON.stringify(bound)} contains a character outside the Basic Multilingual Plane`,
    );
  }
  return bound;
}

export function checkLimit(limit: unknown, op: string): number {
  if (limit === undefined || limit === 0) return 0;
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 0) {
    throw new BadParameterError(`backend ${op}: limit must be a non-negative integer, got ${String(limit)}`);
  }
  return limit;
}

export function checkExpires(expires: unknown, op: string): Date | undefined {
  if (expires === undefined) return undefined;
  if (!(expires instanceof Date) || Number.isNaN(expires.getTime())) {
    throw new BadParameterError(`backend ${op}: expires must be a valid Date`);
  }
  return new Date(expires.getTime());
}

/** Checks an item and returns a private copy of it, so callers can reuse their buffers. */
export function checkItem(item: Item, op: string): Item {
  if (item === null || typeof item !== 'object') {
    throw new BadParameterError(`backend ${op}: item must be an object`);
  }
  const key = checkKey(item.key, op);
  if (!(item.value instanceof Uint8Array)) {
    throw new BadParameterError(`backend ${op}: value of ${JSON.stringify(key)} must be a Buffer`);
  }
  const expires = checkExpires(item.expires, op);
  const value = Buffer.from(item.value);
  return expires ? { key, value, expires } : { key, value };
}

/** Checks compareAndSwap's arguments: two valid items for one key. Returns private copies. */
export function checkSwap(expected: Item, replaceWith: Item): { want: Item; next: Item } {
  const want = checkItem(expected, 'compareAndSwap');
  const next = checkItem(replaceWith, 'compareAndSwap');
  if (want.key !== next.key) {
    throw new BadParameterError(
      `backend compareAndSwap: expected key ${JSON.stringify(want.key)} and replacement key ${JSON.stringify(next.key)} differ`,
    );
  }
  return { want, next };
}
