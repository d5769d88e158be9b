/**
 * `ClusterStack`: a highly available Teleport cluster — storage (DynamoDB state and audit
 * tables, S3 recordings, KMS), a VPC (new or existing), the auth tier behind an internal NLB,
 * the proxy tier behind a public NLB (and an ALB with an ACM certificate), the node tier, and
 * the proxy's Route 53 record. Every prop is validated before any resource is defined.
 *
 * The control plane Lambdas ({@link ControlPlane}) rotate the join tokens (hourly and at each
 * deployment), publish the CA pin when the CA is created or rotated, and clean up after
 * terminating instances of the three tiers. The outputs give the cluster URL and how to create the
 * first user: a Session Manager shell on an auth server and the `tctl users add` line.
 */
import { CfnOutput, CfnResource, Stack, Validations } from 'aws-cdk-lib';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { JOIN_ROLES, SsmPaths } from '../runtime/contract/aws';
import { AuthTier } from './auth-tier';
import { ProxyCertificate } from './certificate';
import { importHostedZone, ProxyDns } from './dns';
import { ControlPlane } from './control-plane';
import { FIRST_USER_COMMAND, groupShellCommand } from './first-user';
import { ClusterMonitoring } from './monitoring';
import { ClusterNetwork, ExistingVpcProps, validateExistingVpc } from './network';
import { NodeTier } from './node-tier';
import { ProxyTier } from './proxy-tier';
import { ClusterStorage } from './storage';
import { DEFAULT_AMI_PARAMETER, TeleportStackProps, validateTeleportStackProps } from './stack-props';
import { InstanceTelemetry } from './telemetry';
import { checkEmail, checkInstanceType, checkInt } from './validation';

/** Size of one tier. */
export interface TierSize {
  /**
   * EC2 instance type.
   *
   * @default - the tier's default (auth and proxy 't3.medium', node 't3.small')
   */
  readonly instanceType?: string;

  /**
   * Smallest number of instances; at least 1.
   *
   * @default - auth 2, proxy 2, node 1
   */
  readonly minCapacity?: number;

  /**
   * Largest number of instances; at least 2 (a rolling update keeps one in service).
   *
   * @default - auth 4, proxy 4, node 10
   */
  readonly maxCapacity?: number;
}

/** Properties of {@link ClusterStack}. */
export interface ClusterStackProps extends TeleportStackProps {
  /** The proxy's public DNS name, e.g. `teleport.example.com`. */
  readonly domainName: string;

  /**
   * Use this existing VPC instead of creating one.
   *
   * @default - a new VPC with public and private subnets in two zones
   */
  readonly existingVpc?: ExistingVpcProps;

  /**
   * Auth tier size.
   *
   * @default - 2 to 4 t3.medium
   */
  readonly auth?: TierSize;

  /**
   * Proxy tier size.
   *
   * @default - 2 to 4 t3.medium
   */
  readonly proxy?: TierSize;

  /**
   * Node tier size.
   *
   * @default - 1 to 10 t3.small
   */
  readonly node?: TierSize;

  /**
   * S3 Object Lock (governance) default retention of session recordings, in days.
   *
   * @default - no Object Lock
   */
  readonly recordingsObjectLockDays?: number;

  /**
   * SNS topic receiving the auto scaling groups' launch, terminate and error notifications.
   *
   * @default - no notifications
   */
  readonly notificationsTopic?: sns.ITopic;

  /**
   * E-mail address subscribed to the cluster's alarm topic (AWS first sends it a confirmation).
   *
   * @default - no subscription (subscribe to the `AlarmTopicArn` output)
   */
  readonly alarmEmail?: string;
}

/** Throws an Error naming the first invalid prop. */
export function validateClusterStackProps(props: ClusterStackProps): void {
  validateTeleportStackProps(props, props.domainName);
  for (const [tier, size] of [['auth', props.auth], ['proxy', props.proxy], ['node', props.node]] as const) {
    if (!size) continue;
    if (size.instanceType !== undefined) checkInstanceType(`${tier}.instanceType`, size.instanceType);
    if (size.minCapacity !== undefined) checkInt(`${tier}.minCapacity`, size.minCapacity, 1);
    if (size.maxCapacity !== undefined) checkInt(`${tier}.maxCapacity`, size.maxCapacity, Math.max(2, size.minCapacity ?? 1));
  }
  if (props.existingVpc) validateExistingVpc(props.existingVpc);
  if (props.recordingsObjectLockDays !== undefined) checkInt('recordingsObjectLockDays', props.recordingsObjectLockDays, 1, 36500);
  if (props.alarmEmail !== undefined) checkEmail('alarmEmail', props.alarmEmail);
}

