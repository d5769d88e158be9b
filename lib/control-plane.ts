/**
 * `ControlPlane`: the three Lambdas that run beside the cluster (runtime/controlplane/README.md).
 *
 * - The join-token rotator mints fresh node/proxy join tokens in the state table and publishes
 *   them (SecureStrings) and the CA pin (String) to SSM. It runs on an EventBridge schedule and
 *   once per deployment through a custom resource (`custom_resources.Provider`), so the stack never
 *   declares a token: CloudFormation cannot create SecureStrings, and a token in a template would
 *   leak it. Two runs at once are harmless (see token-rotator.ts), so nothing reserves concurrency
 *   (a reservation eats into the account's unreserved pool, which new accounts cannot spare).
 * - The CA pin publisher is invoked by the state table's stream, filtered to writes of the
 *   cluster's host CA, and writes the pin to SSM within seconds of the CA's creation or rotation.
 * - The lifecycle handler receives the tiers' TERMINATING lifecycle hooks through EventBridge,
 *   removes the instance's presence records and completes the action.
 *
 * The handlers are bundled from their TypeScript sources by the local esbuild (no docker), all three in
 * one esbuild run (lib/handler-bundles.ts). lib/ imports only runtime/contract, so they are referenced by
 * path, never imported.
 */
import * as path from 'node:path';
import { ArnFormat, CfnElement, CustomResource, Duration, Stack, Validations } from 'aws-cdk-lib';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import { ConfVars, JOIN_ROLES, JOIN_TOKEN_TTL_MS, SsmPaths, TOKEN_ROTATION_PERIOD_MS } from '../runtime/contract/aws';
import { stateFullPath } from '../runtime/contract/dynamodb';
import { Keys } from '../runtime/contract/keys';
import { HandlerBundleOptions, HandlerBundles } from './handler-bundles';
import { nagArn, ssmParameterArn, STREAM_READ_ACTIONS } from './iam';
import { checkClusterName, checkInt } from './validation';

/** The handlers' TypeScript sources, which esbuild bundles: found from lib/ and from its compiled copy in dist/lib/. */
const HANDLERS_DIR = path.join(__dirname, path.basename(path.dirname(__dirname)) === 'dist' ? '../..' : '..', 'runtime', 'controlplane');

/** The project root: esbuild's working directory and the handlers' asset source (as `NodejsFunction`'s `projectRoot`). */
const PROJECT_ROOT = path.join(HANDLERS_DIR, '..', '..');
const ROTATOR_ENTRY = path.join(HANDLERS_DIR, 'token-rotator.ts');
const PIN_PUBLISHER_ENTRY = path.join(HANDLERS_DIR, 'ca-pin.ts');
const LIFECYCLE_ENTRY = path.join(HANDLERS_DIR, 'lifecycle.ts');

/** How the handlers are bundled (what `NodejsFunction`'s `bundling` props would say). */
export const HANDLER_BUNDLING: HandlerBundleOptions = {
  minify: true,
  sourceMap: true,
  target: 'node24',
  format: 'cjs',
  // The Lambda runtime provides the AWS SDK v3. ssh2's optional native bindings (it falls back to
  // node:crypto when they fail to load) stay out of the bundle.
  externalModules: ['@aws-sdk/*', '*.node'],
};

/** DynamoDB actions of both handlers: the state table opened with `background: false` (no stream, no sweep). */
export const CONTROL_PLANE_TABLE_ACTIONS = [
  'dynamodb:DeleteItem',
  'dynamodb:DescribeTable',
  'dynamodb:DescribeTimeToLive',
  'dynamodb:GetItem',
  'dynamodb:PutItem',
  'dynamodb:Query',
] as const;
/** KMS actions DynamoDB performs with the caller's credentials on a customer-managed table key. */
export const CONTROL_PLANE_TABLE_KMS_ACTIONS = ['kms:Decrypt', 'kms:GenerateDataKey'] as const;
/** KMS actions SSM performs with the caller's credentials when writing a SecureString with a customer key. */
export const ROTATOR_SSM_KMS_ACTIONS = ['kms:Encrypt', 'kms:GenerateDataKey'] as const;
export const ROTATOR_SSM_ACTIONS = ['ssm:PutParameter'] as const;
/** The CA pin publisher: its stream (read by Lambda's event source mapping with the function's role), the table key to decrypt records, the pin. */
export const PIN_STREAM_ACTIONS = STREAM_READ_ACTIONS;
export const PIN_STREAM_KMS_ACTIONS = ['kms:Decrypt'] as const;
export const PIN_SSM_ACTIONS = ['ssm:PutParameter'] as const;
export const LIFECYCLE_ASG_ACTIONS = ['autoscaling:CompleteLifecycleAction'] as const;
export const LIFECYCLE_SSM_ACTIONS = ['ssm:DescribeInstanceInformation'] as const;
/** Only what a function needs to write to its own, pre-created log group. */
export const LOG_ACTIONS = ['logs:CreateLogStream', 'logs:PutLogEvents'] as const;

