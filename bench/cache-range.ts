/**
 * Benchmark: a range read of the auth server's read cache (backend/cache.ts)
 * beside many node records, as the user CA is read while a fleet's presence
 * records fill the cache. Prints, for 10,000 and 20,000 node records, the
 * mean time of a user-CA range read (2 keys) and of a full node list.
 *
 *   npm run bench -- cache-range
 */
import { CachedBackend } from '../runtime/backend/cache';
import { MemoryBackend } from '../runtime/backend/memory';
import { fmt, formatTable } from './common';

async function measure(nodes: number): Promise<{ caUs: number; listMs: number }> {
  const store = new MemoryBackend({ sweepPeriodMs: 0 });
  for (const t of ['host', 'user']) await store.put({ key: `/authorities/${t}/example.com`, value: Buffer.alloc(2000, 1) });
  for (let i = 0; i < nodes; i++) await store.put({ key: `/nodes/default/${i.toString(16).padStart(8, '0')}`, value: Buffer.alloc(500, 1) });
  const cache = await CachedBackend.open(store, { prefixes: ['/authorities/', '/nodes/'] });
  try {
    const ca = () => cache.getRange('/authorities/user/', '/authorities/user/\uffff');
    for (let i = 0; i < 200; i++) await ca(); // warm-up
    const reads = 2000;
    let t0 = process.hrtime.bigint();
    for (let i = 0; i < reads; i++) await ca();
    const caUs = Number(process.hrtime.bigint() - t0) / 1000 / reads;
    const lists = 20;
    t0 = process.hrtime.bigint();
    for (let i = 0; i < lists; i++) await cache.getRange('/nodes/default/', '/nodes/default/\uffff');
    return { caUs, listMs: Number(process.hrtime.bigint() - t0) / 1e6 / lists };
  } finally {
    await cache.close();
  }
}

async function main(): Promise<void> {
  const rows = [['node records', 'user-CA range read (µs)', 'node list (ms)']];
  const figures: Record<string, { caUs: number; listMs: number }> = {};
  for (const n of [10_000, 20_000]) {
    const f = (figures[n] = await measure(n));
    rows.push([String(n), fmt(f.caUs, 1), fmt(f.listMs, 2)]);
  }
  console.log(formatTable(rows));
  console.log(JSON.stringify({ bench: 'cache-range', ...figures }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
