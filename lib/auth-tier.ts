/**
 * `AuthTier`: the auth servers (the cluster's CA and API on 3025) in private subnets behind
 * an internal Network Load Balancer. Only the principals given to {@link AuthTier.allowClient}
 * (the proxy and node tiers) can reach 3025, through the load balancer's security group.
 */
import { Duration, Stack, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { ConfVars, SsmPaths } from '../runtime/contract/aws';
import { Ports } from '../runtime/contract/ports';
import { acknowledgeStorageFindings, caKeyStatements, instanceRole, nagArn, ssmParameterArn, storageStatements } from './iam';
import { ClusterStorage } from './storage';
import { instanceSecurityGroup, InstanceSettings, TeleportAutoScalingGroup } from './teleport-asg';
import { checkServed } from './validation';

// The storage actions live with the statements that use them (shared with the starter's instance).
export { AUTH_BUCKET_ACTIONS, AUTH_KMS_ACTIONS, AUTH_OBJECT_ACTIONS, AUTH_STREAM_ACTIONS, AUTH_TABLE_ACTIONS } from './iam';

/** Properties of {@link AuthTier}. */
export interface AuthTierProps extends InstanceSettings {
  /** The cluster name (`cluster_name`, SSM path segment and resource-name prefix). */
  readonly clusterName: string;
  /** The proxy's public DNS name (`TELEPORT_DOMAIN_NAME`). */
  readonly domainName: string;
  /** The tables, bucket and key the auth servers use. */
  readonly storage: ClusterStorage;
  /** VPC of the instances and the load balancer. */
  readonly vpc: ec2.IVpc;
  /** Private subnets for the instances and the internal load balancer. */
  readonly vpcSubnets: ec2.SubnetSelection;
  /** Whether the proxies sit behind an ACM certificate on an ALB (`USE_ACM`). */
  readonly useAcm: boolean;
  /** `auth_service.session_recording` (`TELEPORT_SESSION_RECORDING`). @default - node */
  readonly sessionRecording?: 'node' | 'proxy' | 'off';
  /** Make and keep the CA keys in AWS KMS, usable by this tier's role only (`TELEPORT_CA_KMS_ROLE_ARN`). @default false */
  readonly caKeysInKms?: boolean;

  /**
   * EC2 instance type.
   *
   * @default 't3.medium'
   */
  readonly instanceType?: string;

  /**
   * Smallest number of auth servers; at least 1.
   *
   * @default 2
   */
  readonly minCapacity?: number;

  /**
   * Largest number of auth servers.
   *
   * @default 4
   */
  readonly maxCapacity?: number;
}

/** The auth servers, their internal NLB on 3025 and their instance role. */
export class AuthTier extends Construct {
  public readonly role: iam.Role;
  public readonly securityGroup: ec2.SecurityGroup;
  public readonly loadBalancer: elbv2.NetworkLoadBalancer;
  /** Guards the load balancer: clients are allowed here, the instances allow only this group. */
  public readonly loadBalancerSecurityGroup: ec2.SecurityGroup;
  public readonly instances: TeleportAutoScalingGroup;

  constructor(scope: Construct, id: string, props: AuthTierProps) {
    super(scope, id);
    const { storage, clusterName } = props;

    this.role = instanceRole(this, `Teleport auth servers of cluster ${clusterName}`, this.statements(props), { signalsStack: true, readsTargetHealth: true });
    acknowledgeStorageFindings(this.role, storage);
    Validations.of(this.role).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${nagArn(this, 'ssm', `parameter${SsmPaths.prefix(clusterName)}/*`)}]`,
      reason: 'Read-only access to this cluster\'s own SSM parameters (/teleport/<cluster>/*), which the control plane writes at run time.',
    });

    this.securityGroup = instanceSecurityGroup(this, props.vpc, 'Teleport auth servers: 3025 from the auth load balancer only; HTTPS out to AWS APIs', 'HTTPS to AWS APIs (DynamoDB, S3, SSM, KMS)');

    this.loadBalancerSecurityGroup = new ec2.SecurityGroup(this, 'LoadBalancerSecurityGroup', {
      vpc: props.vpc,
      description: 'Teleport auth NLB: 3025 from cluster members',
      allowAllOutbound: false,
    });

    this.loadBalancer = new elbv2.NetworkLoadBalancer(this, 'LoadBalancer', {
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
      loadBalancerName: `${props.clusterName}-auth`,
      internetFacing: false,
      crossZoneEnabled: true,
      securityGroups: [this.loadBalancerSecurityGroup],
    });
    Validations.of(this.loadBalancer).acknowledge({
      id: 'AwsSolutions-ELB2',
      reason: 'NLB access logs are only written for TLS listeners; this load balancer has a single TCP listener (mutual TLS is end to end with the auth servers).',
    });

    this.instances = new TeleportAutoScalingGroup(this, 'Instances', {
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
      amiParameterName: props.amiParameterName,
      rootVolumeSizeGiB: props.rootVolumeSizeGiB,
      rootDeviceName: props.rootDeviceName,
      notificationsTopic: props.notificationsTopic,
      telemetry: props.telemetry,
      teleportRole: 'auth',
      instanceType: props.instanceType ?? 't3.medium',
      role: this.role,
      securityGroup: this.securityGroup,
      minCapacity: props.minCapacity ?? 2,
      maxCapacity: props.maxCapacity ?? 4,
      conf: {
        [ConfVars.region]: Stack.of(this).region,
        [ConfVars.clusterName]: clusterName,
        [ConfVars.domainName]: props.domainName,
        [ConfVars.authServerLb]: this.loadBalancer.loadBalancerDnsName,
        [ConfVars.stateTable]: storage.stateTable.tableName,
        [ConfVars.eventsTable]: storage.eventsTable.tableName,
        [ConfVars.recordingsBucket]: storage.recordingsBucket.bucketName,
        [ConfVars.ssmKeyArn]: storage.key.keyArn,
        [ConfVars.useAcm]: String(props.useAcm),
        [ConfVars.sessionRecording]: props.sessionRecording,
        [ConfVars.caKmsRoleArn]: props.caKeysInKms ? this.role.roleArn : undefined,
      },
    });

    const listener = this.loadBalancer.addListener('Auth', { port: checkServed('auth', Ports.auth, 'the auth NLB listener'), protocol: elbv2.Protocol.TCP });
    const targetGroup = listener.addTargets('Auth', {
      port: Ports.auth,
      protocol: elbv2.Protocol.TCP,
      targets: [this.instances.autoScalingGroup],
      deregistrationDelay: Duration.seconds(30),
      healthCheck: { protocol: elbv2.Protocol.TCP, interval: Duration.seconds(10), healthyThresholdCount: 2, unhealthyThresholdCount: 2 },
    });
    this.instances.signalWhenHealthyIn(targetGroup);
    this.loadBalancerSecurityGroup.connections.allowTo(this.securityGroup, ec2.Port.tcp(Ports.auth), 'NLB to auth servers (traffic and health checks)');
  }

  /** Let `client` (the proxy or node tier) reach the auth API through the load balancer. */
  public allowClient(client: ec2.IConnectable, description: string): void {
    this.loadBalancerSecurityGroup.connections.allowFrom(client, ec2.Port.tcp(Ports.auth), description);
  }

  private statements(props: AuthTierProps): iam.PolicyStatement[] {
    return [
      ...storageStatements(props.storage),
      ...(props.telemetry?.statements() ?? []),
      ...(props.caKeysInKms ? caKeyStatements() : []),
      new iam.PolicyStatement({
        sid: 'ClusterParameters',
        actions: ['ssm:GetParameter', 'ssm:GetParameters', 'ssm:GetParametersByPath'],
        // GetParametersByPath is authorised on the path itself; the others on each parameter under it.
        resources: [
          ssmParameterArn(this, SsmPaths.prefix(props.clusterName)),
          ssmParameterArn(this, `${SsmPaths.prefix(props.clusterName)}/*`),
        ],
      }),
    ];
  }
}