/** The EventBridge `detail-type` of an Auto Scaling termination lifecycle action. */
export const TERMINATE_LIFECYCLE_DETAIL_TYPE = 'EC2 Instance-terminate Lifecycle Action';

/** Properties of {@link ControlPlane}. */
export interface ControlPlaneProps {
  /** The cluster name (`TELEPORT_CLUSTER_NAME`: the CA's name and the SSM prefix `/teleport/<cluster>/`). */
  readonly clusterName: string;

  /**
   * The cluster state table (`TELEPORT_DYNAMO_TABLE_NAME`), which must already exist with its
   * NEW_IMAGE stream (its `tableStreamArn` is required: the CA pin publisher reads it) and TTL.
   */
  readonly stateTable: dynamodb.ITable;

  /**
   * Customer-managed key encrypting the state table; the functions get `kms:Decrypt` and
   * `kms:GenerateDataKey` on it, only through DynamoDB.
   *
   * @default - the table uses an AWS-owned or AWS-managed key (no KMS permissions)
   */
  readonly stateTableKey?: kms.IKey;

  /**
   * Customer-managed key for the join-token SecureStrings (`TELEPORT_SSM_KEY_ARN`). The rotator
   * gets `kms:Encrypt` and `kms:GenerateDataKey` on it, only through SSM; readers of the tokens
   * need `kms:Decrypt` on it.
   *
   * @default - the account's `alias/aws/ssm` key (no KMS permissions needed)
   */
  readonly ssmKey?: kms.IKey;

  /**
   * The tiers' Auto Scaling groups (auth, proxy, node). Each gets a TERMINATING lifecycle hook
   * handled by the lifecycle function.
   */
  readonly autoScalingGroups: autoscaling.AutoScalingGroup[];

  /**
   * How often the rotator mints and publishes new tokens: whole minutes, shorter than the
   * tokens' lifetime (`JOIN_TOKEN_TTL_MS`) so a published token is always valid.
   *
   * @default Duration.millis(TOKEN_ROTATION_PERIOD_MS) - one hour
   */
  readonly rotationPeriod?: Duration;

  /**
   * How long a terminating instance waits for the lifecycle function before Auto Scaling
   * continues on its own (the hook's heartbeat timeout), 30 seconds to 2 hours.
   *
   * @default Duration.minutes(5)
   */
  readonly lifecycleHookTimeout?: Duration;

  /**
   * Retention of the functions' log groups.
   *
   * @default logs.RetentionDays.ONE_YEAR
   */
  readonly logRetention?: logs.RetentionDays;
}

/** Throws an Error naming the first invalid prop. */
export function validateControlPlaneProps(props: ControlPlaneProps): void {
  checkClusterName('clusterName', props.clusterName);
  if (!props.stateTable.tableStreamArn) throw new Error('stateTable has no stream: the CA pin publisher is triggered by its NEW_IMAGE stream');
  if (props.autoScalingGroups.length === 0) throw new Error('autoScalingGroups must list at least one Auto Scaling group');
  if (new Set(props.autoScalingGroups).size !== props.autoScalingGroups.length) {
    throw new Error('autoScalingGroups lists the same group twice');
  }
  if (props.rotationPeriod !== undefined) {
    const ms = props.rotationPeriod.toMilliseconds();
    if (ms % 60_000 !== 0) throw new Error(`rotationPeriod must be whole minutes, got ${props.rotationPeriod.toHumanString()}`);
    checkInt('rotationPeriod (minutes)', ms / 60_000, 1, JOIN_TOKEN_TTL_MS / 60_000 - 1);
  }
  if (props.lifecycleHookTimeout !== undefined) {
    checkInt('lifecycleHookTimeout (seconds)', props.lifecycleHookTimeout.toSeconds(), 30, 7200);
  }
}