/** The HA cluster. */
export class ClusterStack extends Stack {
  public readonly clusterName: string;
  public readonly storage: ClusterStorage;
  public readonly network: ClusterNetwork;
  public readonly auth: AuthTier;
  public readonly proxy: ProxyTier;
  public readonly nodes: NodeTier;
  public readonly controlPlane: ControlPlane;
  public readonly monitoring: ClusterMonitoring;
  public readonly telemetry: InstanceTelemetry;
  private explicitAzs?: string[];

  constructor(scope: Construct, id: string, props: ClusterStackProps) {
    validateClusterStackProps(props);
    super(scope, id, props);
    this.explicitAzs = props.existingVpc ? undefined : props.availabilityZones;
    if (this.explicitAzs) {
      Validations.of(this).acknowledge({
        id: 'CloudFormation-Validate::W3010',
        reason: 'The subnets use the availability zones named in the availabilityZones prop, given so that synthesis needs no zone lookup',
      });
    }
    this.clusterName = props.clusterName;
    const amiParameterName = props.amiParameterName ?? DEFAULT_AMI_PARAMETER;

    this.storage = new ClusterStorage(this, 'Storage', {
      removalPolicy: props.dataRemovalPolicy,
      objectLockRetentionDays: props.recordingsObjectLockDays,
    });
    this.network = new ClusterNetwork(this, 'Network', {
      existingVpc: props.existingVpc,
      availabilityZones: props.existingVpc ? undefined : props.availabilityZones,
      flowLogsBucket: this.storage.logsBucket,
    });
    const { vpc, publicSubnets } = this.network;
    // Always defined here: this network was not built with publicSubnetsOnly.
    const privateSubnets = this.network.privateSubnets!;

    // The instances' logs and metrics (the CloudWatch agent the AMI runs), which the alarms read.
    this.telemetry = new InstanceTelemetry(this, 'Telemetry', {
      clusterName: props.clusterName,
      retentionDays: props.logRetentionDays,
      removalPolicy: props.dataRemovalPolicy,
    });

    const zone = props.hostedZone ? importHostedZone(this, 'HostedZone', props.hostedZone, props.domainName) : undefined;
    const certificate =
      props.certificateArn !== undefined || props.createCertificate
        ? new ProxyCertificate(this, 'Certificate', {
            domainName: props.domainName,
            certificateArn: props.certificateArn,
            validationZone: props.createCertificate ? zone : undefined,
          }).certificate
        : undefined;

    this.auth = new AuthTier(this, 'Auth', {
      clusterName: props.clusterName,
      domainName: props.domainName,
      storage: this.storage,
      vpc,
      vpcSubnets: privateSubnets,
      useAcm: certificate !== undefined,
      sessionRecording: props.sessionRecording,
      caKeysInKms: props.caKeysInKms,
      amiParameterName,
      notificationsTopic: props.notificationsTopic,
      telemetry: this.telemetry,
      ...props.auth,
    });

    this.proxy = new ProxyTier(this, 'Proxy', {
      clusterName: props.clusterName,
      domainName: props.domainName,
      authServerAddress: this.auth.loadBalancer.loadBalancerDnsName,
      key: this.storage.key,
      vpc,
      publicSubnets,
      privateSubnets,
      certificate,
      allowedCidrs: props.allowedCidrs,
      amiParameterName,
      notificationsTopic: props.notificationsTopic,
      telemetry: this.telemetry,
      accessLogsBucket: this.storage.logsBucket,
      ...props.proxy,
    });

    this.nodes = new NodeTier(this, 'Nodes', {
      clusterName: props.clusterName,
      domainName: props.domainName,
      authServerAddress: this.auth.loadBalancer.loadBalancerDnsName,
      key: this.storage.key,
      vpc,
      vpcSubnets: privateSubnets,
      proxies: this.proxy.securityGroup,
      amiParameterName,
      notificationsTopic: props.notificationsTopic,
      telemetry: this.telemetry,
      ...props.node,
    });

    this.controlPlane = new ControlPlane(this, 'ControlPlane', {
      clusterName: props.clusterName,
      stateTable: this.storage.stateTable,
      stateTableKey: this.storage.key,
      // The same key the auth tier is given as TELEPORT_SSM_KEY_ARN and the proxies and nodes decrypt with.
      ssmKey: this.storage.key,
      autoScalingGroups: [this.auth.instances.autoScalingGroup, this.proxy.instances.autoScalingGroup, this.nodes.instances.autoScalingGroup],
    });

    // CloudFormation creates and updates the auth group first: a new image or version reaches the
    // proxies and nodes only once every auth server runs it and signalled healthy (and a failure
    // there rolls the stack back before any proxy or node is touched).
    const authGroup = this.auth.instances.autoScalingGroup.node.defaultChild as CfnResource;
    for (const tier of [this.proxy, this.nodes]) (tier.instances.autoScalingGroup.node.defaultChild as CfnResource).addResourceDependency(authGroup);

    this.auth.allowClient(this.proxy.securityGroup, 'auth API from the proxies');
    this.auth.allowClient(this.nodes.securityGroup, 'auth API from the nodes (join, heartbeats, audit)');

    if (props.hostedZone) {
      new ProxyDns(this, 'Dns', {
        zone: props.hostedZone,
        domainName: props.domainName,
        loadBalancer: this.proxy.webLoadBalancer,
      });
    }

    this.monitoring = new ClusterMonitoring(this, 'Monitoring', {
      clusterName: props.clusterName,
      targetGroups: (
        [
          ['auth', this.auth.instances],
          ['proxy', this.proxy.instances],
        ] as const
      ).flatMap(([tier, group]) =>
        group.targetGroups.map((targetGroup) => ({ label: `${tier} ${(targetGroup.node.defaultChild as elbv2.CfnTargetGroup).port}`, targetGroup })),
      ),
      // Every function of the stack: the control plane's and the custom-resource providers'.
      functions: this.node.findAll().filter((c): c is lambda.Function => c instanceof lambda.Function),
      tables: [this.storage.stateTable, this.storage.eventsTable],
      instanceMetrics: this.telemetry,
      alarmEmail: props.alarmEmail,
    });

    new CfnOutput(this, 'ProxyUrl', { value: `https://${props.domainName}`, description: 'The cluster URL: web UI and tsh --proxy address' });
    new CfnOutput(this, 'ProxyLoadBalancer', {
      value: this.proxy.webLoadBalancer.loadBalancerDnsName,
      description: 'Point the proxy domain here when no hosted zone is given',
    });
    new CfnOutput(this, 'ProxyNetworkLoadBalancer', {
      value: this.proxy.networkLoadBalancer.loadBalancerDnsName,
      description: `The proxy's public TCP listeners: ${this.proxy.nlbPorts.join(', ')}`,
    });
    new CfnOutput(this, 'AuthAutoScalingGroupName', { value: this.auth.instances.autoScalingGroup.autoScalingGroupName });
    new CfnOutput(this, 'ShellCommand', {
      value: groupShellCommand(this, this.auth.instances.autoScalingGroup.autoScalingGroupName),
      description: 'A shell on an in-service auth server through Session Manager (no SSH key or open port 22)',
    });
    new CfnOutput(this, 'FirstUserCommand', {
      value: FIRST_USER_COMMAND,
      description: 'Run in that shell once the auth tier is up to create the first user; open the sign-up URL it prints',
    });
    new CfnOutput(this, 'AuthLoadBalancer', { value: this.auth.loadBalancer.loadBalancerDnsName });
    new CfnOutput(this, 'SsmParameterPrefix', { value: SsmPaths.prefix(props.clusterName) });
    for (const role of JOIN_ROLES) {
      new CfnOutput(this, `SsmTokenPath${role[0].toUpperCase()}${role.slice(1)}`, { value: SsmPaths.token(props.clusterName, role) });
    }
    new CfnOutput(this, 'SsmCaPinPath', { value: SsmPaths.caPin(props.clusterName) });
    new CfnOutput(this, 'StateTableName', { value: this.storage.stateTable.tableName });
    new CfnOutput(this, 'EventsTableName', { value: this.storage.eventsTable.tableName });
    new CfnOutput(this, 'RecordingsBucketName', { value: this.storage.recordingsBucket.bucketName });
    new CfnOutput(this, 'TokenRotatorFunctionName', {
      value: this.controlPlane.rotator.functionName,
      description: 'Invoke to rotate the join tokens and publish the CA pin now (e.g. once the auth tier is up)',
    });
    new CfnOutput(this, 'KeyArn', { value: this.storage.key.keyArn });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.monitoring.topic.topicArn, description: 'Every alarm of the cluster notifies this SNS topic' });
    new CfnOutput(this, 'LogGroupName', { value: this.telemetry.logGroup.logGroupName, description: "The instances' teleport logs (stream <instance id>/<unit>)" });
    new CfnOutput(this, 'DashboardName', { value: this.monitoring.dashboard.dashboardName, description: 'The CloudWatch dashboard of the cluster' });
  }

  /**
   * The zones given in props, so that a stack with a concrete account and region never asks
   * CDK to look them up (which needs credentials at synth time).
   */
  override get availabilityZones(): string[] {
    return this.explicitAzs ?? super.availabilityZones;
  }
}
