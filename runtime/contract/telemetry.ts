/**
 * What leaves an AMI instance, as the CDK app (log groups, the instance roles' permissions, the
 * alarms and dashboard) and `teleport configure --from-conf` (the CloudWatch agent's config) must
 * agree on it: the files the units write their output to, the namespace and dimensions the agent
 * publishes the diagnostics endpoint's metrics under, and which metrics. lib/ may import only
 * runtime/contract.
 */

/** Where the AMI's units append their standard output and error (`StandardOutput=append:`). */
export const LOG_DIR = '/var/log/teleport';

/** The file unit `unit` (e.g. `teleport-auth.service`) appends its output to. */
export const unitLogFile = (unit: string) => `${LOG_DIR}/${unit.replace(/\.service$/, '')}.log`;

/** Where the instance's diagnostics endpoint listens unless `teleport configure --diag-addr` says otherwise: loopback only. */
export const DEFAULT_INSTANCE_DIAG_ADDR = '127.0.0.1:3000';

/** How often the agent scrapes `/metrics`, in seconds: one datapoint a minute, what the alarms' periods assume. */
export const SCRAPE_INTERVAL_SECONDS = 60;

/** The CloudWatch namespace of the metrics the agent publishes. */
export const METRICS_NAMESPACE = 'Teleport';

/** The dimensions of every published metric (Prometheus labels the scrape config adds to each sample). */
export const MetricDimensions = {
  /** The cluster name (`TELEPORT_CLUSTER_NAME`). */
  cluster: 'ClusterName',
  /** The instance's role: auth, proxy, node, or all (every role on one instance). */
  role: 'Role',
} as const;

/** The Prometheus job name of the scrape; the agent publishes only samples of this job. */
export const SCRAPE_JOB = 'teleport';

/** The metrics of `/metrics` (runtime/service/metrics.ts) the agent publishes to CloudWatch. */
export const PublishedMetrics = {
  /** 1 while every readiness check holds (`/readyz` 200), else 0. Gauge. */
  ready: 'teleport_ready',
  /** Certificate requests the auth server failed to serve. Counter: the agent publishes each scrape's increase. */
  certificateIssueFailures: 'auth_certificate_issue_failures_total',
  /** Session recordings waiting to be uploaded. Gauge. */
  recordingUploadsPending: 'recording_uploads_pending',
  /** Certificates issued. Counter. */
  certificatesIssued: 'auth_certificates_issued_total',
  /** Failed logins. Counter. */
  failedLogins: 'failed_login_attempts_total',
  /** Sessions active on a node, and through a proxy. Gauges. */
  nodeSessions: 'server_interactive_sessions_total',
  proxySessions: 'proxy_ssh_sessions_total',
} as const;

/** The `Role` dimension's values. */
export type MetricRole = 'auth' | 'proxy' | 'node' | 'all';
