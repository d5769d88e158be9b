/**
 * Loaded into the teleport processes of a benchmark with `NODE_OPTIONS=--require
 * <this file>` (bench/datapath.ts): counts the process's garbage collections by
 * kind and, with BENCH_PROBE_CPU_PROF set, records a V8 CPU profile; both are
 * written to BENCH_PROBE_DIR as `<pid>.gc.json` / `<pid>.cpuprofile` when the
 * process exits. Processes other than `teleport start` are left alone.
 */
import * as fs from 'node:fs';
import * as inspector from 'node:inspector';
import * as path from 'node:path';
import { constants, performance, PerformanceObserver } from 'node:perf_hooks';

const dir = process.env.BENCH_PROBE_DIR;
if (dir && process.argv.slice(1).join(' ').includes('teleport.js start')) {
  let session: inspector.Session | undefined;
  if (process.env.BENCH_PROBE_CPU_PROF) {
    session = new inspector.Session();
    session.connect();
    session.post('Profiler.setSamplingInterval', { interval: 500 });
    session.post('Profiler.enable');
    session.post('Profiler.start');
  }
  const kinds: Record<number, string> = {
    [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
    [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
    [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
    [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
  };
  /** Each collection: [start, in ms since the epoch, kind, duration ms]. */
  const log: [number, string, number][] = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) log.push([Math.round(performance.timeOrigin + e.startTime), kinds[(e as unknown as { detail: { kind: number } }).detail.kind] ?? 'other', +e.duration.toFixed(2)]);
  }).observe({ entryTypes: ['gc'] });
  process.on('exit', () => {
    fs.writeFileSync(path.join(dir, `${process.pid}.gc.json`), JSON.stringify({ pid: process.pid, log }));
    // the in-thread inspector session answers synchronously, so the profile is written before the process ends
    session?.post('Profiler.stop', (err, r) => {
      if (!err) fs.writeFileSync(path.join(dir, `${process.pid}.cpuprofile`), JSON.stringify(r.profile));
    });
  });
}
