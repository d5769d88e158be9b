/**
 * The process's Prometheus metrics: one registry, every metric defined here, and the call sites
 * (auth, node, proxy, the backend wrapper) only move them. Names are Teleport's where Teleport
 * has the metric (`server_interactive_sessions_total`, `proxy_ssh_sessions_total`,
 * `failed_login_attempts_total`, the `backend_*` ones); the others are ours, in the same style.
 * The diagnostics endpoint (diag.ts) serves the registry as `/metrics`; without it the metrics
 * are kept but nobody reads them. Process metrics (CPU, memory, file descriptors, event loop)
 * are added when the endpoint starts.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export const registry = new Registry();

const registers = [registry];

/** Sessions in flight on this node (Teleport's name, a gauge despite `_total`). */
export const nodeSessionsActive = new Gauge({ name: 'server_interactive_sessions_total', help: 'Number of active sessions on this node', registers });
/** Sessions started on this node. */
export const nodeSessionsStarted = new Counter({ name: 'server_sessions_started_total', help: 'Number of sessions started on this node', registers });
/** Sessions in flight through this proxy (Teleport's name, a gauge despite `_total`). */
export const proxySessionsActive = new Gauge({ name: 'proxy_ssh_sessions_total', help: 'Number of active sessions through this proxy', registers });
/** Sessions started through this proxy. */
export const proxySessionsStarted = new Counter({ name: 'proxy_ssh_sessions_started_total', help: 'Number of sessions started through this proxy', registers });

/** Certificates the auth server issued, by kind (`user`, `host`). */
export const certificatesIssued = new Counter({
  name: 'auth_certificates_issued_total',
  help: 'Number of certificates issued by the auth server',
  labelNames: ['type'] as const,
  registers,
});
/**
 * Certificate requests the auth server could not serve for a reason of its own (the backend does
 * not answer, a CA cannot sign), by kind; requests refused for what they ask (an unknown user, no
 * allowed login, a malformed key) are not failures of issuance.
 */
export const certificateIssueFailures = new Counter({
  name: 'auth_certificate_issue_failures_total',
  help: 'Number of certificate requests the auth server failed to serve (internal errors, not refused requests)',
  labelNames: ['type'] as const,
  registers,
});
/** Logins refused by the auth server (wrong password or second factor, unknown or locked user). */
export const failedLogins = new Counter({ name: 'failed_login_attempts_total', help: 'Number of failed login attempts', registers });
/** Presence announcements (heartbeats) the auth server accepted, by the kind of server. */
export const heartbeatsReceived = new Counter({
  name: 'auth_heartbeats_received_total',
  help: 'Number of heartbeats received by the auth server',
  labelNames: ['kind'] as const,
  registers,
});

/** Read and write latencies of the cluster backend (Teleport's names). */
const latencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
export const backendReadSeconds = new Histogram({
  name: 'backend_read_seconds',
  help: 'Latency of backend read operations',
  labelNames: ['component'] as const,
  buckets: latencyBuckets,
  registers,
});
export const backendWriteSeconds = new Histogram({
  name: 'backend_write_seconds',
  help: 'Latency of backend write operations',
  labelNames: ['component'] as const,
  buckets: latencyBuckets,
  registers,
});
export const backendReadRequests = new Counter({ name: 'backend_read_requests_total', help: 'Number of backend read requests', labelNames: ['component'] as const, registers });
export const backendWriteRequests = new Counter({ name: 'backend_write_requests_total', help: 'Number of backend write requests', labelNames: ['component'] as const, registers });
export const backendReadFailed = new Counter({
  name: 'backend_read_requests_failed_total',
  help: 'Number of backend read requests that failed (a missing key is an answer, not a failure)',
  labelNames: ['component'] as const,
  registers,
});
export const backendWriteFailed = new Counter({
  name: 'backend_write_requests_failed_total',
  help: 'Number of backend write requests that failed (a lost compare-and-swap or an existing key is an answer, not a failure)',
  labelNames: ['component'] as const,
  registers,
});

/** Events queued for backend watchers and not yet taken by their consumers (how far the watchers lag). */
export const watcherQueued = new Gauge({ name: 'backend_watcher_queues_total', help: 'Number of events queued for backend watchers and not yet consumed', registers });

/** A gauge whose value is the sum of what its sources report when it is scraped. */
export class SourcedGauge {
  private readonly sources = new Set<() => Promise<number>>();

  constructor(name: string, help: string) {
    const sources = this.sources;
    new Gauge({
      name,
      help,
      registers,
      async collect() {
        const counts = await Promise.all([...sources].map((s) => s().catch(() => 0)));
        this.set(counts.reduce((a, b) => a + b, 0));
      },
    });
  }

  /** Adds a source while it runs; call what is returned to remove it. */
  track(source: () => Promise<number>): () => void {
    this.sources.add(source);
    return () => this.sources.delete(source);
  }
}

/** Audit events a node has spooled to disk and the auth service has not acknowledged yet. */
export const auditEventsQueued = new SourcedGauge('audit_events_queued', 'Number of audit events waiting to be delivered to the auth service');

/** Session recordings a node holds that are not uploaded to the auth service yet. */
export const recordingUploadsPending = new SourcedGauge('recording_uploads_pending', 'Number of session recordings waiting to be uploaded');

/**
 * 1 while every readiness check of the process holds (`/readyz` answers 200), else 0; probed when
 * scraped, by the diagnostics endpoint's one readiness decision (diag.ts). 0 without the endpoint.
 */
export const ready = new SourcedGauge('teleport_ready', 'Whether every readiness check of the process holds (1) or not (0), as /readyz answers');

let processMetrics = false;

/** Adds the process metrics (CPU, memory, file descriptors, event loop, GC) to the registry, once. */
export function collectProcessMetrics(): void {
  if (processMetrics) return;
  processMetrics = true;
  collectDefaultMetrics({ register: registry });
}
