/**
 * `ClusterMonitoring`: the cluster's CloudWatch alarms, the SNS topic they notify (with an
 * optional e-mail subscription) and one dashboard.
 *
 * Alarms watch what AWS itself measures: every load balancer target group (a tier with no healthy
 * target is down; a target unhealthy for 15 minutes is stuck), every Lambda function of the stack
 * (errors and throttles), and the DynamoDB tables (throttled reads and writes). With
 * `instanceMetrics`, also what the instances' CloudWatch agent publishes from their diagnostics
 * endpoints (lib/telemetry.ts): an auth server not ready, session recordings not uploaded,
 * certificate issuance failing. Each alarm also notifies when it returns to OK.
 */
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import { PublishedMetrics } from '../runtime/contract/telemetry';
import type { InstanceTelemetry } from './telemetry';
import { checkEmail } from './validation';

/** A target group with the name operators know it by (e.g. `proxy 3023`). */
export interface MonitoredTargetGroup {
  /** Shown in the alarm description and on the dashboard. */
  readonly label: string;
  /** A network or application target group attached to its load balancer. */
  readonly targetGroup: elbv2.ITargetGroup;
}

/** Properties of {@link ClusterMonitoring}. */
export interface ClusterMonitoringProps {
  /** Names the dashboard and appears in every alarm description. */
  readonly clusterName: string;

  /** Target groups to alarm on: no healthy target, or a target unhealthy for 15 minutes. */
  readonly targetGroups: MonitoredTargetGroup[];

  /** Lambda functions to alarm on: any error or throttle in 5 minutes. */
  readonly functions: lambda.IFunction[];

  /** DynamoDB tables to alarm on: any throttled read or write in 5 minutes. */
  readonly tables: dynamodb.ITable[];

  /**
   * The metrics the instances' CloudWatch agent publishes: alarms on auth readiness, the recording
   * upload backlog and certificate issuance failures, and their dashboard row.
   *
   * @default - no alarms on instance metrics
   */
  readonly instanceMetrics?: InstanceTelemetry;

  /**
   * E-mail address subscribed to the alarm topic (AWS sends it a confirmation message first).
   *
   * @default - no subscription: subscribe to the `AlarmTopicArn` output yourself
   */
  readonly alarmEmail?: string;
}

