/**
 * The diagnostic report `teleport` writes to its log on USR1 (Teleport: "dumps diagnostics/debugging
 * information"): active sessions, open connections per listener, the event loop's handles by kind,
 * and memory.
 */
import { connectionCounts } from './handover';
import { nodeSessionsActive, proxySessionsActive } from './metrics';

export interface DiagnosticReport {
  pid: number;
  uptime_seconds: number;
  sessions: { node: number; proxy: number };
  connections: Record<string, number>;
  handles: Record<string, number>;
  memory_mb: { rss: number; heap_used: number; heap_total: number; external: number };
}

const gauge = async (g: typeof nodeSessionsActive) => (await g.get()).values.reduce((sum, v) => sum + v.value, 0);
const mb = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;

export async function diagnosticReport(): Promise<DiagnosticReport> {
  const handles: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) handles[kind] = (handles[kind] ?? 0) + 1;
  const m = process.memoryUsage();
  return {
    pid: process.pid,
    uptime_seconds: Math.round(process.uptime()),
    sessions: { node: await gauge(nodeSessionsActive), proxy: await gauge(proxySessionsActive) },
    connections: await connectionCounts(),
    handles,
    memory_mb: { rss: mb(m.rss), heap_used: mb(m.heapUsed), heap_total: mb(m.heapTotal), external: mb(m.external) },
  };
}
