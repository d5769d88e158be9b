/**
 * Keys in order, for the cache's range reads: a read finds its start by
 * binary search and walks only the keys in its range (O(log n + k)), instead
 * of scanning and sorting every cached key. Adding or removing a key moves
 * the keys after it (one memmove); updating an existing key costs nothing.
 * Keys compare as JavaScript strings, as the backends' range bounds do.
 */
export class SortedKeys {
  private keys: string[];

  constructor(keys: Iterable<string> = []) {
    this.keys = [...new Set(keys)].sort();
  }

  get size(): number {
    return this.keys.length;
  }

  /** The index of the first key not below `key`. */
  private lowerBound(key: string): number {
    let lo = 0;
    let hi = this.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.keys[mid] < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  add(key: string): void {
    const i = this.lowerBound(key);
    if (this.keys[i] !== key) this.keys.splice(i, 0, key);
  }

  delete(key: string): void {
    const i = this.lowerBound(key);
    if (this.keys[i] === key) this.keys.splice(i, 1);
  }

  /** The keys in [start, end), in order (a copy: the index may change while the caller uses them). */
  range(start: string, end: string): string[] {
    const out: string[] = [];
    for (let i = this.lowerBound(start); i < this.keys.length && this.keys[i] < end; i++) out.push(this.keys[i]);
    return out;
  }
}
