/**
 * `TeleportAutoScalingGroup`: one tier's instances — a launch template (IMDSv2 required,
 * encrypted gp3 root volume, AMI id from an SSM parameter resolved at deploy time, user data
 * writing `/etc/teleport.d/conf`) and an auto scaling group with ELB health checks. Creation and
 * rolling updates are health-gated: each new instance signals CloudFormation (`teleport
 * signal-ready`, the AMI's teleport-signal unit) once its role passes the checks its load
 * balancer makes, and the stack waits for that signal before it counts the instance or replaces
 * the next one, always keeping an instance in service.
 */
import { Duration, Lazy, Stack, Token, Validations } from 'aws-cdk-lib';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { CONF_FILE, ConfVar, ConfVars, InstanceRole } from '../runtime/contract/aws';
import type { InstanceTelemetry } from './telemetry';
import { checkInstanceType, checkInt, checkSsmParameterName } from './validation';

/** How long CloudFormation waits for an instance's readiness signal (its boot, join and first health checks). */
export const SIGNAL_TIMEOUT = Duration.minutes(25);

/** Settings every tier's instances share. */
export interface InstanceSettings {
  /**
   * SSM parameter holding the AMI id (the Packer-built Teleport AMI). Resolved by
   * CloudFormation at deploy time (`AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>`), so
   * publishing a new AMI and redeploying rolls the instances.
   */
  readonly amiParameterName: string;

  /**
   * Root volume size in GiB (gp3, encrypted).
   *
   * @default 20
   */
  readonly rootVolumeSizeGiB?: number;

  /**
   * Device name of the AMI's root volume.
   *
   * @default '/dev/xvda'
   */
  readonly rootDeviceName?: string;

  /**
   * SNS topic receiving the groups' launch, terminate and error notifications.
   *
   * @default - no notifications
   */
  readonly notificationsTopic?: sns.ITopic;

  /**
   * Where the instances' CloudWatch agent sends their logs and metrics (the conf variables naming
   * the groups; the tier's role gets {@link InstanceTelemetry.statements}).
   *
   * @default - no agent runs: logs and metrics stay on the instances
   */
  readonly telemetry?: InstanceTelemetry;
}

/** Properties of {@link TeleportAutoScalingGroup}. */
export interface TeleportAutoScalingGroupProps extends InstanceSettings {
  /** VPC of the instances. */
  readonly vpc: ec2.IVpc;
  /** Subnets of the instances. */
  readonly vpcSubnets: ec2.SubnetSelection;
  /** The `TELEPORT_ROLE` these instances take. */
  readonly teleportRole: InstanceRole;
  /** `/etc/teleport.d/conf` variables besides `TELEPORT_ROLE`. */
  readonly conf: Partial<Record<ConfVar, string>>;
  /** EC2 instance type, e.g. `t3.medium`. */
  readonly instanceType: string;
  /** Instance role (an instance profile is created for it). */
  readonly role: iam.IRole;
  /** Security group of the instances. */
  readonly securityGroup: ec2.ISecurityGroup;
  /** Smallest number of instances; at least 1. */
  readonly minCapacity: number;
  /** Largest number of instances; at least 2 so a rolling update can keep one in service. */
  readonly maxCapacity: number;

  /**
   * Replace instances that fail the load balancer health check (not only the EC2 status
   * check). Only meaningful when the group is attached to a load balancer.
   *
   * @default true
   */
  readonly elbHealthCheck?: boolean;
}

/** A tier's launch template and auto scaling group. */
export class TeleportAutoScalingGroup extends Construct {
  public readonly launchTemplate: ec2.LaunchTemplate;
  public readonly autoScalingGroup: autoscaling.AutoScalingGroup;
  public readonly userData: ec2.UserData;
  private readonly readinessTargetGroups: elbv2.ITargetGroup[] = [];

