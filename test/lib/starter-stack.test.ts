import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { actions, egress, ingress, logicalId, one, statements, type Res, testApp } from '../helpers/cdk';
import { CONF_FILE, ConfVars } from '../../runtime/contract/aws';
import { validateConf } from '../../runtime/instance/conf';
import { generateConfig, instanceMode, renderConfig } from '../../runtime/instance/generate';
import { starterPropsFromContext, stackKindFromContext, starterStackName } from '../../lib/app-context';
import { AUTH_BUCKET_ACTIONS, AUTH_KMS_ACTIONS, AUTH_OBJECT_ACTIONS, AUTH_STREAM_ACTIONS, AUTH_TABLE_ACTIONS } from '../../lib/auth-tier';
import { ClusterStack } from '../../lib/cluster-stack';
import { StarterStack, StarterStackProps } from '../../lib/starter-stack';


const CERT_ARN = 'arn:aws:acm:eu-west-1:123456789012:certificate/0f2e5a1c-7d3b-4c1e-9a8b-123456789abc';
const ZONE = { hostedZoneId: 'Z0123456789ABCDEFGHIJ', zoneName: 'example.com' };
const EXISTING_VPC = {
  vpcId: 'vpc-0123456789abcdef0',
  availabilityZones: ['eu-west-1a', 'eu-west-1b'],
  publicSubnetIds: ['subnet-0000000000000000a', 'subnet-0000000000000000b'],
};

function build(props: Partial<StarterStackProps> = {}): { app: App; stack: StarterStack; t: Template } {
  const app = testApp();
  const stack = new StarterStack(app, 'Starter', { clusterName: 'acme', ...props });
  return { app, stack, t: Template.fromStack(stack) };
}




/** A CloudFormation value as text: `<Ref:Id>` and `<Id.Attr>` for references. */
function show(v: unknown): string {
  if (typeof v === 'string') return v;
  const o = v as Record<string, any>;
  if (o.Ref) return `<Ref:${o.Ref}>`;
  if (o['Fn::GetAtt']) return `<${o['Fn::GetAtt'].join('.')}>`;
  return JSON.stringify(v);
}

/** The `/etc/teleport.d/conf` the instance's user data writes, as a map of variable to (quoted) value. */
/** The logical ids of the instance's two log groups. */
const logs = (t: Template) => logicalId(t, 'AWS::Logs::LogGroup', 'TelemetryLogs');
const metrics = (t: Template) => logicalId(t, 'AWS::Logs::LogGroup', 'TelemetryMetrics');

function conf(t: Template): Record<string, string> {
  const parts: unknown[] = one(t, 'AWS::EC2::Instance').Properties.UserData['Fn::Base64']['Fn::Join'][1];
  const text = parts.map(show).join('');
  const body = text.split("<<'TELEPORT_CONF'\n")[1].split('\nTELEPORT_CONF')[0];
  const out: Record<string, string> = {};
  for (const line of body.split('\n')) {
    const m = /^([A-Z0-9_]+)="(.*)"$/.exec(line);
    if (!m) throw new Error(`not a KEY="value" line: ${line}`);
    out[m[1]] = m[2];
  }
  return out;
}