/**
 * The filter of the CA pin publisher's event source mapping: writes (not deletions) of the
 * cluster's own host CA item, by its sort key (`FullPath`), so no other change of the state
 * table invokes the function.
 */
export function hostCaRecordFilter(clusterName: string): Record<string, unknown> {
  return lambda.FilterCriteria.filter({
    eventName: lambda.FilterRule.or('INSERT', 'MODIFY'),
    dynamodb: { Keys: { FullPath: { S: lambda.FilterRule.isEqual(stateFullPath(Keys.certAuthority('host', clusterName))) } } },
  });
}

/** The token rotator, the CA pin publisher and the lifecycle handler, with their triggers, roles and log groups. */
export class ControlPlane extends Construct {
  public readonly rotator: nodejs.NodejsFunction;
  public readonly pinPublisher: nodejs.NodejsFunction;
  /** Invokes the pin publisher with the state table's stream records of the host CA. */
  public readonly pinTrigger: lambda.EventSourceMapping;
  public readonly lifecycle: nodejs.NodejsFunction;
  public readonly rotationSchedule: events.Rule;
  public readonly lifecycleRule: events.Rule;
  /** Runs the rotator on each Create/Update of the stack. */
  public readonly initialRotation: CustomResource;
  public readonly lifecycleHooks: autoscaling.LifecycleHook[];
  /** The three handlers' bundles (one esbuild run). */
  public readonly bundles: HandlerBundles;