  constructor(scope: Construct, id: string, props: TeleportAutoScalingGroupProps) {
    super(scope, id);
    checkSsmParameterName('amiParameterName', props.amiParameterName);
    checkInstanceType('instanceType', props.instanceType);
    checkInt('minCapacity', props.minCapacity, 1);
    checkInt('maxCapacity', props.maxCapacity, Math.max(2, props.minCapacity));
    const volumeSize = props.rootVolumeSizeGiB ?? 20;
    checkInt('rootVolumeSizeGiB', volumeSize, 8, 16384);

    this.userData = ec2.UserData.forLinux({ shebang: '#!/bin/bash' });
    const stack = Stack.of(this);
    // Rendered at synthesis, once the group (its logical id) and its target groups exist: the
    // instance signals this group once each target group reports it healthy.
    this.userData.addCommands(
      Lazy.string({
        produce: () =>
          confCommands({
            [`TELEPORT_ROLE`]: props.teleportRole,
            ...props.conf,
            ...props.telemetry?.conf,
            [ConfVars.cfnStack]: stack.stackName,
            [ConfVars.cfnResource]: stack.getLogicalId(this.autoScalingGroup.node.defaultChild as autoscaling.CfnAutoScalingGroup),
            ...(this.readinessTargetGroups.length > 0 ? { [ConfVars.targetGroups]: this.readinessTargetGroups.map((tg) => tg.targetGroupArn).join(',') } : {}),
          }).join('\n'),
      }),
    );
    this.launchTemplate = new ec2.LaunchTemplate(this, 'LaunchTemplate', {
      machineImage: ec2.MachineImage.fromSsmParameter(props.amiParameterName, {
        os: ec2.OperatingSystemType.LINUX,
        cachedInContext: false,
      }),
      instanceType: new ec2.InstanceType(props.instanceType),
      role: props.role,
      securityGroup: props.securityGroup,
      userData: this.userData,
      requireImdsv2: true,
      httpPutResponseHopLimit: 1,
      associatePublicIpAddress: false,
      ebsOptimized: true,
      blockDevices: [
        {
          deviceName: props.rootDeviceName ?? '/dev/xvda',
          volume: ec2.BlockDeviceVolume.ebs(volumeSize, {
            encrypted: true,
            volumeType: ec2.EbsDeviceVolumeType.GP3,
            deleteOnTermination: true,
          }),
        },
      ],
    });

    this.autoScalingGroup = new autoscaling.AutoScalingGroup(this, 'Group', {
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
      launchTemplate: this.launchTemplate,
      minCapacity: props.minCapacity,
      maxCapacity: props.maxCapacity,
      // No desiredCapacity: the group starts at minCapacity and a redeploy never resets its size.
      healthChecks:
        props.elbHealthCheck === false
          ? autoscaling.HealthChecks.ec2({ gracePeriod: Duration.minutes(5) })
          : autoscaling.HealthChecks.withAdditionalChecks({
              additionalTypes: [autoscaling.AdditionalHealthCheckType.ELB],
              gracePeriod: Duration.minutes(5),
            }),
      // Health-gated: creation waits for MinSize signals, an update for each new instance's before the next batch.
      signals: autoscaling.Signals.waitForMinCapacity({ timeout: SIGNAL_TIMEOUT }),
      updatePolicy: autoscaling.UpdatePolicy.rollingUpdate({ maxBatchSize: 1, minInstancesInService: 1, waitOnResourceSignals: true, pauseTime: SIGNAL_TIMEOUT }),
      notifications: props.notificationsTopic ? [{ topic: props.notificationsTopic }] : undefined,
    });
    if (!props.notificationsTopic) {
      Validations.of(this.autoScalingGroup).acknowledge({
        id: 'AwsSolutions-AS3',
        reason: 'No notificationsTopic was given: scaling events stay in the group\'s activity history and CloudTrail; pass a topic to route them to alerting.',
      });
    }
  }

  /**
   * Registers the group's instances with `targetGroup` for the readiness signal: a new instance
   * signals CloudFormation only once this target group reports it healthy (`TELEPORT_TARGET_GROUP_ARNS`).
   */
  public signalWhenHealthyIn(targetGroup: elbv2.ITargetGroup): void {
    this.readinessTargetGroups.push(targetGroup);
  }

  /** The target groups the group's instances serve (every one the readiness signal waits on). */
  public get targetGroups(): readonly elbv2.ITargetGroup[] {
    return this.readinessTargetGroups;
  }
}

/** Shell lines writing `vars` as `KEY="value"` lines to {@link CONF_FILE}, mode 0600. */
export function confCommands(vars: Record<string, string | undefined>): string[] {
  const lines: string[] = [];
  for (const [name, value] of Object.entries(vars)) {
    if (value === undefined) continue;
    if (!Token.isUnresolved(value) && !/^[A-Za-z0-9._:/,@+=-]*$/.test(value)) {
      throw new Error(`conf variable ${name} has characters that are unsafe in ${CONF_FILE}: '${value}'`);
    }
    lines.push(`${name}="${value}"`);
  }
  return [
    'set -euo pipefail',
    'install -d -m 0755 /etc/teleport.d',
    `install -m 0600 /dev/null ${CONF_FILE}`,
    `cat > ${CONF_FILE} <<'TELEPORT_CONF'`,
    ...lines,
    'TELEPORT_CONF',
  ];
}

/**
 * A tier's instance security group (construct id `InstanceSecurityGroup`): nothing in until the tier
 * allows it, and out only HTTPS (the AWS APIs) plus what the tier adds.
 */
export function instanceSecurityGroup(scope: Construct, vpc: ec2.IVpc, description: string, httpsOut: string): ec2.SecurityGroup {
  const sg = new ec2.SecurityGroup(scope, 'InstanceSecurityGroup', { vpc, description, allowAllOutbound: false });
  sg.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), httpsOut);
  return sg;
}