describe('StarterStack: defaults (local storage, new VPC, no domain)', () => {
  // GIVEN only a cluster name
  const { t } = build();
  const instanceSg = logicalId(t, 'AWS::EC2::SecurityGroup', 'InstanceSecurityGroup');
  const eip = logicalId(t, 'AWS::EC2::EIP');
  const instance = logicalId(t, 'AWS::EC2::Instance');

  test('a new VPC with two public subnets only: no private subnets, no NAT gateways, no public IPs by default', () => {
    t.resourceCountIs('AWS::EC2::VPC', 1);
    t.resourceCountIs('AWS::EC2::NatGateway', 0);
    const subnets = Object.values(t.findResources('AWS::EC2::Subnet')) as Res[];
    expect(subnets).toHaveLength(2);
    for (const s of subnets) expect(s.Properties.MapPublicIpOnLaunch).toBe(false);
    t.resourceCountIs('AWS::EC2::InternetGateway', 1);
  });

  test('one instance, no auto scaling group, and no tables, buckets or keys but its log groups\' key', () => {
    t.resourceCountIs('AWS::EC2::Instance', 1);
    t.resourceCountIs('AWS::AutoScaling::AutoScalingGroup', 0);
    for (const type of ['AWS::DynamoDB::Table', 'AWS::S3::Bucket', 'AWS::ElasticLoadBalancingV2::LoadBalancer', 'AWS::Route53::RecordSet']) {
      t.resourceCountIs(type, 0);
    }
    expect(Object.keys(t.findResources('AWS::KMS::Key'))).toEqual([logicalId(t, 'AWS::KMS::Key', 'TelemetryKey')]);
  });

  test('the instance requires IMDSv2 and keeps its encrypted gp3 root volume (the local data) on termination', () => {
    const p = one(t, 'AWS::EC2::Instance').Properties;
    expect(p.MetadataOptions).toEqual({ HttpTokens: 'required', HttpPutResponseHopLimit: 1 });
    expect(p.BlockDeviceMappings).toEqual([
      { DeviceName: '/dev/xvda', Ebs: { DeleteOnTermination: false, Encrypted: true, VolumeSize: 20, VolumeType: 'gp3' } },
    ]);
    expect(p.Monitoring).toBe(true);
    expect(p.InstanceType).toBe('t3.medium');
    expect(p.IamInstanceProfile).toBeDefined();
  });

  test('the AMI id is the /teleport/ami/latest SSM parameter, resolved at deploy time', () => {
    const params = t.toJSON().Parameters as Record<string, { Type: string; Default: string }>;
    const id = one(t, 'AWS::EC2::Instance').Properties.ImageId.Ref;
    expect(params[id]).toEqual(expect.objectContaining({ Type: 'AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>', Default: '/teleport/ami/latest' }));
  });

  test('the instance is in the first public subnet with a public address, and an Elastic IP is associated with it', () => {
    const [nic] = one(t, 'AWS::EC2::Instance').Properties.NetworkInterfaces;
    expect(nic).toMatchObject({ AssociatePublicIpAddress: true, DeviceIndex: '0', GroupSet: [{ 'Fn::GetAtt': [instanceSg, 'GroupId'] }] });
    expect(nic.SubnetId.Ref).toMatch(/^NetworkVpcpublicSubnet1Subnet/);
    expect(one(t, 'AWS::EC2::EIP').Properties.Domain).toBe('vpc');
    expect(one(t, 'AWS::EC2::EIPAssociation').Properties).toEqual({
      AllocationId: { 'Fn::GetAtt': [eip, 'AllocationId'] },
      InstanceId: { Ref: instance },
    });
  });

  test('only the proxy\'s 3023, 3024 and 3080 are open (to 0.0.0.0/0); 3022, 3025 and 3026 are not; only HTTPS goes out', () => {
    expect(ingress(t, instanceSg)).toEqual(['3023-3023<-0.0.0.0/0', '3024-3024<-0.0.0.0/0', '3080-3080<-0.0.0.0/0']);
    expect(egress(t, instanceSg)).toEqual(['443-443->0.0.0.0/0']);
  });

  test('user data writes the all-in-one conf: every role, the Elastic IP as web address on 3080, no ACM', () => {
    const c = conf(t);
    expect(c).toEqual({
      TELEPORT_ROLE: 'auth,node,proxy',
      EC2_REGION: '<Ref:AWS::Region>',
      TELEPORT_CLUSTER_NAME: 'acme',
      TELEPORT_EXTERNAL_HOSTNAME: `<${eip}.PublicIp>`,
      TELEPORT_EXTERNAL_PORT: '3080',
      USE_ACM: 'false',
      TELEPORT_LOG_GROUP: `<Ref:${logs(t)}>`,
      TELEPORT_METRICS_LOG_GROUP: `<Ref:${metrics(t)}>`,
    });
    // every name is one the boot-time generator reads (runtime/contract/aws.ts)
    for (const k of Object.keys(c)) expect(Object.values(ConfVars)).toContain(k);
  });

  test('GIVEN sessionRecording: proxy WHEN synthesised THEN the all-in-one conf asks for recording proxy mode', () => {
    expect(conf(build({ sessionRecording: 'proxy' }).t).TELEPORT_SESSION_RECORDING).toBe('proxy');
    expect(conf(t).TELEPORT_SESSION_RECORDING).toBeUndefined();
  });

  test('GIVEN caKeysInKms WHEN synthesised THEN the all-in-one conf names the instance\'s own role as the CA keys\' signer, and the role may create them', () => {
    const built = build({ caKeysInKms: true }).t;
    expect(conf(built).TELEPORT_CA_KMS_ROLE_ARN).toBe(`<${logicalId(built, 'AWS::IAM::Role', 'Role')}.Arn>`);
    expect(Object.keys(statements(built, 'Role'))).toEqual(expect.arrayContaining(['CaKeysCreate', 'CaKeysTag']));
    expect(conf(t).TELEPORT_CA_KMS_ROLE_ARN).toBeUndefined();
  });

  test('the role has only the SSM agent statements and the CloudWatch agent\'s on its two log groups, no managed policy and no wildcard action', () => {
    const s = statements(t, 'Role');
    expect(Object.keys(s).sort()).toEqual(['InstanceTelemetry', 'SsmAgentRegister', 'SsmSessionManager']);
    expect(actions(s.InstanceTelemetry.Action)).toEqual(['logs:CreateLogStream', 'logs:DescribeLogStreams', 'logs:PutLogEvents']);
    expect(s.InstanceTelemetry.Resource).toEqual([{ 'Fn::GetAtt': [logs(t), 'Arn'] }, { 'Fn::GetAtt': [metrics(t), 'Arn'] }]);
    for (const id of [logs(t), metrics(t)]) expect(t.findResources('AWS::Logs::LogGroup')[id].Properties.RetentionInDays).toBe(30);
    expect(Object.values(build({ logRetentionDays: 365 }).t.findResources('AWS::Logs::LogGroup')).map((g) => g.Properties.RetentionInDays)).toEqual([365, 365]);
    expect(() => build({ logRetentionDays: 0 })).toThrow(/^logRetentionDays must be one of the retention periods CloudWatch Logs accepts/);
    expect(actions(s.SsmAgentRegister.Action)).toEqual(['ssm:UpdateInstanceInformation']);
    const role = one(t, 'AWS::IAM::Role', 'Role');
    expect(role.Properties.ManagedPolicyArns).toBeUndefined();
    for (const st of Object.values(s)) for (const a of [st.Action].flat()) expect(a).not.toMatch(/\*/);
  });

  test('outputs give the https://<elastic ip>:3080 URL, the IP, a shell and the first-user command', () => {
    const outputs = t.toJSON().Outputs as Record<string, { Value: unknown; Description?: string }>;
    expect(outputs.ProxyUrl.Value).toEqual({ 'Fn::Join': ['', ['https://', { 'Fn::GetAtt': [eip, 'PublicIp'] }, ':3080']] });
    expect(outputs.PublicIp.Value).toEqual({ 'Fn::GetAtt': [eip, 'PublicIp'] });
    expect(outputs.InstanceId.Value).toEqual({ Ref: instance });
    expect(outputs.ShellCommand.Value).toEqual({ 'Fn::Join': ['', ['aws ssm start-session --region ', { Ref: 'AWS::Region' }, ' --target ', { Ref: instance }]] });
    expect(outputs.FirstUserCommand.Value).toBe('sudo tctl users add <username> root,ec2-user');
    expect(Object.keys(outputs)).not.toContain('StateTableName');
    expect(Object.keys(outputs)).not.toContain('LoadBalancer');
  });
});

