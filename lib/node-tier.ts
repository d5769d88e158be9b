/**
 * `NodeTier`: SSH nodes (3022) in private subnets. Port 3022 is reachable only from the
 * proxy tier's security group; nodes join the cluster through the auth load balancer with the
 * node token and CA pin they read from SSM.
 */
import { Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';
import { ConfVars } from '../runtime/contract/aws';
import { Ports } from '../runtime/contract/ports';
import { instanceRole, joinStatements } from './iam';
import { instanceSecurityGroup, InstanceSettings, TeleportAutoScalingGroup } from './teleport-asg';
import { checkServed } from './validation';

/** Properties of {@link NodeTier}. */
export interface NodeTierProps extends InstanceSettings {
  /** The cluster name (SSM path segment). */
  readonly clusterName: string;
  /** The proxy's public DNS name (`TELEPORT_DOMAIN_NAME`). */
  readonly domainName: string;
  /** DNS name of the auth load balancer (`TELEPORT_AUTH_SERVER_LB`). */
  readonly authServerAddress: string;
  /** Key encrypting the SecureString join tokens in SSM. */
  readonly key: kms.IKey;
  /** VPC of the instances. */
  readonly vpc: ec2.IVpc;
  /** Private subnets for the instances. */
  readonly vpcSubnets: ec2.SubnetSelection;
  /** The proxies: the only peers allowed to connect to 3022. */
  readonly proxies: ec2.IConnectable;

  /**
   * EC2 instance type.
   *
   * @default 't3.small'
   */
  readonly instanceType?: string;

  /**
   * Smallest number of nodes; at least 1.
   *
   * @default 1
   */
  readonly minCapacity?: number;

  /**
   * Largest number of nodes.
   *
   * @default 10
   */
  readonly maxCapacity?: number;
}

/** The SSH nodes and their instance role. */
export class NodeTier extends Construct {
  public readonly role: iam.Role;
  public readonly securityGroup: ec2.SecurityGroup;
  public readonly instances: TeleportAutoScalingGroup;

  constructor(scope: Construct, id: string, props: NodeTierProps) {
    super(scope, id);
    this.role = instanceRole(this, `Teleport nodes of cluster ${props.clusterName}`, [...joinStatements(this, props.clusterName, 'node', props.key), ...(props.telemetry?.statements() ?? [])], { signalsStack: true });

    this.securityGroup = instanceSecurityGroup(this, props.vpc, 'Teleport nodes: 3022 from the proxies only; HTTPS out', 'HTTPS to AWS APIs (SSM, KMS)');
    this.securityGroup.connections.allowFrom(props.proxies, ec2.Port.tcp(checkServed('node', Ports.node, 'the nodes\' security group')), 'SSH from the proxies');

    this.instances = new TeleportAutoScalingGroup(this, 'Instances', {
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
      amiParameterName: props.amiParameterName,
      rootVolumeSizeGiB: props.rootVolumeSizeGiB,
      rootDeviceName: props.rootDeviceName,
      notificationsTopic: props.notificationsTopic,
      telemetry: props.telemetry,
      teleportRole: 'node',
      instanceType: props.instanceType ?? 't3.small',
      role: this.role,
      securityGroup: this.securityGroup,
      minCapacity: props.minCapacity ?? 1,
      maxCapacity: props.maxCapacity ?? 10,
      elbHealthCheck: false,
      conf: {
        [ConfVars.region]: Stack.of(this).region,
        [ConfVars.clusterName]: props.clusterName,
        [ConfVars.domainName]: props.domainName,
        [ConfVars.authServerLb]: props.authServerAddress,
      },
    });
  }
}
