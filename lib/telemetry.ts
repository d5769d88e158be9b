/**
 * `InstanceTelemetry`: where the instances' logs and metrics go. Two CloudWatch Logs groups with
 * a retention, encrypted with a rotating key of their own that only CloudWatch Logs may use, for
 * these groups: one for the teleport units' log files, one the CloudWatch agent writes the scraped
 * `/metrics` to in the embedded metric format, from which CloudWatch publishes them in the
 * `Teleport` namespace (runtime/contract/telemetry.ts). The instances learn the groups from their
 * conf (`TELEPORT_LOG_GROUP`, `TELEPORT_METRICS_LOG_GROUP`); `teleport configure --from-conf` turns
 * them into the agent's config. Their roles may create streams in, and write to, these two groups
 * and nothing else: the embedded metric format needs no `cloudwatch:PutMetricData`.
 */
import { ArnFormat, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { ConfVar, ConfVars } from '../runtime/contract/aws';
import { METRICS_NAMESPACE, MetricDimensions, type MetricRole } from '../runtime/contract/telemetry';

/** The retention periods CloudWatch Logs accepts, in days. */
export const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] as const;

/** The retention of the instances' logs and metric events unless `logRetentionDays` says otherwise. */
export const DEFAULT_LOG_RETENTION_DAYS = 30;

/** The actions the CloudWatch agent calls on a log group it writes to (the groups exist: it creates none). */
export const AGENT_LOG_ACTIONS = ['logs:CreateLogStream', 'logs:DescribeLogStreams', 'logs:PutLogEvents'] as const;

/** What CloudWatch Logs does with the groups' key. */
export const LOGS_KEY_ACTIONS = ['kms:Decrypt*', 'kms:Describe*', 'kms:Encrypt*', 'kms:GenerateDataKey*', 'kms:ReEncrypt*'] as const;

/** Throws unless `days` is a retention CloudWatch Logs accepts. */
export function checkLogRetentionDays(prop: string, days: number): void {
  if (!(LOG_RETENTION_DAYS as readonly number[]).includes(days)) {
    throw new Error(`${prop} must be one of the retention periods CloudWatch Logs accepts (${LOG_RETENTION_DAYS.join(', ')} days), got ${days}`);
  }
}

/** Properties of {@link InstanceTelemetry}. */
export interface InstanceTelemetryProps {
  /** The cluster name: the `ClusterName` dimension of the metrics. */
  readonly clusterName: string;

  /**
   * How long CloudWatch Logs keeps the instances' log lines and metric events, in days (one of
   * {@link LOG_RETENTION_DAYS}).
   *
   * @default 30
   */
  readonly retentionDays?: number;

  /**
   * What happens to the log groups when the stack is deleted.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/** The log groups of a cluster's instances and how to read the metrics the agent publishes. */
export class InstanceTelemetry extends Construct {
  /** The teleport units' log files, one stream per instance and file. */
  public readonly logGroup: logs.LogGroup;
  /** The agent's embedded-metric-format events (the metrics' raw samples). */
  public readonly metricsLogGroup: logs.LogGroup;
  /** Encrypts both groups. */
  public readonly key: kms.Key;
  public readonly clusterName: string;

  constructor(scope: Construct, id: string, props: InstanceTelemetryProps) {
    const retentionDays = props.retentionDays ?? DEFAULT_LOG_RETENTION_DAYS;
    checkLogRetentionDays('logRetentionDays', retentionDays);
    super(scope, id);
    this.clusterName = props.clusterName;
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    this.key = new kms.Key(this, 'Key', {
      description: `Encrypts the instance logs and metric events of Teleport cluster ${props.clusterName}`,
      enableKeyRotation: true,
      removalPolicy,
    });
    // CloudWatch Logs encrypts and decrypts with it, for log groups of this account and region only
    // (the groups' generated names are not known before they exist, and they need the key first).
    const stack = Stack.of(this);
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchLogs',
        principals: [new iam.ServicePrincipal(`logs.${stack.region}.amazonaws.com`)],
        actions: [...LOGS_KEY_ACTIONS],
        resources: ['*'],
        conditions: {
          ArnLike: { 'kms:EncryptionContext:aws:logs:arn': stack.formatArn({ service: 'logs', resource: 'log-group', resourceName: '*', arnFormat: ArnFormat.COLON_RESOURCE_NAME }) },
        },
      }),
    );
    const group = (groupId: string) =>
      new logs.LogGroup(this, groupId, { retention: retentionDays as logs.RetentionDays, removalPolicy, encryptionKey: this.key });
    this.logGroup = group('Logs');
    this.metricsLogGroup = group('Metrics');
  }

  /** The conf variables that turn the agent on, naming the two groups. */
  public get conf(): Partial<Record<ConfVar, string>> {
    return { [ConfVars.logGroup]: this.logGroup.logGroupName, [ConfVars.metricsLogGroup]: this.metricsLogGroup.logGroupName };
  }

  /** What an instance's agent needs: streams and events in the two groups (each group's ARN covers its streams). */
  public statements(): iam.PolicyStatement[] {
    return [
      new iam.PolicyStatement({
        sid: 'InstanceTelemetry',
        actions: [...AGENT_LOG_ACTIONS],
        resources: [this.logGroup.logGroupArn, this.metricsLogGroup.logGroupArn],
      }),
    ];
  }

  /** A metric the agent publishes for the instances of `role`. */
  public metric(metricName: string, role: MetricRole, props: { statistic: string; period: Duration; label?: string }): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: METRICS_NAMESPACE,
      metricName,
      dimensionsMap: { [MetricDimensions.cluster]: this.clusterName, [MetricDimensions.role]: role },
      ...props,
    });
  }
}