describe('StarterStack: DynamoDB storage, domain in a hosted zone without certificate, restricted CIDRs', () => {
  // GIVEN dynamodb storage, a domain in a zone (no certificate) and one allowed CIDR
  const { t } = build({
    storage: 'dynamodb',
    domainName: 'teleport.example.com',
    hostedZone: ZONE,
    allowedCidrs: ['203.0.113.0/24'],
    instanceType: 't3.large',
  });
  const eip = logicalId(t, 'AWS::EC2::EIP');
  const state = logicalId(t, 'AWS::DynamoDB::Table', 'StorageStateTable');
  const events = logicalId(t, 'AWS::DynamoDB::Table', 'StorageEventsTable');
  const recordings = logicalId(t, 'AWS::S3::Bucket', 'StorageRecordingsBucket');
  const key = logicalId(t, 'AWS::KMS::Key', 'StorageKey');

  test('the cluster storage is created and the new VPC logs its flows to the logs bucket', () => {
    t.resourceCountIs('AWS::DynamoDB::Table', 2);
    t.hasResourceProperties('AWS::EC2::FlowLog', { LogDestinationType: 's3', TrafficType: 'ALL' });
  });

  test('user data adds the domain, the tables, the bucket and the key to the conf', () => {
    expect(conf(t)).toEqual({
      TELEPORT_ROLE: 'auth,node,proxy',
      EC2_REGION: '<Ref:AWS::Region>',
      TELEPORT_CLUSTER_NAME: 'acme',
      TELEPORT_DOMAIN_NAME: 'teleport.example.com',
      TELEPORT_EXTERNAL_HOSTNAME: 'teleport.example.com',
      TELEPORT_EXTERNAL_PORT: '3080',
      TELEPORT_DYNAMO_TABLE_NAME: `<Ref:${state}>`,
      TELEPORT_DYNAMO_EVENTS_TABLE_NAME: `<Ref:${events}>`,
      TELEPORT_S3_BUCKET: `<Ref:${recordings}>`,
      TELEPORT_SSM_KEY_ARN: `<${key}.Arn>`,
      USE_ACM: 'false',
      TELEPORT_LOG_GROUP: `<Ref:${logs(t)}>`,
      TELEPORT_METRICS_LOG_GROUP: `<Ref:${metrics(t)}>`,
    });
  });

  test('the role gets exactly the auth tier\'s storage statements, nothing for SSM parameters', () => {
    const s = statements(t, 'Role');
    expect(Object.keys(s).sort()).toEqual(
      ['DataKey', 'InstanceTelemetry', 'Recordings', 'RecordingsBucket', 'SsmAgentRegister', 'SsmSessionManager', 'StateTableStream', 'Tables'].sort(),
    );
    expect(actions(s.Tables.Action)).toEqual([...AUTH_TABLE_ACTIONS].sort());
    expect(s.Tables.Resource).toEqual([
      { 'Fn::GetAtt': [state, 'Arn'] },
      { 'Fn::GetAtt': [events, 'Arn'] },
      { 'Fn::Join': ['', [{ 'Fn::GetAtt': [events, 'Arn'] }, '/index/timesearch']] },
    ]);
    expect(actions(s.StateTableStream.Action)).toEqual([...AUTH_STREAM_ACTIONS].sort());
    expect(s.StateTableStream.Resource).toEqual({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [state, 'Arn'] }, '/stream/*']] });
    expect(actions(s.Recordings.Action)).toEqual([...AUTH_OBJECT_ACTIONS].sort());
    expect(s.Recordings.Resource).toEqual({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [recordings, 'Arn'] }, '/records/*']] });
    expect(actions(s.RecordingsBucket.Action)).toEqual([...AUTH_BUCKET_ACTIONS].sort());
    expect(s.RecordingsBucket.Resource).toEqual({ 'Fn::GetAtt': [recordings, 'Arn'] });
    expect(actions(s.DataKey.Action)).toEqual([...AUTH_KMS_ACTIONS].sort());
    expect(s.DataKey.Resource).toEqual({ 'Fn::GetAtt': [key, 'Arn'] });
    for (const st of Object.values(s)) for (const a of [st.Action].flat()) expect(a).not.toMatch(/\*/);
    // AND they are the very statements a ClusterStack's auth tier carries (same construct ids, same logical ids)
    const cluster = Template.fromStack(
      new ClusterStack(testApp({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Cluster', { clusterName: 'acme', domainName: 'teleport.example.com' }),
    );
    const auth = statements(cluster, 'AuthRole');
    for (const sid of ['Tables', 'StateTableStream', 'Recordings', 'RecordingsBucket', 'DataKey']) expect(s[sid]).toEqual(auth[sid]);
  });

  test('the root volume goes with the instance (the data is in DynamoDB and S3) and the instance type is taken', () => {
    const p = one(t, 'AWS::EC2::Instance').Properties;
    expect(p.BlockDeviceMappings[0].Ebs).toMatchObject({ DeleteOnTermination: true, Encrypted: true });
    expect(p.InstanceType).toBe('t3.large');
  });

  test('only the allowed CIDR reaches 3023, 3024 and 3080', () => {
    const sg = logicalId(t, 'AWS::EC2::SecurityGroup', 'InstanceSecurityGroup');
    expect(ingress(t, sg)).toEqual(['3023-3023<-203.0.113.0/24', '3024-3024<-203.0.113.0/24', '3080-3080<-203.0.113.0/24']);
  });

  test('Route 53 points the domain at the Elastic IP', () => {
    t.resourceCountIs('AWS::Route53::RecordSet', 1);
    t.hasResourceProperties('AWS::Route53::RecordSet', {
      Name: 'teleport.example.com.',
      Type: 'A',
      HostedZoneId: 'Z0123456789ABCDEFGHIJ',
      ResourceRecords: [{ 'Fn::GetAtt': [eip, 'PublicIp'] }],
      TTL: '300',
    });
  });

  test('outputs give https://<domain>:3080 and the storage names', () => {
    const outputs = t.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(outputs.ProxyUrl.Value).toBe('https://teleport.example.com:3080');
    expect(outputs.StateTableName.Value).toEqual({ Ref: state });
    expect(outputs.EventsTableName.Value).toEqual({ Ref: events });
    expect(outputs.RecordingsBucketName.Value).toEqual({ Ref: recordings });
    expect(outputs.KeyArn.Value).toEqual({ 'Fn::GetAtt': [key, 'Arn'] });
  });
});

