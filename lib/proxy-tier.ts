/**
 * `ProxyTier`: the proxies in private subnets behind a public Network Load Balancer, which
 * publishes exactly the ports the proxy runtime serves (`SERVED_PORTS.proxy` in
 * runtime/contract/ports.ts: SSH 3023, reverse tunnels 3024 and web 3080; no Kubernetes on 3026
 * until its server exists). SSH passes through on its own port. The web UI/API is published
 * on 443: with an ACM certificate through an Application Load Balancer that terminates TLS with a
 * modern policy and re-encrypts to 3080; without one the NLB passes 443 through to 3080 and the
 * proxy terminates TLS itself. Both paths health-check `/webapi/ping`.
 */
import { Duration, Stack, Token, Validations } from 'aws-cdk-lib';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { ConfVars } from '../runtime/contract/aws';
import { Ports, SERVED_PORTS } from '../runtime/contract/ports';
import { instanceRole, joinStatements } from './iam';
import { instanceSecurityGroup, InstanceSettings, TeleportAutoScalingGroup } from './teleport-asg';
import { checkCidr, checkServed } from './validation';

/** The health check path of the proxy's web listener (cheap JSON, no login page rendering). */
export const WEB_HEALTH_CHECK_PATH = '/webapi/ping';
/** How load balancers check a proxy's web listener (3080, HTTPS with the proxy's own certificate). */
export const WEB_HEALTH_CHECK: elbv2.HealthCheck = {
  protocol: elbv2.Protocol.HTTPS,
  path: WEB_HEALTH_CHECK_PATH,
  port: String(Ports.web),
  interval: Duration.seconds(15),
  healthyThresholdCount: 2,
  unhealthyThresholdCount: 3,
};

/** The public HTTPS port of the web UI/API. */
export const PUBLIC_WEB_PORT = 443;

/** Properties of {@link ProxyTier}. */
export interface ProxyTierProps extends InstanceSettings {
  /** The cluster name (SSM path segment and resource-name prefix). */
  readonly clusterName: string;
  /** The proxy's public DNS name (`TELEPORT_DOMAIN_NAME`, `TELEPORT_EXTERNAL_HOSTNAME`). */
  readonly domainName: string;
  /** DNS name of the auth load balancer (`TELEPORT_AUTH_SERVER_LB`). */
  readonly authServerAddress: string;
  /** Key encrypting the SecureString join tokens in SSM. */
  readonly key: kms.IKey;
  /** VPC of the instances and load balancers. */
  readonly vpc: ec2.IVpc;
  /** Public subnets for the internet-facing load balancers. */
  readonly publicSubnets: ec2.SubnetSelection;
  /** Private subnets for the instances. */
  readonly privateSubnets: ec2.SubnetSelection;

  /**
   * Certificate for the web listener; when given, an ALB terminates TLS on 443.
   *
   * @default - no certificate: the NLB passes 443 through to the proxy's own TLS on 3080
   */
  readonly certificate?: acm.ICertificate;

  /**
   * IPv4 CIDR blocks allowed to reach the public listeners.
   *
   * @default ['0.0.0.0/0']
   */
  readonly allowedCidrs?: string[];

  /**
   * EC2 instance type.
   *
   * @default 't3.medium'
   */
  readonly instanceType?: string;

  /**
   * Smallest number of proxies; at least 1.
   *
   * @default 2
   */
  readonly minCapacity?: number;

  /**
   * Largest number of proxies.
   *
   * @default 4
   */
  readonly maxCapacity?: number;

  /**
   * Bucket receiving the ALB's access logs (only when the stack's region is known at synth
   * time; NLBs with TCP listeners write no access logs).
   *
   * @default - no access logs
   */
  readonly accessLogsBucket?: s3.IBucket;
}

