/**
 * The backend metrics: every read and write of the wrapped backend is counted and timed, a
 * failure is counted as one, and an answer (missing key, existing key, lost compare-and-swap)
 * is not; events queued for watchers show in `backend_watcher_queues_total`.
 */
import * as path from 'node:path';
import { MemoryBackend, SqliteBackend } from '../../../runtime/backend';
import { InstrumentedBackend } from '../../../runtime/backend/instrumented';
import { registry } from '../../../runtime/service/metrics';
import { scratchDir } from '../../helpers/scratch';

/** The current value of a counter or gauge sample, or a histogram's `_count`, with these labels. */
async function value(name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = registry.getSingleMetric(name.replace(/_count$/, ''));
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  const histogramCount = name.endsWith('_count');
  const sample = values.find((v) => (!histogramCount || (v as { metricName?: string }).metricName === name) && Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return sample?.value ?? 0;
}

const B = { component: 'backend' };

describe('InstrumentedBackend', () => {
  test('GIVEN a wrapped backend WHEN it is read and written THEN requests and latencies are counted; answers are not failures', async () => {
    // GIVEN
    const backend = new InstrumentedBackend(new MemoryBackend());
    const before = {
      reads: await value('backend_read_requests_total', B),
      writes: await value('backend_write_requests_total', B),
      readFailed: await value('backend_read_requests_failed_total', B),
      writeFailed: await value('backend_write_requests_failed_total', B),
      readTimed: await value('backend_read_seconds_count', B),
      writeTimed: await value('backend_write_seconds_count', B),
    };
    try {
      // WHEN
      await backend.put({ key: '/a', value: Buffer.from('1') });
      await expect(backend.create({ key: '/a', value: Buffer.from('2') })).rejects.toThrow();
      await expect(backend.compareAndSwap({ key: '/a', value: Buffer.from('x') }, { key: '/a', value: Buffer.from('3') })).rejects.toThrow();
      await backend.get('/a');
      await expect(backend.get('/missing')).rejects.toThrow();
      await backend.getRange('/', '0');
      // THEN
      expect(await value('backend_write_requests_total', B)).toBe(before.writes + 3);
      expect(await value('backend_read_requests_total', B)).toBe(before.reads + 3);
      expect(await value('backend_write_seconds_count', B)).toBe(before.writeTimed + 3);
      expect(await value('backend_read_seconds_count', B)).toBe(before.readTimed + 3);
      expect(await value('backend_write_requests_failed_total', B)).toBe(before.writeFailed);
      expect(await value('backend_read_requests_failed_total', B)).toBe(before.readFailed);
    } finally {
      await backend.close();
    }
  });

  test('GIVEN a backend whose store is gone WHEN it is read and written THEN each request counts as failed', async () => {
    // GIVEN a real SQLite backend, closed
    const inner = await SqliteBackend.open({ path: path.join(scratchDir('instrumented-'), 'sqlite.db') });
    await inner.close();
    const backend = new InstrumentedBackend(inner);
    const readFailed = await value('backend_read_requests_failed_total', B);
    const writeFailed = await value('backend_write_requests_failed_total', B);
    // WHEN
    await expect(backend.get('/a')).rejects.toThrow();
    await expect(backend.put({ key: '/a', value: Buffer.from('1') })).rejects.toThrow();
    // THEN
    expect(await value('backend_read_requests_failed_total', B)).toBe(readFailed + 1);
    expect(await value('backend_write_requests_failed_total', B)).toBe(writeFailed + 1);
  });

  test('GIVEN a watcher whose consumer has not read WHEN events pile up and are read or dropped THEN the queued gauge follows', async () => {
    // GIVEN
    const backend = new MemoryBackend();
    const start = await value('backend_watcher_queues_total');
    const watcher = await backend.newWatcher({ prefixes: ['/w/'] });
    try {
      // WHEN two writes are queued behind the Init event
      await backend.put({ key: '/w/1', value: Buffer.from('1') });
      await backend.put({ key: '/w/2', value: Buffer.from('2') });
      // THEN
      expect(await value('backend_watcher_queues_total')).toBe(start + 3);
      await watcher.next();
      expect(await value('backend_watcher_queues_total')).toBe(start + 2);
      // WHEN the watcher is closed with events still queued
      watcher.close();
      // THEN
      expect(await value('backend_watcher_queues_total')).toBe(start);
    } finally {
      watcher.close();
      await backend.close();
    }
  });
});
