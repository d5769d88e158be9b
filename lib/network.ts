/**
 * `ClusterNetwork`: the VPC the cluster runs in. By default a new VPC with public and
 * private-with-egress subnets in two availability zones (or, with `publicSubnetsOnly`, public
 * subnets only and no NAT gateways, for the single-instance starter); or an existing VPC given
 * by ids (`Vpc.fromVpcAttributes`, never a lookup, so `cdk synth` needs no AWS credentials).
 *
 * A new VPC gets gateway endpoints for S3 and DynamoDB (free): the cluster's state, audit events
 * and session recordings then never pass through a NAT gateway, which bills per gigabyte. Session
 * Manager and SSM reach their regional endpoints through the NAT gateways (or, with public subnets
 * only, the instances' public addresses), so no interface endpoint is needed. An existing VPC keeps
 * the endpoints its owner gave it.
 */
import { Stack, Token, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { checkCidr, checkInt, checkSubnetIds, checkVpcId } from './validation';

/** An existing VPC by ids, of which only the public subnets are used (the starter). */
export interface ExistingPublicVpcProps {
  /** The VPC id (`vpc-...`). */
  readonly vpcId: string;
  /** Availability zones of the subnets, in the same order as the subnet ids (e.g. `['eu-west-1a', 'eu-west-1b']`). */
  readonly availabilityZones: string[];
  /** Public subnets (routed to an internet gateway) for the internet-facing load balancers, one per zone. */
  readonly publicSubnetIds: string[];
}

/** An existing VPC, by ids. */
export interface ExistingVpcProps extends ExistingPublicVpcProps {
  /** Private subnets with outbound internet access (NAT) for the instances, one per zone. */
  readonly privateSubnetIds: string[];
}

/** Properties of {@link ClusterNetwork}. */
export interface ClusterNetworkProps {
  /**
   * Use this existing VPC instead of creating one. Its `privateSubnetIds` are required unless
   * `publicSubnetsOnly` is set.
   *
   * @default - a new VPC
   */
  readonly existingVpc?: ExistingPublicVpcProps & { readonly privateSubnetIds?: string[] };

  /**
   * Use public subnets only: a new VPC gets no private subnets and no NAT gateways, and an
   * existing VPC needs no private subnet ids (for instances that have public addresses).
   *
   * @default false
   */
  readonly publicSubnetsOnly?: boolean;

  /**
   * CIDR block of the new VPC (ignored with `existingVpc`).
   *
   * @default '10.20.0.0/16'
   */
  readonly cidr?: string;

  /**
   * Number of availability zones of the new VPC (ignored with `existingVpc` or `availabilityZones`).
   *
   * @default 2
   */
  readonly maxAzs?: number;

  /**
   * Availability zones of the new VPC, by name. Required when the stack has a concrete account
   * and region: CDK would otherwise look the zones up at synth time, which needs credentials.
   *
   * @default - the first `maxAzs` zones of the region, chosen at deploy time (`Fn::GetAZs`)
   */
  readonly availabilityZones?: string[];

  /**
   * NAT gateways of the new VPC; one per zone keeps outbound access when a zone fails.
   * Not allowed with `publicSubnetsOnly`.
   *
   * @default - one per availability zone (none with `publicSubnetsOnly`)
   */
  readonly natGateways?: number;

  /**
   * Bucket receiving the new VPC's flow logs (under `vpc-flow-logs/`).
   *
   * @default - no flow logs
   */
  readonly flowLogsBucket?: s3.IBucket;
}

/** The cluster's VPC and the subnet selections the tiers use. */
export class ClusterNetwork extends Construct {
  public readonly vpc: ec2.IVpc;
  /** Where internet-facing load balancers go. */
  public readonly publicSubnets: ec2.SubnetSelection;
  /** Where instances and internal load balancers go; undefined with `publicSubnetsOnly`. */
  public readonly privateSubnets?: ec2.SubnetSelection;

  constructor(scope: Construct, id: string, props: ClusterNetworkProps = {}) {
    super(scope, id);
    const publicOnly = props.publicSubnetsOnly ?? false;
    const existing = props.existingVpc;
    if (existing) {
      validateExistingVpc(existing, { privateSubnets: !publicOnly });
      this.vpc = ec2.Vpc.fromVpcAttributes(this, 'Vpc', {
        vpcId: existing.vpcId,
        availabilityZones: existing.availabilityZones,
        publicSubnetIds: existing.publicSubnetIds,
        ...(publicOnly ? {} : { privateSubnetIds: existing.privateSubnetIds }),
      });
      Validations.of(this).acknowledge({
        id: 'Annotation::@aws-cdk/aws-ec2:noSubnetRouteTableId',
        reason: 'The given subnets are only placed into (instances, load balancers); nothing here reads or adds routes to their route tables.',
      });
      this.publicSubnets = { subnets: this.vpc.publicSubnets };
      this.privateSubnets = publicOnly ? undefined : { subnets: this.vpc.privateSubnets };
      return;
    }

    const cidr = props.cidr ?? '10.20.0.0/16';
    checkCidr('cidr', cidr);
    const azs = props.availabilityZones;
    if (azs !== undefined) {
      if (azs.length < 2 || azs.some((z) => !/^[a-z]{2}(-[a-z]+)+-\d[a-z]$/.test(z))) {
        throw new Error(`availabilityZones must name at least two zones such as eu-west-1a, got [${azs.join(', ')}]`);
      }
    } else if (!Token.isUnresolved(Stack.of(this).region) && !Token.isUnresolved(Stack.of(this).account)) {
      throw new Error('availabilityZones must be given for a new VPC when the stack has an account and region (no synth-time lookups)');
    }
    const maxAzs = azs?.length ?? props.maxAzs ?? 2;
    checkInt('maxAzs', maxAzs, 2, 6);
    if (props.natGateways !== undefined) {
      if (publicOnly) throw new Error('natGateways cannot be given with publicSubnetsOnly (there are no private subnets to route)');
      checkInt('natGateways', props.natGateways, 1, maxAzs);
    }

    const vpc = new ec2.Vpc(this, 'Vpc', {
      ipAddresses: ec2.IpAddresses.cidr(cidr),
      ...(azs ? { availabilityZones: azs } : { maxAzs }),
      natGateways: publicOnly ? 0 : (props.natGateways ?? maxAzs),
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24, mapPublicIpOnLaunch: false },
        ...(publicOnly ? [] : [{ name: 'private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 }]),
      ],
      // true would add a custom-resource Lambda (an asset to publish); nothing here uses the default SG.
      restrictDefaultSecurityGroup: false,
    });
    // Into every route table of the VPC (public and private subnets).
    vpc.addGatewayEndpoint('S3Endpoint', { service: ec2.GatewayVpcEndpointAwsService.S3 });
    vpc.addGatewayEndpoint('DynamoDbEndpoint', { service: ec2.GatewayVpcEndpointAwsService.DYNAMODB });
    if (props.flowLogsBucket) {
      vpc.addFlowLog('FlowLogs', {
        destination: ec2.FlowLogDestination.toS3(props.flowLogsBucket, 'vpc-flow-logs/'),
        trafficType: ec2.FlowLogTrafficType.ALL,
      });
    }
    this.vpc = vpc;
    this.publicSubnets = { subnetType: ec2.SubnetType.PUBLIC };
    this.privateSubnets = publicOnly ? undefined : { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };
  }
}

/**
 * Throws an Error naming the first invalid field of `existing`. Private subnets are checked
 * (and required) unless `opts.privateSubnets` is false, when they are ignored.
 */
export function validateExistingVpc(
  existing: ExistingPublicVpcProps & { readonly privateSubnetIds?: string[] },
  opts: { readonly privateSubnets: boolean } = { privateSubnets: true },
): void {
  checkVpcId('existingVpc.vpcId', existing.vpcId);
  checkSubnetIds('existingVpc.publicSubnetIds', existing.publicSubnetIds);
  const n = existing.availabilityZones.length;
  if (!opts.privateSubnets) {
    if (existing.publicSubnetIds.length !== n) {
      throw new Error(`existingVpc: give one public subnet per availability zone (${n} zones, ${existing.publicSubnetIds.length} public subnets)`);
    }
    return;
  }
  if (existing.privateSubnetIds === undefined) throw new Error('existingVpc.privateSubnetIds is required (the instances run in private subnets)');
  checkSubnetIds('existingVpc.privateSubnetIds', existing.privateSubnetIds);
  if (existing.publicSubnetIds.length !== n || existing.privateSubnetIds.length !== n) {
    throw new Error(
      `existingVpc: give one public and one private subnet per availability zone (${n} zones, ` +
        `${existing.publicSubnetIds.length} public, ${existing.privateSubnetIds.length} private subnets)`,
    );
  }
}