/** The proxies, their public load balancers and their instance role. */
export class ProxyTier extends Construct {
  public readonly role: iam.Role;
  public readonly securityGroup: ec2.SecurityGroup;
  /** Public NLB: 3023, and 443 pass-through to 3080 when there is no certificate. */
  public readonly networkLoadBalancer: elbv2.NetworkLoadBalancer;
  public readonly networkLoadBalancerSecurityGroup: ec2.SecurityGroup;
  /** Public ALB on 443 with the ACM certificate, when one is given. */
  public readonly applicationLoadBalancer?: elbv2.ApplicationLoadBalancer;
  /** Where the proxy's DNS name should point: the ALB with a certificate, else the NLB. */
  public readonly webLoadBalancer: elbv2.ILoadBalancerV2 & { readonly loadBalancerCanonicalHostedZoneId: string };
  public readonly instances: TeleportAutoScalingGroup;
  /** The TCP ports the NLB publishes. */
  public readonly nlbPorts: number[];

  constructor(scope: Construct, id: string, props: ProxyTierProps) {
    super(scope, id);
    const allowedCidrs = props.allowedCidrs ?? ['0.0.0.0/0'];
    if (allowedCidrs.length === 0) throw new Error('allowedCidrs must list at least one CIDR block');
    allowedCidrs.forEach((c) => checkCidr('allowedCidrs', c));
    const useAcm = props.certificate !== undefined;
    const stack = Stack.of(this);

    this.role = instanceRole(this, `Teleport proxies of cluster ${props.clusterName}`, [...joinStatements(this, props.clusterName, 'proxy', props.key), ...(props.telemetry?.statements() ?? [])], { signalsStack: true, readsTargetHealth: true });

    this.securityGroup = instanceSecurityGroup(this, props.vpc, 'Teleport proxies: listener ports from their load balancers only; HTTPS out', 'HTTPS to AWS APIs (SSM, KMS)');

    this.networkLoadBalancerSecurityGroup = new ec2.SecurityGroup(this, 'NlbSecurityGroup', {
      vpc: props.vpc,
      description: 'Teleport proxy NLB: public listeners from the allowed CIDRs',
      allowAllOutbound: false,
    });
    this.networkLoadBalancer = new elbv2.NetworkLoadBalancer(this, 'Nlb', {
      vpc: props.vpc,
      vpcSubnets: props.publicSubnets,
      loadBalancerName: `${props.clusterName}-proxy`,
      internetFacing: true,
      crossZoneEnabled: true,
      securityGroups: [this.networkLoadBalancerSecurityGroup],
    });
    Validations.of(this.networkLoadBalancer).acknowledge({
      id: 'AwsSolutions-ELB2',
      reason: 'NLB access logs are only written for TLS listeners; every listener of this load balancer is TCP pass-through (the proxy terminates TLS/SSH itself).',
    });

    this.instances = new TeleportAutoScalingGroup(this, 'Instances', {
      vpc: props.vpc,
      vpcSubnets: props.privateSubnets,
      amiParameterName: props.amiParameterName,
      rootVolumeSizeGiB: props.rootVolumeSizeGiB,
      rootDeviceName: props.rootDeviceName,
      notificationsTopic: props.notificationsTopic,
      telemetry: props.telemetry,
      teleportRole: 'proxy',
      instanceType: props.instanceType ?? 't3.medium',
      role: this.role,
      securityGroup: this.securityGroup,
      minCapacity: props.minCapacity ?? 2,
      maxCapacity: props.maxCapacity ?? 4,
      conf: {
        [ConfVars.region]: stack.region,
        [ConfVars.clusterName]: props.clusterName,
        [ConfVars.domainName]: props.domainName,
        [ConfVars.externalHostname]: props.domainName,
        [ConfVars.externalPort]: String(PUBLIC_WEB_PORT),
        [ConfVars.authServerLb]: props.authServerAddress,
        [ConfVars.proxyServerLb]: this.networkLoadBalancer.loadBalancerDnsName,
        [ConfVars.useAcm]: String(useAcm),
      },
    });
    const asg = this.instances.autoScalingGroup;

    // Every port the proxy serves besides the web port passes through the NLB on its own number.
    const tcpPorts = SERVED_PORTS.proxy.filter((port) => port !== Ports.web);
    for (const port of tcpPorts) {
      this.addNlbService(port, port, asg, { protocol: elbv2.Protocol.TCP });
    }
    this.nlbPorts = [...tcpPorts];

    if (props.certificate) {
      const albSg = new ec2.SecurityGroup(this, 'AlbSecurityGroup', {
        vpc: props.vpc,
        description: 'Teleport proxy ALB: HTTPS from the allowed CIDRs',
        allowAllOutbound: false,
      });
      for (const cidr of allowedCidrs) albSg.addIngressRule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(PUBLIC_WEB_PORT), 'HTTPS (web UI/API)');
      const alb = new elbv2.ApplicationLoadBalancer(this, 'Alb', {
        vpc: props.vpc,
        vpcSubnets: props.publicSubnets,
        loadBalancerName: `${props.clusterName}-web`,
        internetFacing: true,
        securityGroup: albSg,
        dropInvalidHeaderFields: true,
      });
      if (props.accessLogsBucket && !Token.isUnresolved(stack.region)) {
        alb.logAccessLogs(props.accessLogsBucket, 'proxy-alb');
      } else {
        Validations.of(alb).acknowledge({
          id: 'AwsSolutions-ELB2',
          reason: 'ALB access logging needs the region at synth time (the ELB log-delivery account differs per region); deploy with -c region=<region> to turn it on.',
        });
      }
      const listener = alb.addListener('Https', {
        port: PUBLIC_WEB_PORT,
        protocol: elbv2.ApplicationProtocol.HTTPS,
        certificates: [props.certificate],
        sslPolicy: elbv2.SslPolicy.RECOMMENDED_TLS,
        open: false,
      });
      const web = listener.addTargets('Web', {
        port: checkServed('proxy', Ports.web, 'the ALB target group'),
        protocol: elbv2.ApplicationProtocol.HTTPS,
        targets: [asg],
        healthCheck: WEB_HEALTH_CHECK,
        deregistrationDelay: Duration.seconds(30),
      });
      this.instances.signalWhenHealthyIn(web);
      this.applicationLoadBalancer = alb;
      this.webLoadBalancer = alb;
    } else {
      this.addNlbService(PUBLIC_WEB_PORT, Ports.web, asg, { protocol: elbv2.Protocol.TCP, healthCheck: WEB_HEALTH_CHECK });
      this.nlbPorts.push(PUBLIC_WEB_PORT);
      this.webLoadBalancer = this.networkLoadBalancer;
    }