/** The alarms, their topic and the dashboard of one cluster. */
export class ClusterMonitoring extends Construct {
  /** Receives every alarm's ALARM and OK notifications. */
  public readonly topic: sns.Topic;
  public readonly alarms: cloudwatch.Alarm[] = [];
  public readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: ClusterMonitoringProps) {
    if (props.alarmEmail !== undefined) checkEmail('alarmEmail', props.alarmEmail);
    super(scope, id);

    // CloudWatch publishes to an encrypted topic only with a customer managed key that lets it.
    const key = new kms.Key(this, 'TopicKey', {
      description: `Encrypts the alarm notifications of Teleport cluster ${props.clusterName}`,
      enableKeyRotation: true,
    });
    key.grant(new iam.ServicePrincipal('cloudwatch.amazonaws.com'), 'kms:Decrypt', 'kms:GenerateDataKey*');
    this.topic = new sns.Topic(this, 'Topic', { displayName: `Teleport ${props.clusterName} alarms`, masterKey: key, enforceSSL: true });
    if (props.alarmEmail !== undefined) this.topic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));

    const period = Duration.minutes(1);
    const healthWidgets: cloudwatch.IWidget[] = [];
    for (const { label, targetGroup: tg } of props.targetGroups) {
      const [healthy, unhealthy] = hostCounts(tg, label, period);
      this.alarm(`${label} no healthy target`, healthy, {
        description: `Teleport ${props.clusterName}: target group ${label} has had no healthy target for 2 minutes: that service is down.`,
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: 2,
        // A target group that reports nothing has no registered target either.
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      });
      this.alarm(`${label} unhealthy target`, unhealthy, {
        description: `Teleport ${props.clusterName}: a target of ${label} has been unhealthy for 15 minutes (its instance should have been replaced).`,
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 15,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      healthWidgets.push(new cloudwatch.GraphWidget({ title: `Targets: ${label}`, left: [healthy, unhealthy], width: 8 }));
    }

    const fiveMinutes = Duration.minutes(5);
    const functionWidgets: cloudwatch.IWidget[] = [];
    for (const fn of props.functions) {
      const errors = fn.metricErrors({ statistic: 'Sum', period: fiveMinutes });
      const throttles = fn.metricThrottles({ statistic: 'Sum', period: fiveMinutes });
      const name = fn.node.path.split('/').slice(1).join('/');
      for (const [what, metric] of [['errors', errors], ['throttles', throttles]] as const) {
        this.alarm(`${name} ${what}`, metric, {
          description: `Teleport ${props.clusterName}: control-plane function ${name} had ${what} in the last 5 minutes (see its log group).`,
          threshold: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          evaluationPeriods: 1,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        });
      }
      functionWidgets.push(new cloudwatch.GraphWidget({ title: `Function: ${name}`, left: [fn.metricInvocations({ period: fiveMinutes }), errors, throttles], width: 8 }));
    }

    const tableWidgets: cloudwatch.IWidget[] = [];
    for (const table of props.tables) {
      const throttled = new cloudwatch.MathExpression({
        expression: 'r + w',
        usingMetrics: {
          r: table.metric('ReadThrottleEvents', { statistic: 'Sum', period: fiveMinutes }),
          w: table.metric('WriteThrottleEvents', { statistic: 'Sum', period: fiveMinutes }),
        },
        label: 'throttled requests',
        period: fiveMinutes,
      });
      const name = table.node.id;
      this.alarm(`${name} throttled`, throttled, {
        description: `Teleport ${props.clusterName}: DynamoDB table ${name} throttled reads or writes in the last 5 minutes.`,
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      tableWidgets.push(
        new cloudwatch.GraphWidget({
          title: `Table: ${name}`,
          left: [table.metricConsumedReadCapacityUnits({ period: fiveMinutes }), table.metricConsumedWriteCapacityUnits({ period: fiveMinutes })],
          right: [throttled],
          width: 8,
        }),
      );
    }

    const instanceWidgets = props.instanceMetrics ? this.instanceAlarms(props.clusterName, props.instanceMetrics) : [];

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: `teleport-${props.clusterName}`.replace(/[^A-Za-z0-9_-]/g, '-'),
      widgets: [
        [new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24 })],
        healthWidgets,
        instanceWidgets,
        functionWidgets,
        tableWidgets,
      ],
    });
  }

  /** The alarms on the agent-published metrics, and their dashboard widgets. */
  private instanceAlarms(clusterName: string, t: InstanceTelemetry): cloudwatch.IWidget[] {
    const minute = Duration.minutes(1);
    const fiveMinutes = Duration.minutes(5);
    // Each auth server publishes its readiness once a minute; the minimum is 0 when any is not ready.
    const authReady = t.metric(PublishedMetrics.ready, 'auth', { statistic: 'Minimum', period: minute });
    this.alarm('auth not ready', authReady, {
      description: `Teleport ${clusterName}: an auth server has not been ready (/readyz) for 5 minutes, or no auth server has reported for 5 minutes (all down, or their CloudWatch agent is not running).`,
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 5,
      // No datapoint means no auth server reported: every one is down or not publishing. Either way
      // nothing shows the tier is ready, so the alarm fails closed.
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
    // Completed recordings leave a node within seconds; one still waiting in every 5-minute window
    // for 30 minutes means uploads are failing or cannot keep up.
    const backlog = t.metric(PublishedMetrics.recordingUploadsPending, 'node', { statistic: 'Maximum', period: fiveMinutes });
    this.alarm('recording upload backlog', backlog, {
      description: `Teleport ${clusterName}: session recordings have been waiting on a node to be uploaded for 30 minutes (check the node's log for the upload errors).`,
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 6,
      // No datapoint: no node reported (none running, or its agent is down); the target and auth
      // alarms cover instances that are down, so this alarm only speaks about a backlog it sees.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    // The agent publishes a counter's increase since the previous scrape.
    const failures = t.metric(PublishedMetrics.certificateIssueFailures, 'auth', { statistic: 'Sum', period: fiveMinutes });
    this.alarm('certificate issuance failures', failures, {
      description: `Teleport ${clusterName}: the auth servers failed to issue certificates they had accepted the request for in the last 5 minutes (backend or CA trouble: see the auth servers' log).`,
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      // The counter has no series until its first failure: missing is the normal state.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    const issued = t.metric(PublishedMetrics.certificatesIssued, 'auth', { statistic: 'Sum', period: fiveMinutes, label: 'certificates issued' });
    const failedLogins = t.metric(PublishedMetrics.failedLogins, 'auth', { statistic: 'Sum', period: fiveMinutes, label: 'failed logins' });
    return [
      new cloudwatch.GraphWidget({
        title: 'Readiness (1 = every instance of the role ready)',
        left: (['auth', 'proxy', 'node'] as const).map((role) => t.metric(PublishedMetrics.ready, role, { statistic: 'Minimum', period: minute, label: role })),
        leftYAxis: { min: 0, max: 1 },
        width: 8,
      }),
      new cloudwatch.GraphWidget({ title: 'Certificates', left: [issued, failedLogins], right: [failures.with({ label: 'issuance failures' })], width: 8 }),
      new cloudwatch.GraphWidget({
        title: 'Sessions and recording uploads',
        left: [
          t.metric(PublishedMetrics.nodeSessions, 'node', { statistic: 'Sum', period: minute, label: 'node sessions' }),
          t.metric(PublishedMetrics.proxySessions, 'proxy', { statistic: 'Sum', period: minute, label: 'proxy sessions' }),
        ],
        right: [backlog.with({ label: 'recordings waiting (maximum)' })],
        width: 8,
      }),
    ];
  }

  private alarm(
    name: string,
    metric: cloudwatch.IMetric,
    opts: Pick<cloudwatch.CreateAlarmOptions, 'threshold' | 'comparisonOperator' | 'evaluationPeriods' | 'treatMissingData'> & { description: string },
  ): void {
    const id = name.replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ?? '').toUpperCase()).replace(/^./, (c) => c.toUpperCase());
    const alarm = new cloudwatch.Alarm(this, id, { metric, alarmDescription: opts.description, ...opts });
    alarm.addAlarmAction(new actions.SnsAction(this.topic));
    alarm.addOkAction(new actions.SnsAction(this.topic));
    this.alarms.push(alarm);
  }
}

/** The healthy (minimum) and unhealthy (maximum) target counts of a network or application target group. */
function hostCounts(tg: elbv2.ITargetGroup, label: string, period: Duration): [cloudwatch.Metric, cloudwatch.Metric] {
  const healthy = { statistic: 'Minimum', period, label: 'healthy' };
  const unhealthy = { statistic: 'Maximum', period, label: 'unhealthy' };
  if (tg instanceof elbv2.NetworkTargetGroup) return [tg.metrics.healthyHostCount(healthy), tg.metrics.unHealthyHostCount(unhealthy)];
  if (tg instanceof elbv2.ApplicationTargetGroup) return [tg.metrics.healthyHostCount(healthy), tg.metrics.unhealthyHostCount(unhealthy)];
  throw new Error(`target group ${label} is neither a network nor an application target group of this stack`);
}
