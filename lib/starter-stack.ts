/**
 * `StarterStack`: a whole Teleport cluster on one instance (`TELEPORT_ROLE=auth,node,proxy`,
 * the marketplace-style all-in-one) with an Elastic IP in a public subnet. State is kept on the
 * instance's encrypted root volume (`storage: 'local'`, for trying Teleport out) or in the same
 * DynamoDB tables, S3 bucket and KMS key the HA cluster uses (`storage: 'dynamodb'`). With an
 * ACM certificate an ALB serves the web UI/API on 443 and re-encrypts to the instance's 3080;
 * SSH (3023) always goes to the Elastic IP directly. With `letsEncryptEmail` the proxy gets its
 * certificate from Let's Encrypt itself and serves the web on 443 of the Elastic IP. Only ports
 * the proxy runtime serves are opened (`servedPorts` in runtime/contract/ports.ts).
 *
 * One `ec2.Instance`, not an auto scaling group: a group would replace the instance (and with
 * it local state) whenever it judged it unhealthy. Every prop is validated before any resource
 * is defined.
 */
import { CfnOutput, Duration, Stack, Token, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as elbv2Targets from 'aws-cdk-lib/aws-elasticloadbalancingv2-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { ConfVars } from '../runtime/contract/aws';
import { Ports, servedPorts } from '../runtime/contract/ports';
import { ProxyCertificate } from './certificate';
import { FIRST_USER_COMMAND, instanceShellCommand } from './first-user';
import { importHostedZone, ProxyDns } from './dns';
import { acknowledgeStorageFindings, caKeyStatements, instanceRole, storageStatements } from './iam';
import { ClusterNetwork, ExistingPublicVpcProps, validateExistingVpc } from './network';
import { PUBLIC_WEB_PORT, WEB_HEALTH_CHECK } from './proxy-tier';
import { ClusterStorage } from './storage';
import { confCommands, instanceSecurityGroup } from './teleport-asg';
import { InstanceTelemetry } from './telemetry';
import { DEFAULT_AMI_PARAMETER, TeleportStackProps, validateTeleportStackProps } from './stack-props';
import { checkInstanceType, checkInt, checkServed } from './validation';

/** Where the starter keeps the cluster state, audit events and session recordings. */
export const STARTER_STORAGE = ['local', 'dynamodb'] as const;
export type StarterStorage = (typeof STARTER_STORAGE)[number];

/** Properties of {@link StarterStack}. */
export interface StarterStackProps extends TeleportStackProps {
  /**
   * The cluster's public DNS name, e.g. `teleport.example.com`. Required with `hostedZone`,
   * `certificateArn` or `createCertificate`.
   *
   * @default - none: users reach the instance's Elastic IP on 3080 (with a self-signed certificate)
   */
  readonly domainName?: string;

  /**
   * EC2 instance type.
   *
   * @default 't3.medium'
   */
  readonly instanceType?: string;

  /**
   * Root volume size in GiB (gp3, encrypted); with `storage: 'local'` it also holds the data.
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
   * `local`: SQLite state, events and recordings under `/var/lib/teleport` on the root volume,
   * which is then kept when the instance terminates (DeleteOnTermination false) so that a
   * replaced or terminated instance's data can still be recovered from it. For trying Teleport
   * out: nothing else keeps or backs up the data. `dynamodb`: the HA cluster's storage (state
   * and events tables, recordings bucket, KMS key; retained on stack deletion), so the
   * instance can be replaced without losing the cluster; a change to the instance's conf
   * (domain, certificate) then replaces it, where with `local` it is only restarted and keeps
   * the conf it first booted with.
   *
   * @default 'local'
   */
  readonly storage?: StarterStorage;

  /**
   * Use this existing VPC instead of creating one; only its public subnets are used (the
   * instance goes into the first, the load balancer spans all).
   *
   * @default - a new VPC with public subnets only (no NAT gateways) in two zones
   */
  readonly existingVpc?: ExistingPublicVpcProps;

  /**
   * Get the web certificate from Let's Encrypt, with this contact address: the proxy orders and
   * renews it itself (`proxy_service.acme`), proving the domain with TLS-ALPN-01 on port 443,
   * where its web listener then runs (instead of 3080). Needs `domainName` and `hostedZone` (the
   * record must point at the Elastic IP for Let's Encrypt to reach it); not with
   * `certificateArn` or `createCertificate`.
   *
   * @default - none: no Let's Encrypt (an ACM certificate with an ALB, or self-signed on 3080)
   */
  readonly letsEncryptEmail?: string;
}

/** Throws an Error naming the first invalid prop. */
export function validateStarterStackProps(props: StarterStackProps): void {
  validateTeleportStackProps(props, props.domainName);
  const storage = props.storage ?? 'local';
  if (!STARTER_STORAGE.includes(storage)) {
    throw new Error(`storage must be one of ${STARTER_STORAGE.map((s) => `'${s}'`).join(', ')}, got '${storage}'`);
  }
  checkInstanceType('instanceType', props.instanceType ?? DEFAULT_INSTANCE_TYPE);
  checkInt('rootVolumeSizeGiB', props.rootVolumeSizeGiB ?? DEFAULT_VOLUME_GIB, 8, 16384);
  if (props.existingVpc) validateExistingVpc(props.existingVpc, { privateSubnets: false });
  if (props.letsEncryptEmail !== undefined) {
    if (!EMAIL.test(props.letsEncryptEmail)) throw new Error(`letsEncryptEmail must be an e-mail address, got '${props.letsEncryptEmail}'`);
    if (props.certificateArn !== undefined || props.createCertificate) {
      throw new Error('give letsEncryptEmail or certificateArn/createCertificate, not both: the certificate comes from Let\'s Encrypt or from ACM');
    }
    if (props.domainName === undefined || !props.hostedZone) {
      throw new Error('letsEncryptEmail needs domainName and hostedZone (the record that points the domain at the Elastic IP, where Let\'s Encrypt validates it)');
    }
  }
}

/** An address the conf file can carry as it is (runtime/instance/conf.ts accepts the same). */
const EMAIL = /^[A-Za-z0-9._+=-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$/;

const DEFAULT_INSTANCE_TYPE = 't3.medium';
const DEFAULT_VOLUME_GIB = 20;

/** One instance running every Teleport role. */
export class StarterStack extends Stack {
  public readonly clusterName: string;
  public readonly network: ClusterNetwork;
  /** The tables, bucket and key, with `storage: 'dynamodb'`. */
  public readonly storage?: ClusterStorage;
  public readonly role: iam.Role;
  /** The instance's log groups (the CloudWatch agent's logs and metric events). */
  public readonly telemetry: InstanceTelemetry;
  public readonly securityGroup: ec2.SecurityGroup;
  public readonly instance: ec2.Instance;
  public readonly elasticIp: ec2.CfnEIP;
  /** The ALB serving 443, when there is a certificate. */
  public readonly loadBalancer?: elbv2.ApplicationLoadBalancer;
  /** Where users browse to. */
  public readonly proxyUrl: string;
  private explicitAzs?: string[];

  constructor(scope: Construct, id: string, props: StarterStackProps) {
    validateStarterStackProps(props);
    super(scope, id, props);
    this.explicitAzs = props.existingVpc ? undefined : props.availabilityZones;
    if (this.explicitAzs || props.existingVpc) {
      Validations.of(this).acknowledge({
        id: 'CloudFormation-Validate::W3010',
        reason: 'The subnets and the instance use the availability zones named in the availabilityZones or existingVpc prop, given so that synthesis needs no zone lookup',
      });
    }
    this.clusterName = props.clusterName;
    const { clusterName, domainName } = props;
    const allowedCidrs = props.allowedCidrs ?? ['0.0.0.0/0'];
    const storageKind = props.storage ?? 'local';

    if (storageKind === 'dynamodb') {
      this.storage = new ClusterStorage(this, 'Storage', { removalPolicy: props.dataRemovalPolicy });
    }
    this.network = new ClusterNetwork(this, 'Network', {
      publicSubnetsOnly: true,
      existingVpc: props.existingVpc,
      availabilityZones: props.existingVpc ? undefined : props.availabilityZones,
      flowLogsBucket: this.storage?.logsBucket,
    });
    const vpc = this.network.vpc;
    if (!props.existingVpc && !this.storage) {
      Validations.of(vpc).acknowledge({
        id: 'AwsSolutions-VPC7',
        reason: 'storage=local is the try-out starter and creates no S3 bucket to write flow logs to; with storage=dynamodb the flow logs go to the logs bucket.',
      });
    }

    const zone = props.hostedZone ? importHostedZone(this, 'HostedZone', props.hostedZone, domainName!) : undefined;
    const certificate =
      props.certificateArn !== undefined || props.createCertificate
        ? new ProxyCertificate(this, 'Certificate', {
            domainName: domainName!,
            certificateArn: props.certificateArn,
            validationZone: props.createCertificate ? zone : undefined,
          }).certificate
        : undefined;
    const useAcm = certificate !== undefined;
    const letsEncrypt = props.letsEncryptEmail !== undefined;

    // The instance's logs and metrics (the CloudWatch agent the AMI runs).
    this.telemetry = new InstanceTelemetry(this, 'Telemetry', { clusterName, retentionDays: props.logRetentionDays, removalPolicy: props.dataRemovalPolicy });

    this.role = instanceRole(this, `Teleport starter instance of cluster ${clusterName}`, [
      ...(this.storage ? storageStatements(this.storage) : []),
      ...this.telemetry.statements(),
      ...(props.caKeysInKms ? caKeyStatements() : []),
    ]);
    if (this.storage) acknowledgeStorageFindings(this.role, this.storage);

    this.securityGroup = instanceSecurityGroup(
      this,
      vpc,
      'Teleport starter: the proxy SSH and web (or ALB) ports from the allowed CIDRs; HTTPS out',
      'HTTPS to AWS APIs and package mirrors',
    );
    // The proxy's ports (with a certificate the web port is reached through the ALB only; with Let's Encrypt
    // the web listener is on 443); the auth and node ports stay closed.
    const publicPorts = servedPorts('proxy', { letsEncrypt }).filter((port) => !(useAcm && port === Ports.web));
    for (const cidr of allowedCidrs) {
      for (const port of publicPorts) this.securityGroup.addIngressRule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(port), `Teleport ${port}`);
    }
    const openToAll = allowedCidrs.includes('0.0.0.0/0');
    const openReason =
      'The starter is the cluster\'s public front door (allowedCidrs includes 0.0.0.0/0): users connect from anywhere and authenticate with short-lived certificates; 3022 and 3025 stay closed.';
    if (openToAll) Validations.of(this.securityGroup).acknowledge({ id: 'AwsSolutions-EC23', reason: openReason });

    this.elasticIp = new ec2.CfnEIP(this, 'ElasticIp', {
      domain: 'vpc',
      tags: [{ key: 'Name', value: `teleport-${clusterName}-starter` }],
    });
    const publicIp = this.elasticIp.attrPublicIp;

    const userData = ec2.UserData.forLinux({ shebang: '#!/bin/bash' });
    userData.addCommands(
      ...confCommands({
        [ConfVars.role]: 'auth,node,proxy',
        [ConfVars.region]: this.region,
        [ConfVars.clusterName]: clusterName,
        [ConfVars.domainName]: domainName,
        // Without a domain the web address is the Elastic IP, given here rather than read from
        // the instance metadata at boot, which may run before the address is associated.
        [ConfVars.externalHostname]: domainName ?? publicIp,
        [ConfVars.externalPort]: String(useAcm ? PUBLIC_WEB_PORT : letsEncrypt ? Ports.acmeWeb : Ports.web),
        // The domain points at the ALB, which carries HTTPS only: SSH and tunnels use the Elastic IP.
        [ConfVars.proxyServerLb]: useAcm ? publicIp : undefined,
        ...(this.storage
          ? {
              [ConfVars.stateTable]: this.storage.stateTable.tableName,
              [ConfVars.eventsTable]: this.storage.eventsTable.tableName,
              [ConfVars.recordingsBucket]: this.storage.recordingsBucket.bucketName,
              [ConfVars.ssmKeyArn]: this.storage.key.keyArn,
            }
          : {}),
        [ConfVars.useAcm]: String(useAcm),
        [ConfVars.sessionRecording]: props.sessionRecording,
        [ConfVars.caKmsRoleArn]: props.caKeysInKms ? this.role.roleArn : undefined,
        ...this.telemetry.conf,
        ...(letsEncrypt ? { [ConfVars.useLetsEncrypt]: 'true', [ConfVars.domainAdminEmail]: props.letsEncryptEmail } : {}),
      }),
    );

    const keepVolume = storageKind === 'local';
    this.instance = new ec2.Instance(this, 'Instance', {
      vpc,
      vpcSubnets: { subnets: [vpc.publicSubnets[0]] },
      // A public address from launch, so the instance reaches AWS and package mirrors before
      // the Elastic IP is associated (which then replaces it).
      associatePublicIpAddress: true,
      instanceType: new ec2.InstanceType(props.instanceType ?? DEFAULT_INSTANCE_TYPE),
      machineImage: ec2.MachineImage.fromSsmParameter(props.amiParameterName ?? DEFAULT_AMI_PARAMETER, {
        os: ec2.OperatingSystemType.LINUX,
        cachedInContext: false,
      }),
      role: this.role,
      securityGroup: this.securityGroup,
      userData,
      // The conf is read once, at first boot. With the state in DynamoDB/S3 a changed conf
      // (domain, certificate, storage names) brings a new instance that boots with it; with
      // local state the instance is kept (its data with it) and only restarted.
      userDataCausesReplacement: storageKind === 'dynamodb',
      httpTokens: ec2.HttpTokens.REQUIRED,
      httpPutResponseHopLimit: 1,
      detailedMonitoring: true,
      instanceName: `teleport-${clusterName}-starter`,
      blockDevices: [
        {
          deviceName: props.rootDeviceName ?? '/dev/xvda',
          volume: ec2.BlockDeviceVolume.ebs(props.rootVolumeSizeGiB ?? DEFAULT_VOLUME_GIB, {
            encrypted: true,
            volumeType: ec2.EbsDeviceVolumeType.GP3,
            deleteOnTermination: !keepVolume,
          }),
        },
      ],
    });
    Validations.of(this.instance).acknowledge({
      id: 'AwsSolutions-EC29',
      reason: keepVolume
        ? 'Termination protection would make CloudFormation fail to replace (new AMI) or delete the instance; the root volume holding the local data is kept on termination instead.'
        : 'Termination protection would make CloudFormation fail to replace (new AMI) or delete the instance; the cluster state lives in DynamoDB and S3, not on the instance.',
    });
    new ec2.CfnEIPAssociation(this, 'ElasticIpAssociation', {
      allocationId: this.elasticIp.attrAllocationId,
      instanceId: this.instance.instanceId,
    });

    if (certificate) {
      const albSg = new ec2.SecurityGroup(this, 'AlbSecurityGroup', {
        vpc,
        description: 'Teleport starter ALB: HTTPS from the allowed CIDRs',
        allowAllOutbound: false,
      });
      for (const cidr of allowedCidrs) albSg.addIngressRule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(PUBLIC_WEB_PORT), 'HTTPS (web UI/API)');
      if (openToAll) Validations.of(albSg).acknowledge({ id: 'AwsSolutions-EC23', reason: openReason });
      const alb = new elbv2.ApplicationLoadBalancer(this, 'Alb', {
        vpc,
        vpcSubnets: this.network.publicSubnets,
        loadBalancerName: `${clusterName}-starter`,
        internetFacing: true,
        securityGroup: albSg,
        dropInvalidHeaderFields: true,
      });
      if (this.storage && !Token.isUnresolved(this.region)) {
        alb.logAccessLogs(this.storage.logsBucket, 'starter-alb');
      } else {
        Validations.of(alb).acknowledge({
          id: 'AwsSolutions-ELB2',
          reason: this.storage
            ? 'ALB access logging needs the region at synth time (the ELB log-delivery account differs per region); deploy with -c region=<region> to turn it on.'
            : 'storage=local is the try-out starter and creates no S3 bucket for access logs; with storage=dynamodb and a region the ALB logs to the logs bucket.',
        });
      }
      const listener = alb.addListener('Https', {
        port: PUBLIC_WEB_PORT,
        protocol: elbv2.ApplicationProtocol.HTTPS,
        certificates: [certificate],
        sslPolicy: elbv2.SslPolicy.RECOMMENDED_TLS,
        open: false,
      });
      const webPort = checkServed('auth,node,proxy', Ports.web, 'the ALB target group');
      listener.addTargets('Web', {
        port: webPort,
        protocol: elbv2.ApplicationProtocol.HTTPS,
        targets: [new elbv2Targets.InstanceTarget(this.instance, webPort)],
        healthCheck: WEB_HEALTH_CHECK,
        deregistrationDelay: Duration.seconds(30),
      });
      // An instance target (unlike a group) opens no ports by itself.
      alb.connections.allowTo(this.securityGroup, ec2.Port.tcp(webPort), 'ALB to the web port (traffic and health checks)');
      this.loadBalancer = alb;
    }

    if (props.hostedZone) {
      new ProxyDns(this, 'Dns', {
        zone: props.hostedZone,
        domainName: domainName!,
        ...(this.loadBalancer ? { loadBalancer: this.loadBalancer } : { ipAddress: publicIp }),
      });
    }

    this.proxyUrl = useAcm || letsEncrypt ? `https://${domainName}` : `https://${domainName ?? publicIp}:${Ports.web}`;
    new CfnOutput(this, 'ProxyUrl', { value: this.proxyUrl, description: 'Web UI and tsh --proxy address' });
    new CfnOutput(this, 'LogGroupName', { value: this.telemetry.logGroup.logGroupName, description: "The instance's teleport logs (stream <instance id>/<unit>)" });
    new CfnOutput(this, 'PublicIp', {
      value: publicIp,
      description: useAcm
        ? `The instance's Elastic IP: SSH (${Ports.proxySsh}) goes here directly`
        : `The instance's Elastic IP${domainName && !props.hostedZone ? `: point ${domainName} here` : ''}`,
    });
    if (this.loadBalancer) {
      new CfnOutput(this, 'LoadBalancer', {
        value: this.loadBalancer.loadBalancerDnsName,
        description: `The ALB serving HTTPS on 443${props.hostedZone ? '' : `: point ${domainName} here (alias or CNAME)`}`,
      });
    }
    new CfnOutput(this, 'InstanceId', { value: this.instance.instanceId });
    new CfnOutput(this, 'ShellCommand', {
      value: instanceShellCommand(this, this.instance.instanceId),
      description: 'A shell on the instance through Session Manager (no SSH key or open port 22)',
    });
    new CfnOutput(this, 'FirstUserCommand', {
      value: FIRST_USER_COMMAND,
      description: 'Run in that shell once teleport is up to create the first user; open the sign-up URL it prints',
    });
    if (this.storage) {
      new CfnOutput(this, 'StateTableName', { value: this.storage.stateTable.tableName });
      new CfnOutput(this, 'EventsTableName', { value: this.storage.eventsTable.tableName });
      new CfnOutput(this, 'RecordingsBucketName', { value: this.storage.recordingsBucket.bucketName });
      new CfnOutput(this, 'KeyArn', { value: this.storage.key.keyArn });
    }
  }

  /**
   * The zones given in props, so that a stack with a concrete account and region never asks
   * CDK to look them up (which needs credentials at synth time).
   */
  override get availabilityZones(): string[] {
    return this.explicitAzs ?? super.availabilityZones;
  }
}