    for (const cidr of allowedCidrs) {
      for (const port of this.nlbPorts) {
        this.networkLoadBalancerSecurityGroup.addIngressRule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(port), `proxy listener ${port}`);
      }
    }
    if (allowedCidrs.includes('0.0.0.0/0')) {
      const reason =
        'The proxy is the cluster\'s public front door (allowedCidrs includes 0.0.0.0/0): users connect from anywhere and authenticate with short-lived certificates.';
      Validations.of(this.networkLoadBalancerSecurityGroup).acknowledge({ id: 'AwsSolutions-EC23', reason });
      if (this.applicationLoadBalancer) {
        Validations.of(this.applicationLoadBalancer.connections.securityGroups[0]).acknowledge({ id: 'AwsSolutions-EC23', reason });
      }
    }
  }

  private addNlbService(
    lbPort: number,
    targetPort: number,
    asg: TeleportAutoScalingGroup['autoScalingGroup'],
    opts: { protocol: elbv2.Protocol; healthCheck?: elbv2.HealthCheck },
  ): void {
    checkServed('proxy', targetPort, `the NLB listener on ${lbPort}`);
    const listener = this.networkLoadBalancer.addListener(`Port${lbPort}`, { port: lbPort, protocol: opts.protocol });
    const targetGroup = listener.addTargets(`Port${lbPort}`, {
      port: targetPort,
      protocol: opts.protocol,
      targets: [asg],
      deregistrationDelay: Duration.seconds(30),
      healthCheck: opts.healthCheck ?? { protocol: elbv2.Protocol.TCP, interval: Duration.seconds(10) },
    });
    this.instances.signalWhenHealthyIn(targetGroup);
    this.networkLoadBalancerSecurityGroup.connections.allowTo(this.securityGroup, ec2.Port.tcp(targetPort), `NLB to proxy ${targetPort}`);
  }
}
