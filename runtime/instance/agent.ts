/**
 * The CloudWatch agent's config for an AMI instance, from the validated conf: the files the
 * instance's units append their output to go to the conf's log group (one stream per instance
 * and file), and the agent's Prometheus input scrapes the diagnostics endpoint and writes the
 * metrics of {@link PublishedMetrics} in the embedded metric format to the metrics group, from
 * which CloudWatch publishes them in {@link METRICS_NAMESPACE} with the dimensions the alarms of
 * lib/monitoring.ts use. Pure: names, addresses and paths all come from the arguments and
 * runtime/contract/telemetry.ts.
 */
import { stringify } from 'yaml';
import { PublishedMetrics, METRICS_NAMESPACE, MetricDimensions, SCRAPE_INTERVAL_SECONDS, SCRAPE_JOB, unitLogFile, type MetricRole } from '../contract/telemetry';
import type { InstanceConf } from './conf';
import type { InstanceMode } from './generate';

/** The AMI unit (ami/files/system) that runs each mode. */
export const MODE_UNITS: Readonly<Record<InstanceMode, string>> = {
  all: 'teleport.service',
  'all-acm': 'teleport-acm.service',
  auth: 'teleport-auth.service',
  proxy: 'teleport-proxy.service',
  'proxy-acm': 'teleport-proxy-acm.service',
  node: 'teleport-node.service',
};

/** The AMI units that every instance runs besides its role's, whose output also leaves the instance. */
export const BOOT_UNITS = ['teleport-generate-config.service', 'teleport-signal.service'] as const;

/** cloud-init's copy of the user data's output: what went wrong before any unit ran. */
export const CLOUD_INIT_OUTPUT = '/var/log/cloud-init-output.log';

/** The `Role` dimension of a mode. */
export function metricRole(mode: InstanceMode): MetricRole {
  if (mode === 'all' || mode === 'all-acm') return 'all';
  return mode === 'proxy-acm' ? 'proxy' : mode;
}

/** The agent's JSON config (the fields of its schema that this uses). */
export interface AgentConfig {
  agent: { metrics_collection_interval: number; region?: string };
  logs: {
    logs_collected: { files: { collect_list: { file_path: string; log_group_name: string; log_stream_name: string; timezone: 'UTC' }[] } };
    metrics_collected: {
      prometheus: {
        log_group_name: string;
        prometheus_config_path: string;
        emf_processor: {
          metric_declaration_dedup: boolean;
          metric_namespace: string;
          metric_declaration: { source_labels: string[]; label_matcher: string; dimensions: string[][]; metric_selectors: string[] }[];
        };
      };
    };
    force_flush_interval: number;
  };
}

export interface AgentFiles {
  /** The agent's config (JSON), for `amazon-cloudwatch-agent-ctl -a fetch-config -c file:<path>`. */
  readonly config: AgentConfig;
  /** The Prometheus scrape config (YAML) the agent's config names. */
  readonly prometheus: string;
}

/**
 * The agent's config for an instance of `mode` in cluster `clusterName` whose diagnostics endpoint
 * listens on `diagAddr`; undefined when the conf names no log groups (no agent runs).
 * `prometheusFile` is where the scrape config will be written.
 */
export function agentConfig(conf: InstanceConf, opts: { mode: InstanceMode; clusterName: string; diagAddr: string; prometheusFile: string }): AgentFiles | undefined {
  if (!conf.telemetry) return undefined;
  const { logGroup, metricsLogGroup } = conf.telemetry;
  const files = [MODE_UNITS[opts.mode], ...BOOT_UNITS].map((unit) => ({ path: unitLogFile(unit), stream: unit.replace(/\.service$/, '') }));
  files.push({ path: CLOUD_INIT_OUTPUT, stream: 'cloud-init-output' });
  const dimensions = [MetricDimensions.cluster, MetricDimensions.role];
  const config: AgentConfig = {
    agent: { metrics_collection_interval: SCRAPE_INTERVAL_SECONDS, ...(conf.region ? { region: conf.region } : {}) },
    logs: {
      logs_collected: {
        files: {
          collect_list: files.map((f) => ({ file_path: f.path, log_group_name: logGroup, log_stream_name: `{instance_id}/${f.stream}`, timezone: 'UTC' as const })),
        },
      },
      metrics_collected: {
        prometheus: {
          log_group_name: metricsLogGroup,
          prometheus_config_path: opts.prometheusFile,
          emf_processor: {
            metric_declaration_dedup: true,
            metric_namespace: METRICS_NAMESPACE,
            metric_declaration: [
              {
                source_labels: ['job'],
                label_matcher: `^${SCRAPE_JOB}$`,
                dimensions: [dimensions],
                metric_selectors: Object.values(PublishedMetrics).map((m) => `^${m}$`),
              },
            ],
          },
        },
      },
      force_flush_interval: 15,
    },
  };
  const prometheus = stringify(
    {
      global: { scrape_interval: `${SCRAPE_INTERVAL_SECONDS}s`, scrape_timeout: '10s' },
      scrape_configs: [
        {
          job_name: SCRAPE_JOB,
          metrics_path: '/metrics',
          scheme: 'http',
          static_configs: [{ targets: [opts.diagAddr], labels: { [MetricDimensions.cluster]: opts.clusterName, [MetricDimensions.role]: metricRole(opts.mode) } }],
        },
      ],
    },
    { lineWidth: 0 },
  );
  return { config, prometheus };
}