  constructor(scope: Construct, id: string, props: ControlPlaneProps) {
    validateControlPlaneProps(props);
    super(scope, id);
    const stack = Stack.of(this);
    const { clusterName } = props;
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_YEAR;
    // Every handler is declared here, before the first function asks for its asset: one esbuild run bundles all three.
    this.bundles = new HandlerBundles(PROJECT_ROOT, [ROTATOR_ENTRY, PIN_PUBLISHER_ENTRY, LIFECYCLE_ENTRY], HANDLER_BUNDLING);
    const environment: Record<string, string> = {
      [ConfVars.clusterName]: clusterName,
      [ConfVars.stateTable]: props.stateTable.tableName,
    };
    const stateStatements = [
      new iam.PolicyStatement({ sid: 'StateTable', actions: [...CONTROL_PLANE_TABLE_ACTIONS], resources: [props.stateTable.tableArn] }),
      ...(props.stateTableKey
        ? [
            new iam.PolicyStatement({
              sid: 'StateTableKey',
              actions: [...CONTROL_PLANE_TABLE_KMS_ACTIONS],
              resources: [props.stateTableKey.keyArn],
              conditions: { StringEquals: { 'kms:ViaService': `dynamodb.${stack.region}.amazonaws.com` } },
            }),
          ]
        : []),
    ];

    // Token rotator.
    const rotatorLogs = this.logGroup('RotatorLogs', logRetention);
    this.rotator = this.handlerFunction('Rotator', {
      entry: ROTATOR_ENTRY,
      description: `Teleport ${clusterName}: mints join tokens and publishes them and the CA pin to SSM`,
      logGroup: rotatorLogs,
      environment: { ...environment, ...(props.ssmKey ? { [ConfVars.ssmKeyArn]: props.ssmKey.keyArn } : {}) },
      statements: [
        ...stateStatements,
        new iam.PolicyStatement({
          sid: 'PublishTokensAndPin',
          actions: [...ROTATOR_SSM_ACTIONS],
          resources: [
            ...JOIN_ROLES.map((role) => ssmParameterArn(this, SsmPaths.token(clusterName, role))),
            ssmParameterArn(this, SsmPaths.caPin(clusterName)),
          ],
        }),
        ...(props.ssmKey
          ? [
              new iam.PolicyStatement({
                sid: 'EncryptSecureStrings',
                actions: [...ROTATOR_SSM_KMS_ACTIONS],
                resources: [props.ssmKey.keyArn],
                conditions: { StringEquals: { 'kms:ViaService': `ssm.${stack.region}.amazonaws.com` } },
              }),
            ]
          : []),
      ],
    });

    const rotationPeriod = props.rotationPeriod ?? Duration.millis(TOKEN_ROTATION_PERIOD_MS);
    this.rotationSchedule = new events.Rule(this, 'RotationSchedule', {
      description: `Teleport ${clusterName}: rotate the join tokens`,
      schedule: events.Schedule.rate(rotationPeriod),
      targets: [new targets.LambdaFunction(this.rotator, { retryAttempts: 2, maxEventAge: Duration.minutes(30) })],
    });

    const frameworkLogs = this.logGroup('ProviderLogs', logRetention);
    const frameworkRole = new iam.Role(this, 'ProviderRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Teleport ${clusterName}: custom resource framework invoking the token rotator`,
      inlinePolicies: { logs: new iam.PolicyDocument({ statements: [logStatement(frameworkLogs)] }) },
    });
    const provider = new cr.Provider(this, 'RotationProvider', {
      onEventHandler: this.rotator,
      frameworkOnEventRole: frameworkRole,
      logGroup: frameworkLogs,
    });
    // The framework grants itself lambda:InvokeFunction on the rotator and its versions.
    Validations.of(frameworkRole).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${logicalId(this.rotator)}.Arn>:*]`,
      reason: 'The custom resource framework may invoke any version or alias of the token rotator function (ARN suffix :*), and nothing else.',
    });
    this.initialRotation = new CustomResource(this, 'InitialRotation', {
      serviceToken: provider.serviceToken,
      resourceType: 'Custom::TeleportTokenRotation',
      // Stable inputs only: Create and Update rotate; a deployment that changes none of these does not.
      properties: { ClusterName: clusterName, StateTable: props.stateTable.tableName },
    });

    // CA pin publisher: the state table's stream, only writes of the host CA.
    const streamArn = props.stateTable.tableStreamArn!;
    this.pinPublisher = this.handlerFunction('PinPublisher', {
      entry: PIN_PUBLISHER_ENTRY,
      description: `Teleport ${clusterName}: publishes the CA pin to SSM when the host CA is created or rotated`,
      logGroup: this.logGroup('PinPublisherLogs', logRetention),
      environment: { [ConfVars.clusterName]: clusterName },
      statements: [
        new iam.PolicyStatement({ sid: 'StateTableStream', actions: [...PIN_STREAM_ACTIONS], resources: [streamArn] }),
        ...(props.stateTableKey
          ? [
              new iam.PolicyStatement({
                sid: 'StateTableStreamKey',
                actions: [...PIN_STREAM_KMS_ACTIONS],
                resources: [props.stateTableKey.keyArn],
                conditions: { StringEquals: { 'kms:ViaService': `dynamodb.${stack.region}.amazonaws.com` } },
              }),
            ]
          : []),
        new iam.PolicyStatement({ sid: 'PublishPin', actions: [...PIN_SSM_ACTIONS], resources: [ssmParameterArn(this, SsmPaths.caPin(clusterName))] }),
      ],
    });
    this.pinTrigger = new lambda.EventSourceMapping(this, 'PinTrigger', {
      target: this.pinPublisher,
      eventSourceArn: streamArn,
      // From the oldest record kept (24 h): a CA written before the mapping was enabled still gets its pin.
      startingPosition: lambda.StartingPosition.TRIM_HORIZON,
      filters: [hostCaRecordFilter(clusterName)],
      batchSize: 100,
      retryAttempts: 10,
      maxRecordAge: Duration.hours(1),
    });

    // Lifecycle handler.
    const lifecycleLogs = this.logGroup('LifecycleLogs', logRetention);
    const groupArns = props.autoScalingGroups.map((g) =>
      stack.formatArn({
        service: 'autoscaling',
        resource: 'autoScalingGroup',
        arnFormat: ArnFormat.COLON_RESOURCE_NAME,
        resourceName: `*:autoScalingGroupName/${g.autoScalingGroupName}`,
      }),
    );
    this.lifecycle = this.handlerFunction('Lifecycle', {
      entry: LIFECYCLE_ENTRY,
      description: `Teleport ${clusterName}: removes a terminating instance's presence and completes its lifecycle action`,
      logGroup: lifecycleLogs,
      environment,
      statements: [
        ...stateStatements,
        new iam.PolicyStatement({ sid: 'CompleteLifecycleAction', actions: [...LIFECYCLE_ASG_ACTIONS], resources: groupArns }),
        new iam.PolicyStatement({ sid: 'DescribeInstances', actions: [...LIFECYCLE_SSM_ACTIONS], resources: ['*'] }),
      ],
    });
    Validations.of(this.lifecycle.role!).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: 'ssm:DescribeInstanceInformation supports no resource-level permissions; it only reads the SSM agent inventory (IP and host name of the terminating instance).',
    });
    for (const g of props.autoScalingGroups) {
      Validations.of(this.lifecycle.role!).acknowledge({
        id: `AwsSolutions-IAM5[Resource::${nagArn(this, 'autoscaling', `autoScalingGroup:*:autoScalingGroupName/<${logicalId(g)}>`)}]`,
        reason: 'An Auto Scaling group ARN embeds a generated UUID unknown at deploy time; the wildcard covers only that UUID of this named group.',
      });
    }

    const hookTimeout = props.lifecycleHookTimeout ?? Duration.minutes(5);
    this.lifecycleHooks = props.autoScalingGroups.map(
      (g, i) =>
        new autoscaling.LifecycleHook(this, `TerminatingHook${i}`, {
          autoScalingGroup: g,
          lifecycleTransition: autoscaling.LifecycleTransition.INSTANCE_TERMINATING,
          // No notification target: Auto Scaling sends the action to EventBridge.
          defaultResult: autoscaling.DefaultResult.CONTINUE,
          heartbeatTimeout: hookTimeout,
        }),
    );
    this.lifecycleRule = new events.Rule(this, 'LifecycleRule', {
      description: `Teleport ${clusterName}: terminating instances of the cluster's tiers`,
      eventPattern: {
        source: ['aws.autoscaling'],
        detailType: [TERMINATE_LIFECYCLE_DETAIL_TYPE],
        detail: { AutoScalingGroupName: props.autoScalingGroups.map((g) => g.autoScalingGroupName) },
      },
      targets: [new targets.LambdaFunction(this.lifecycle, { retryAttempts: 4, maxEventAge: hookTimeout })],
    });
  }

  private logGroup(id: string, retention: logs.RetentionDays): logs.LogGroup {
    return new logs.LogGroup(this, id, { retention });
  }

  private handlerFunction(
    id: string,
    opts: {
      entry: string;
      description: string;
      logGroup: logs.LogGroup;
      environment: Record<string, string>;
      statements: iam.PolicyStatement[];
    },
  ): nodejs.NodejsFunction {
    const role = new iam.Role(this, `${id}Role`, {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: opts.description.slice(0, 1000),
      inlinePolicies: {
        handler: new iam.PolicyDocument({ statements: [logStatement(opts.logGroup), ...opts.statements] }),
      },
    });
    return new nodejs.NodejsFunction(this, id, {
      // The bundle from the shared esbuild run, in place of NodejsFunction's own per-function bundling.
      code: this.bundles.code(opts.entry),
      handler: 'index.handler',
      description: opts.description.slice(0, 256),
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: 256,
      timeout: Duration.minutes(1),
      role,
      logGroup: opts.logGroup,
      loggingFormat: lambda.LoggingFormat.TEXT,
      environment: { ...opts.environment, NODE_OPTIONS: '--enable-source-maps' },
    });
  }
}

function logStatement(group: logs.ILogGroup): iam.PolicyStatement {
  return new iam.PolicyStatement({ sid: 'OwnLogGroup', actions: [...LOG_ACTIONS], resources: [group.logGroupArn] });
}

/** Logical id of a construct's CloudFormation resource, as cdk-nag names it in finding ids. */
function logicalId(c: Construct): string {
  const child = c.node.defaultChild;
  if (!(child instanceof CfnElement)) throw new Error(`${c.node.path} has no CloudFormation resource`);
  return Stack.of(c).getLogicalId(child);
}