describe('StarterStack: ACM certificate (ALB on 443), existing VPC', () => {
  // GIVEN a certificate ARN, a hosted zone and an existing VPC by ids
  const { app, t } = build({ domainName: 'teleport.example.com', certificateArn: CERT_ARN, hostedZone: ZONE, existingVpc: EXISTING_VPC });
  const eip = logicalId(t, 'AWS::EC2::EIP');
  const instanceSg = logicalId(t, 'AWS::EC2::SecurityGroup', 'InstanceSecurityGroup');
  const albSg = logicalId(t, 'AWS::EC2::SecurityGroup', 'AlbSecurityGroup');
  const alb = logicalId(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer', 'Alb');

  test('no VPC resources and no lookups: the instance is in the first given public subnet, the ALB in both', () => {
    for (const type of ['AWS::EC2::VPC', 'AWS::EC2::Subnet', 'AWS::EC2::NatGateway', 'AWS::EC2::InternetGateway']) t.resourceCountIs(type, 0);
    expect(one(t, 'AWS::EC2::Instance').Properties.NetworkInterfaces[0].SubnetId).toBe('subnet-0000000000000000a');
    expect(one(t, 'AWS::EC2::SecurityGroup', 'InstanceSecurityGroup').Properties.VpcId).toBe('vpc-0123456789abcdef0');
    expect(one(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer').Properties.Subnets).toEqual(['subnet-0000000000000000a', 'subnet-0000000000000000b']);
    expect(app.synth().manifest.missing).toBeUndefined();
  });

  test('an internet-facing ALB terminates TLS on 443 with the certificate and a TLS 1.2+/1.3 policy', () => {
    expect(one(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer').Properties).toMatchObject({
      Scheme: 'internet-facing',
      Type: 'application',
      Name: 'acme-starter',
      LoadBalancerAttributes: expect.arrayContaining([{ Key: 'routing.http.drop_invalid_header_fields.enabled', Value: 'true' }]),
    });
    const listeners = Object.values(t.findResources('AWS::ElasticLoadBalancingV2::Listener')) as Res[];
    expect(listeners).toHaveLength(1);
    expect(listeners[0].Properties).toMatchObject({
      Port: 443,
      Protocol: 'HTTPS',
      Certificates: [{ CertificateArn: CERT_ARN }],
      SslPolicy: 'ELBSecurityPolicy-TLS13-1-2-2021-06',
    });
  });

  test('the target is the instance on 3080 over HTTPS, health-checked on /webapi/ping', () => {
    expect(one(t, 'AWS::ElasticLoadBalancingV2::TargetGroup').Properties).toMatchObject({
      Port: 3080,
      Protocol: 'HTTPS',
      TargetType: 'instance',
      Targets: [{ Id: { Ref: logicalId(t, 'AWS::EC2::Instance') }, Port: 3080 }],
      HealthCheckProtocol: 'HTTPS',
      HealthCheckPath: '/webapi/ping',
      HealthCheckPort: '3080',
    });
  });

  test('3080 is open to the ALB only; SSH and reverse tunnels stay public on the instance; the ALB takes 443', () => {
    expect(ingress(t, instanceSg)).toEqual(['3023-3023<-0.0.0.0/0', '3024-3024<-0.0.0.0/0', `3080-3080<-${albSg}`].sort());
    expect(ingress(t, albSg)).toEqual(['443-443<-0.0.0.0/0']);
    expect(egress(t, albSg)).toEqual([`3080-3080->${instanceSg}`]);
    expect(egress(t, instanceSg)).toEqual(['443-443->0.0.0.0/0']);
  });

  test('user data says USE_ACM, public port 443, and the Elastic IP for SSH', () => {
    expect(conf(t)).toEqual({
      TELEPORT_ROLE: 'auth,node,proxy',
      EC2_REGION: '<Ref:AWS::Region>',
      TELEPORT_CLUSTER_NAME: 'acme',
      TELEPORT_DOMAIN_NAME: 'teleport.example.com',
      TELEPORT_EXTERNAL_HOSTNAME: 'teleport.example.com',
      TELEPORT_EXTERNAL_PORT: '443',
      TELEPORT_PROXY_SERVER_LB: `<${eip}.PublicIp>`,
      USE_ACM: 'true',
      TELEPORT_LOG_GROUP: `<Ref:${logs(t)}>`,
      TELEPORT_METRICS_LOG_GROUP: `<Ref:${metrics(t)}>`,
    });
  });

  test('Route 53 aliases the domain to the ALB', () => {
    t.hasResourceProperties('AWS::Route53::RecordSet', {
      Name: 'teleport.example.com.',
      Type: 'A',
      HostedZoneId: 'Z0123456789ABCDEFGHIJ',
      AliasTarget: {
        DNSName: { 'Fn::Join': ['', ['dualstack.', { 'Fn::GetAtt': [alb, 'DNSName'] }]] },
        HostedZoneId: { 'Fn::GetAtt': [alb, 'CanonicalHostedZoneID'] },
      },
    });
  });

  test('outputs give https://<domain> and the load balancer', () => {
    const outputs = t.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(outputs.ProxyUrl.Value).toBe('https://teleport.example.com');
    expect(outputs.LoadBalancer.Value).toEqual({ 'Fn::GetAtt': [alb, 'DNSName'] });
    expect(outputs.PublicIp.Value).toEqual({ 'Fn::GetAtt': [eip, 'PublicIp'] });
  });
});

describe("StarterStack: Let's Encrypt (letsEncryptEmail), domain in a hosted zone", () => {
  // GIVEN a domain in a zone and a Let's Encrypt contact address
  const { t } = build({ domainName: 'teleport.example.com', hostedZone: ZONE, letsEncryptEmail: 'ops@example.com' });
  const eip = logicalId(t, 'AWS::EC2::EIP');
  const instanceSg = logicalId(t, 'AWS::EC2::SecurityGroup', 'InstanceSecurityGroup');

  test('443 (the web listener, where Let\'s Encrypt validates), 3023 and 3024 are open; 3080 is not; there is no ALB and no ACM certificate', () => {
    expect(ingress(t, instanceSg)).toEqual(['3023-3023<-0.0.0.0/0', '3024-3024<-0.0.0.0/0', '443-443<-0.0.0.0/0']);
    t.resourceCountIs('AWS::ElasticLoadBalancingV2::LoadBalancer', 0);
    t.resourceCountIs('AWS::CertificateManager::Certificate', 0);
  });

  test('user data asks for Let\'s Encrypt with the address, the domain on 443, no ACM', () => {
    expect(conf(t)).toMatchObject({
      TELEPORT_DOMAIN_NAME: 'teleport.example.com',
      TELEPORT_EXTERNAL_HOSTNAME: 'teleport.example.com',
      TELEPORT_EXTERNAL_PORT: '443',
      USE_ACM: 'false',
      USE_LETSENCRYPT: 'true',
      TELEPORT_DOMAIN_ADMIN_EMAIL: 'ops@example.com',
    });
  });

  test('Route 53 points the domain at the Elastic IP (where the validation arrives) and the URL has no port', () => {
    t.hasResourceProperties('AWS::Route53::RecordSet', { Name: 'teleport.example.com.', Type: 'A', ResourceRecords: [{ 'Fn::GetAtt': [eip, 'PublicIp'] }] });
    expect((t.toJSON().Outputs as Record<string, { Value: unknown }>).ProxyUrl.Value).toBe('https://teleport.example.com');
  });
});

describe('StarterStack user data → the AMI generator (runtime/instance)', () => {
  /** Deploy-time values as the generator would see them: the Elastic IP, names, ARNs, the region. */
  const standIns = (c: Record<string, string>): Record<string, string> =>
    Object.fromEntries(
      Object.entries(c).map(([k, v]) => {
        const m = /^<(?:Ref:)?([^.>]+)(?:\.([A-Za-z]+))?>$/.exec(v);
        if (!m) return [k, v];
        if (m[1] === 'AWS::Region') return [k, 'eu-west-1'];
        if (m[2] === 'PublicIp') return [k, '203.0.113.10'];
        if (m[2] === 'Arn') return [k, `arn:aws:kms:eu-west-1:123456789012:key/${m[1].toLowerCase()}`];
        return [k, `${m[1].toLowerCase()}-x`];
      }),
    );
  const FACTS = { localIp: '10.20.0.17', localHostname: 'ip-10-20-0-17.eu-west-1.compute.internal', publicIp: '198.51.100.99' };
  const generated = (props: Partial<StarterStackProps>) => {
    const c = validateConf(standIns(conf(build(props).t)), CONF_FILE);
    const mode = instanceMode(c.role, c.useAcm);
    const config = generateConfig(c, FACTS);
    // renderConfig throws unless the schema of `teleport start` accepts the file.
    renderConfig(config, { confFile: CONF_FILE, mode, outputFile: '/etc/teleport.yaml' });
    return { mode, config };
  };

  test('local storage, no domain: mode all, local storage, every address is the Elastic IP (not the boot-time public IP)', () => {
    const { mode, config } = generated({});
    expect(mode).toBe('all');
    expect(config.teleport.storage).toBeUndefined();
    expect(config.proxy_service).toMatchObject({
      public_addr: '203.0.113.10:3080',
      ssh_public_addr: '203.0.113.10:3023',
    });
    expect(config.auth_service.cluster_name).toBe('acme');
  });

  test("Let's Encrypt: mode all (root, which may bind 443), the web listener on 443 with acme for the domain", () => {
    const { mode, config } = generated({ domainName: 'teleport.example.com', hostedZone: ZONE, letsEncryptEmail: 'ops@example.com' });
    expect(mode).toBe('all');
    expect(config.proxy_service).toMatchObject({
      web_listen_addr: '0.0.0.0:443',
      public_addr: 'teleport.example.com:443',
      ssh_public_addr: 'teleport.example.com:3023',
      acme: { enabled: true, email: 'ops@example.com' },
    });
    expect(config.proxy_service).not.toHaveProperty('trust_x_forwarded_for_from');
  });

  test('dynamodb storage with ACM: mode all-acm, the stack\'s tables and bucket, web on the domain, SSH on the Elastic IP', () => {
    const { mode, config } = generated({ storage: 'dynamodb', domainName: 'teleport.example.com', certificateArn: CERT_ARN });
    expect(mode).toBe('all-acm');
    expect(config.teleport.storage).toMatchObject({ type: 'dynamodb', region: 'eu-west-1', table_name: expect.stringMatching(/^storagestatetable/) });
    expect(config.proxy_service).toMatchObject({
      public_addr: 'teleport.example.com:443',
      ssh_public_addr: '203.0.113.10:3023',
    });
  });
});

describe('StarterStack: what a changed conf does to the instance', () => {
  test.each<[string, 'local' | 'dynamodb', boolean]>([
    ['local storage keeps the instance (and its data)', 'local', false],
    ['dynamodb storage replaces it, so the new conf is booted with', 'dynamodb', true],
  ])('%s', (_name, storage, replaced) => {
    // GIVEN the same starter with two different domains
    const id = (domainName: string) => logicalId(build({ storage, domainName }).t, 'AWS::EC2::Instance');
    // WHEN the conf changes THEN the instance's logical id changes only with dynamodb storage
    expect(id('a.example.com') !== id('b.example.com')).toBe(replaced);
  });
});

describe('StarterStack: concrete account and region', () => {
  test('the new VPC uses the given zones and the ALB writes access logs to the logs bucket (dynamodb storage)', () => {
    // GIVEN an environment-specific stack with zones, dynamodb storage and a DNS-validated certificate
    const { app, t } = build({
      env: { account: '123456789012', region: 'eu-west-1' },
      availabilityZones: ['eu-west-1a', 'eu-west-1b'],
      storage: 'dynamodb',
      domainName: 'teleport.example.com',
      hostedZone: ZONE,
      createCertificate: true,
    });
    // THEN nothing is looked up and the subnets sit in the given zones
    expect(app.synth().manifest.missing).toBeUndefined();
    const zones = (Object.values(t.findResources('AWS::EC2::Subnet')) as Res[]).map((s) => s.Properties.AvailabilityZone);
    expect(zones.sort()).toEqual(['eu-west-1a', 'eu-west-1b']);
    expect(one(t, 'AWS::EC2::Instance').Properties.AvailabilityZone).toBe('eu-west-1a');
    expect(one(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer').Properties.LoadBalancerAttributes).toEqual(
      expect.arrayContaining([
        { Key: 'access_logs.s3.enabled', Value: 'true' },
        { Key: 'access_logs.s3.bucket', Value: { Ref: logicalId(t, 'AWS::S3::Bucket', 'StorageLogsBucket') } },
      ]),
    );
    t.hasResourceProperties('AWS::CertificateManager::Certificate', {
      DomainName: 'teleport.example.com',
      ValidationMethod: 'DNS',
      DomainValidationOptions: [{ DomainName: 'teleport.example.com', HostedZoneId: 'Z0123456789ABCDEFGHIJ' }],
    });
  });

  test('without zones a concrete environment is refused instead of looked up', () => {
    expect(() => build({ env: { account: '123456789012', region: 'eu-west-1' } })).toThrow(
      /availabilityZones must be given for a new VPC when the stack has an account and region/,
    );
  });
});

describe('StarterStack prop validation (before any resource is defined)', () => {
  test.each<[string, Partial<StarterStackProps>, RegExp]>([
    ['a cluster name with dots', { clusterName: 'teleport.example.com' }, /clusterName must be 1-20 lower-case letters/],
    ['a bad storage kind', { storage: 'ebs' as never }, /storage must be one of 'local', 'dynamodb', got 'ebs'/],
    ['createCertificate without a zone', { domainName: 'teleport.example.com', createCertificate: true }, /createCertificate needs hostedZone/],
    ['a certificate without a domain', { certificateArn: CERT_ARN }, /certificateArn needs domainName/],
    ['a hosted zone without a domain', { hostedZone: ZONE }, /hostedZone needs domainName/],
    ['a domain outside the zone', { domainName: 'teleport.example.org', hostedZone: ZONE }, /domainName 'teleport.example.org' is not inside the hosted zone 'example.com'/],
    ['both a certificate ARN and createCertificate', { domainName: 'teleport.example.com', hostedZone: ZONE, certificateArn: CERT_ARN, createCertificate: true }, /either certificateArn or createCertificate/],
    ['a malformed instance type', { instanceType: 'large' }, /instanceType must be an EC2 instance type/],
    ['a root volume too small', { rootVolumeSizeGiB: 4 }, /rootVolumeSizeGiB must be an integer between 8 and/],
    ['a malformed CIDR', { allowedCidrs: ['10.0.0.0/33'] }, /allowedCidrs must contain IPv4 CIDR blocks/],
    ['an AMI parameter without a leading slash', { amiParameterName: 'teleport/ami' }, /amiParameterName must be an SSM parameter name/],
    ['kubernetes on (the Kubernetes proxy is not built)', { kubernetes: true }, /^kubernetes: the Kubernetes proxy is not built yet, so nothing would serve port 3026; leave kubernetes unset \(or false\)$/],
    ["Let's Encrypt with an ACM certificate", { domainName: 'teleport.example.com', hostedZone: ZONE, certificateArn: CERT_ARN, letsEncryptEmail: 'ops@example.com' }, /give letsEncryptEmail or certificateArn\/createCertificate, not both/],
    ["Let's Encrypt with createCertificate", { domainName: 'teleport.example.com', hostedZone: ZONE, createCertificate: true, letsEncryptEmail: 'ops@example.com' }, /give letsEncryptEmail or certificateArn\/createCertificate, not both/],
    ["Let's Encrypt without a hosted zone", { domainName: 'teleport.example.com', letsEncryptEmail: 'ops@example.com' }, /letsEncryptEmail needs domainName and hostedZone/],
    ["Let's Encrypt without a domain", { letsEncryptEmail: 'ops@example.com' }, /letsEncryptEmail needs domainName and hostedZone/],
    ["Let's Encrypt with a malformed address", { domainName: 'teleport.example.com', hostedZone: ZONE, letsEncryptEmail: 'ops at example' }, /letsEncryptEmail must be an e-mail address, got 'ops at example'/],
    ['an existing VPC with a zone per subnet missing', { existingVpc: { ...EXISTING_VPC, availabilityZones: ['eu-west-1a'] } }, /existingVpc: give one public subnet per availability zone \(1 zones, 2 public subnets\)/],
  ])('rejects %s', (_name, props, message) => {
    // GIVEN invalid props WHEN the stack is built THEN a clear error names the prop
    let app: App | undefined;
    expect(() => {
      app = testApp();
      new StarterStack(app, 'Starter', { clusterName: 'acme', ...props });
    }).toThrow(message);
    // AND nothing was defined: the checks run before the stack itself is created
    expect(app!.node.children.length).toBe(0);
  });
});

describe('starter context', () => {
  const ctx = (values: Record<string, unknown>) => (key: string) => values[key];

  test('`stack` chooses the stack, cluster by default; anything else is refused by name', () => {
    expect(stackKindFromContext(ctx({}))).toBe('cluster');
    expect(stackKindFromContext(ctx({ stack: 'starter' }))).toBe('starter');
    expect(() => stackKindFromContext(ctx({ stack: 'single' }))).toThrow(/stack: must be one of cluster, starter, got 'single'/);
    expect(starterStackName('acme')).toBe('Teleport-acme-starter');
  });

  test('reads command-line strings into starter props; an empty domainName means none', () => {
    // GIVEN context as `cdk synth -c key=value` delivers it
    const props = starterPropsFromContext(
      ctx({
        stack: 'starter',
        clusterName: 'acme',
        domainName: '',
        storage: 'dynamodb',
        instanceType: 't3.large',
        vpcId: 'vpc-0123456789abcdef0',
        availabilityZones: 'eu-west-1a,eu-west-1b',
        publicSubnetIds: 'subnet-0000000000000000a, subnet-0000000000000000b',
        kubernetes: 'no',
        allowedCidrs: '203.0.113.0/24',
      }),
    );
    // THEN
    expect(props).toEqual({
      clusterName: 'acme',
      storage: 'dynamodb',
      instanceType: 't3.large',
      existingVpc: EXISTING_VPC,
      kubernetes: false,
      allowedCidrs: ['203.0.113.0/24'],
    });
    // AND they build
    expect(() => new StarterStack(testApp(), 'S', props)).not.toThrow();
  });

  test("letsEncryptEmail is read from the context", () => {
    const props = starterPropsFromContext(
      ctx({ clusterName: 'acme', domainName: 'teleport.example.com', hostedZoneId: 'Z0123456789ABCDEFGHIJ', hostedZoneName: 'example.com', letsEncryptEmail: 'ops@example.com' }),
    );
    expect(props).toMatchObject({ domainName: 'teleport.example.com', letsEncryptEmail: 'ops@example.com' });
    expect(() => new StarterStack(testApp(), 'S', props)).not.toThrow();
  });

  test('an invalid context lists every bad key at once', () => {
    let message = '';
    try {
      starterPropsFromContext(ctx({ storage: 'ebs', kubernetes: 'maybe', hostedZoneId: 'Z0123456789ABCDEFGHIJ', vpcId: 'vpc-0123456789abcdef0' }));
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message.split('\n')).toEqual([
      'invalid CDK context:',
      '  clusterName: context clusterName is required (-c clusterName=...)',
      expect.stringMatching(/^ {2}kubernetes: /),
      "  storage: must be one of local, dynamodb, got 'ebs'",
      '  hostedZoneId, hostedZoneName: give both, or neither',
      '  vpcId: needs availabilityZones and publicSubnetIds',
    ]);
  });
});
