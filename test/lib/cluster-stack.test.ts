import * as fs from 'node:fs';
import * as path from 'node:path';
import { Stack } from 'aws-cdk-lib';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Template } from 'aws-cdk-lib/assertions';
import { actions, ingress, logicalId, one, standIn, statements, type Res, testApp, userDataConf } from '../helpers/cdk';
import { ClusterStack, ClusterStackProps } from '../../lib/cluster-stack';
import { run } from '../helpers/proc';
import { readmeCommands } from '../helpers/readme';
import { scratchDir } from '../helpers/scratch';
import { AUTH_BUCKET_ACTIONS, AUTH_KMS_ACTIONS, AUTH_OBJECT_ACTIONS, AUTH_STREAM_ACTIONS, AUTH_TABLE_ACTIONS } from '../../lib/auth-tier';
import { AGENT_LOG_ACTIONS, LOGS_KEY_ACTIONS } from '../../lib/telemetry';
import { parse } from 'yaml';
import { METRICS_NAMESPACE, PublishedMetrics } from '../../runtime/contract/telemetry';
import { agentConfig } from '../../runtime/instance/agent';
import { validateConf } from '../../runtime/instance/conf';


function synth(props: Partial<ClusterStackProps> = {}): Template {
  // No Lambda bundling here: the `cdk synth` process test (cdk-synth.test.ts) bundles the handlers for real.
  const app = testApp({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new ClusterStack(app, 'Cluster', { clusterName: 'acme', domainName: 'teleport.example.com', ...props });
  return Template.fromStack(stack);
}




/** The conf file lines written by a launch template's user data, with tokens shown as <Ref>. */
function confLines(t: Template, tier: string): string[] {
  const lt = one(t, 'AWS::EC2::LaunchTemplate', `${tier}Instances`);
  const parts: unknown[] = lt.Properties.LaunchTemplateData.UserData['Fn::Base64']['Fn::Join'][1];
  const text = parts.map((p) => (typeof p === 'string' ? p : '<token>')).join('');
  const body = text.split("<<'TELEPORT_CONF'\n")[1].split('\nTELEPORT_CONF')[0];
  return body.split('\n');
}

describe('ClusterStack: new VPC, no certificate (NLB passes 443 through)', () => {
  // GIVEN the default cluster
  const t = synth();
  const authSg = logicalId(t, 'AWS::EC2::SecurityGroup', 'AuthInstanceSecurityGroup');
  const authLbSg = logicalId(t, 'AWS::EC2::SecurityGroup', 'AuthLoadBalancerSecurityGroup');
  const proxySg = logicalId(t, 'AWS::EC2::SecurityGroup', 'ProxyInstanceSecurityGroup');
  const nlbSg = logicalId(t, 'AWS::EC2::SecurityGroup', 'ProxyNlbSecurityGroup');
  const nodeSg = logicalId(t, 'AWS::EC2::SecurityGroup', 'NodesInstanceSecurityGroup');

  test('a new VPC with public and private subnets in two zones and a NAT gateway per zone', () => {
    t.resourceCountIs('AWS::EC2::VPC', 1);
    t.resourceCountIs('AWS::EC2::Subnet', 4);
    t.resourceCountIs('AWS::EC2::NatGateway', 2);
    t.hasResourceProperties('AWS::EC2::FlowLog', { LogDestinationType: 's3', TrafficType: 'ALL' });
  });

  test('gateway endpoints for S3 and DynamoDB in every route table, so state, audit and recordings bypass the NAT gateways', () => {
    const endpoints = Object.values(t.findResources('AWS::EC2::VPCEndpoint')) as Res[];
    const routeTables = Object.keys(t.findResources('AWS::EC2::RouteTable')).sort();
    expect(routeTables).toHaveLength(4);
    const services = endpoints.map((e) => {
      expect(e.Properties.VpcEndpointType).toBe('Gateway');
      expect(e.Properties.RouteTableIds.map((r: { Ref: string }) => r.Ref).sort()).toEqual(routeTables);
      return JSON.stringify(e.Properties.ServiceName).match(/\.(s3|dynamodb)"/)![1];
    });
    expect(services.sort()).toEqual(['dynamodb', 's3']);
  });

  test('the auth NLB is internal and listens on 3025 only', () => {
    const lb = one(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer', 'AuthLoadBalancer');
    expect(lb.Properties).toMatchObject({ Scheme: 'internal', Type: 'network', Name: 'acme-auth' });
    const listeners = Object.values(t.findResources('AWS::ElasticLoadBalancingV2::Listener')) as Res[];
    const authListeners = listeners.filter((l) => l.Properties.LoadBalancerArn.Ref.startsWith('AuthLoadBalancer'));
    expect(authListeners.map((l) => [l.Properties.Port, l.Properties.Protocol])).toEqual([[3025, 'TCP']]);
  });

  test('the proxy NLB is internet-facing with 3023, 3024 and 443 -> 3080 only', () => {
    const lb = one(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer', 'ProxyNlb');
    expect(lb.Properties).toMatchObject({ Scheme: 'internet-facing', Type: 'network', Name: 'acme-proxy' });
    const listeners = (Object.values(t.findResources('AWS::ElasticLoadBalancingV2::Listener')) as Res[])
      .filter((l) => l.Properties.LoadBalancerArn.Ref.startsWith('ProxyNlb'))
      .map((l) => [l.Properties.Port, l.Properties.Protocol]);
    expect(listeners.sort()).toEqual([[3023, 'TCP'], [3024, 'TCP'], [443, 'TCP']].sort());
    t.resourceCountIs('AWS::ElasticLoadBalancingV2::LoadBalancer', 2);
  });

  test('the web target group forwards to 3080 and health-checks /webapi/ping over HTTPS', () => {
    t.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      Port: 3080,
      Protocol: 'TCP',
      HealthCheckProtocol: 'HTTPS',
      HealthCheckPath: '/webapi/ping',
    });
  });

  test('security groups carry exactly the firewall table ports', () => {
    // THEN auth servers accept 3025 from their load balancer only
    expect(ingress(t, authSg)).toEqual([`3025-3025<-${authLbSg}`]);
    // the auth load balancer accepts 3025 from proxies and nodes only
    expect(ingress(t, authLbSg)).toEqual([`3025-3025<-${nodeSg}`, `3025-3025<-${proxySg}`].sort());
    // proxies accept their listener ports from the NLB only
    expect(ingress(t, proxySg)).toEqual([`3023-3023<-${nlbSg}`, `3024-3024<-${nlbSg}`, `3080-3080<-${nlbSg}`].sort());
    // the NLB is open to the allowed CIDRs on its listener ports
    expect(ingress(t, nlbSg)).toEqual(['3023-3023<-0.0.0.0/0', '3024-3024<-0.0.0.0/0', '443-443<-0.0.0.0/0'].sort());
    // nodes accept 3022 from the proxies only
    expect(ingress(t, nodeSg)).toEqual([`3022-3022<-${proxySg}`]);
  });

  test('instances have no allow-all egress: HTTPS out, plus the cluster ports they dial', () => {
    const sgs = t.findResources('AWS::EC2::SecurityGroup');
    for (const id of [authSg, proxySg, nodeSg]) {
      const inline = sgs[id].Properties.SecurityGroupEgress.map((e: any) => `${e.IpProtocol}:${e.FromPort}->${e.CidrIp}`);
      expect(inline).toEqual(['tcp:443->0.0.0.0/0']);
    }
    const egress = (Object.values(t.findResources('AWS::EC2::SecurityGroupEgress')) as Res[]).map(
      (e) => `${e.Properties.GroupId['Fn::GetAtt'][0]}:${e.Properties.FromPort}->${e.Properties.DestinationSecurityGroupId['Fn::GetAtt'][0]}`,
    );
    expect(egress.filter((e) => e.startsWith(proxySg)).sort()).toEqual([`${proxySg}:3022->${nodeSg}`, `${proxySg}:3025->${authLbSg}`].sort());
    expect(egress.filter((e) => e.startsWith(nodeSg))).toEqual([`${nodeSg}:3025->${authLbSg}`]);
  });

  test('the auth role has the exact DynamoDB, Streams, S3, KMS and SSM actions on named resources', () => {
    const s = statements(t, 'AuthRole');
    expect(Object.keys(s).sort()).toEqual(
      ['ClusterParameters', 'DataKey', 'InstanceTelemetry', 'Recordings', 'RecordingsBucket', 'SignalReadiness', 'SsmAgentRegister', 'SsmSessionManager', 'StateTableStream', 'Tables', 'TargetHealth'].sort(),
    );
    expect(actions(s.Tables.Action)).toEqual([...AUTH_TABLE_ACTIONS].sort());
    expect(actions(s.Tables.Action)).toEqual([
      'dynamodb:BatchWriteItem',
      'dynamodb:DeleteItem',
      'dynamodb:DescribeTable',
      'dynamodb:DescribeTimeToLive',
      'dynamodb:GetItem',
      'dynamodb:PutItem',
      'dynamodb:Query',
      'dynamodb:UpdateItem',
    ]);
    const state = logicalId(t, 'AWS::DynamoDB::Table', 'StorageStateTable');
    const events = logicalId(t, 'AWS::DynamoDB::Table', 'StorageEventsTable');
    expect(s.Tables.Resource).toEqual([
      { 'Fn::GetAtt': [state, 'Arn'] },
      { 'Fn::GetAtt': [events, 'Arn'] },
      { 'Fn::Join': ['', [{ 'Fn::GetAtt': [events, 'Arn'] }, '/index/timesearch']] },
    ]);
    expect(actions(s.StateTableStream.Action)).toEqual([...AUTH_STREAM_ACTIONS].sort());
    expect(actions(s.StateTableStream.Action)).toEqual(
      ['dynamodb:DescribeStream', 'dynamodb:GetRecords', 'dynamodb:GetShardIterator', 'dynamodb:ListStreams'],
    );
    expect(s.StateTableStream.Resource).toEqual({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [state, 'Arn'] }, '/stream/*']] });
    expect(actions(s.Recordings.Action)).toEqual([...AUTH_OBJECT_ACTIONS].sort());
    expect(JSON.stringify(s.Recordings.Resource)).toContain('/records/*');
    expect(actions(s.RecordingsBucket.Action)).toEqual([...AUTH_BUCKET_ACTIONS].sort());
    expect(actions(s.DataKey.Action)).toEqual([...AUTH_KMS_ACTIONS].sort());
    expect(actions(s.ClusterParameters.Action)).toEqual(['ssm:GetParameter', 'ssm:GetParameters', 'ssm:GetParametersByPath']);
    const params = JSON.stringify(s.ClusterParameters.Resource);
    expect(params).toContain(':parameter/teleport/acme"');
    expect(params).toContain(':parameter/teleport/acme/*"');
    expect(actions(s.SsmAgentRegister.Action)).toEqual(['ssm:UpdateInstanceInformation']);
  });

  test.each(['Proxy', 'Nodes'])('the %s role reads only its own token and the CA pin, and decrypts only via SSM', (tier) => {
    const s = statements(t, `${tier}Role`);
    const role = tier === 'Proxy' ? 'proxy' : 'node';
    expect(Object.keys(s).sort()).toEqual(['DecryptSecureStrings', 'InstanceTelemetry', 'JoinParameters', 'SignalReadiness', 'SsmAgentRegister', 'SsmSessionManager', ...(tier === 'Proxy' ? ['TargetHealth'] : [])]);
    expect(actions(s.JoinParameters.Action)).toEqual(['ssm:GetParameter']);
    const resources = JSON.stringify(s.JoinParameters.Resource);
    expect(resources).toContain(`:parameter/teleport/acme/tokens/${role}"`);
    expect(resources).toContain(':parameter/teleport/acme/ca-pin"');
    expect(resources).not.toContain(`tokens/${role === 'proxy' ? 'node' : 'proxy'}`);
    expect(actions(s.DecryptSecureStrings.Action)).toEqual(['kms:Decrypt']);
    expect(JSON.stringify(s.DecryptSecureStrings.Condition)).toContain('kms:ViaService');
    expect(actions(s.SsmAgentRegister.Action)).toEqual(['ssm:UpdateInstanceInformation']);
  });

  test('no role has a service wildcard action or a managed policy', () => {
    for (const role of Object.values(t.findResources('AWS::IAM::Role')) as Res[]) {
      expect(role.Properties.ManagedPolicyArns).toBeUndefined();
      for (const p of role.Properties.Policies ?? []) {
        for (const s of p.PolicyDocument.Statement) {
          for (const a of [s.Action].flat()) expect(a).not.toMatch(/\*/);
        }
      }
    }
    expect(JSON.stringify(t.toJSON())).not.toContain('dynamodb:*');
  });

  test('launch templates require IMDSv2 and encrypted gp3 root volumes', () => {
    const lts = Object.values(t.findResources('AWS::EC2::LaunchTemplate')) as Res[];
    expect(lts).toHaveLength(3);
    for (const lt of lts) {
      const data = lt.Properties.LaunchTemplateData;
      expect(data.MetadataOptions).toMatchObject({ HttpTokens: 'required', HttpPutResponseHopLimit: 1 });
      expect(data.BlockDeviceMappings).toEqual([
        { DeviceName: '/dev/xvda', Ebs: { DeleteOnTermination: true, Encrypted: true, VolumeSize: 20, VolumeType: 'gp3' } },
      ]);
      expect(data.IamInstanceProfile).toBeDefined();
    }
  });

  test('the AMI id is a CloudFormation SSM parameter resolved at deploy time, not a synth-time lookup', () => {
    const params = t.toJSON().Parameters as Record<string, { Type: string; Default: string }>;
    const ami = Object.values(params).filter((p) => p.Type === 'AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>');
    expect(ami).toEqual([expect.objectContaining({ Default: '/teleport/ami/latest' })]);
    for (const lt of Object.values(t.findResources('AWS::EC2::LaunchTemplate')) as Res[]) {
      expect(Object.keys(params)).toContain(lt.Properties.LaunchTemplateData.ImageId.Ref);
    }
  });

  test('user data writes /etc/teleport.d/conf with the contract variables of each role', () => {
    expect(confLines(t, 'Auth')).toEqual([
      'TELEPORT_ROLE="auth"',
      'EC2_REGION="<token>"',
      'TELEPORT_CLUSTER_NAME="acme"',
      'TELEPORT_DOMAIN_NAME="teleport.example.com"',
      'TELEPORT_AUTH_SERVER_LB="<token>"',
      'TELEPORT_DYNAMO_TABLE_NAME="<token>"',
      'TELEPORT_DYNAMO_EVENTS_TABLE_NAME="<token>"',
      'TELEPORT_S3_BUCKET="<token>"',
      'TELEPORT_SSM_KEY_ARN="<token>"',
      'USE_ACM="false"',
      'TELEPORT_LOG_GROUP="<token>"',
      'TELEPORT_METRICS_LOG_GROUP="<token>"',
      'TELEPORT_CFN_STACK="Cluster"',
      'TELEPORT_CFN_RESOURCE="AuthInstancesGroupASG203FD7FE"',
      'TELEPORT_TARGET_GROUP_ARNS="<token>"',
    ]);
    expect(confLines(t, 'Proxy')).toEqual([
      'TELEPORT_ROLE="proxy"',
      'EC2_REGION="<token>"',
      'TELEPORT_CLUSTER_NAME="acme"',
      'TELEPORT_DOMAIN_NAME="teleport.example.com"',
      'TELEPORT_EXTERNAL_HOSTNAME="teleport.example.com"',
      'TELEPORT_EXTERNAL_PORT="443"',
      'TELEPORT_AUTH_SERVER_LB="<token>"',
      'TELEPORT_PROXY_SERVER_LB="<token>"',
      'USE_ACM="false"',
      'TELEPORT_LOG_GROUP="<token>"',
      'TELEPORT_METRICS_LOG_GROUP="<token>"',
      'TELEPORT_CFN_STACK="Cluster"',
      'TELEPORT_CFN_RESOURCE="ProxyInstancesGroupASG6CD93D1C"',
      'TELEPORT_TARGET_GROUP_ARNS="<token>,<token>,<token>"',
    ]);
    expect(confLines(t, 'Nodes')).toEqual([
      'TELEPORT_ROLE="node"',
      'EC2_REGION="<token>"',
      'TELEPORT_CLUSTER_NAME="acme"',
      'TELEPORT_DOMAIN_NAME="teleport.example.com"',
      'TELEPORT_AUTH_SERVER_LB="<token>"',
      'TELEPORT_LOG_GROUP="<token>"',
      'TELEPORT_METRICS_LOG_GROUP="<token>"',
      'TELEPORT_CFN_STACK="Cluster"',
      'TELEPORT_CFN_RESOURCE="NodesInstancesGroupASG6B7D8025"',
    ]);
    // the tokens are the real table/bucket/LB references
    const auth = JSON.stringify(one(t, 'AWS::EC2::LaunchTemplate', 'AuthInstances').Properties.LaunchTemplateData.UserData);
    expect(auth).toContain(`{"Ref":"${logicalId(t, 'AWS::DynamoDB::Table', 'StorageStateTable')}"}`);
    expect(auth).toContain(`{"Ref":"${logicalId(t, 'AWS::S3::Bucket', 'StorageRecordingsBucket')}"}`);
    expect(auth).toContain(`["${logicalId(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer', 'AuthLoadBalancer')}","DNSName"]`);
  });

  test('each tier signals only its own stack; tiers behind a load balancer may read their targets\' health', () => {
    for (const tier of ['AuthRole', 'ProxyRole', 'NodesRole']) {
      const s = statements(t, tier);
      expect(actions(s.SignalReadiness.Action)).toEqual(['cloudformation:SignalResource']);
      expect(JSON.stringify(s.SignalReadiness.Resource)).toContain(':stack/Cluster/*');
      if (tier === 'NodesRole') expect(s.TargetHealth).toBeUndefined();
      else expect(actions(s.TargetHealth.Action)).toEqual(['elasticloadbalancing:DescribeTargetHealth']);
    }
  });

  test('creation and rolling updates wait for each new instance to signal that it is healthy', () => {
    for (const [id, asg] of Object.entries(t.findResources('AWS::AutoScaling::AutoScalingGroup')) as [string, Res & { UpdatePolicy: any; CreationPolicy: any }][]) {
      expect(asg.UpdatePolicy.AutoScalingRollingUpdate).toMatchObject({ WaitOnResourceSignals: true, PauseTime: 'PT25M', MinInstancesInService: 1, MaxBatchSize: 1 });
      expect(asg.CreationPolicy.ResourceSignal).toEqual({ Count: Number(asg.Properties.MinSize), Timeout: 'PT25M' });
      // the instances learn where to signal from their conf: this stack and this group
      const ltId = asg.Properties.LaunchTemplate.LaunchTemplateId.Ref;
      const conf = userDataConf(t.findResources('AWS::EC2::LaunchTemplate')[ltId].Properties.LaunchTemplateData.UserData, ltId);
      expect(conf).toContain('TELEPORT_CFN_STACK="Cluster"');
      expect(conf).toContain(`TELEPORT_CFN_RESOURCE="${id}"`);
      // the instance waits for each target group of its group to report it healthy before it signals
      const groups = (asg.Properties.TargetGroupARNs ?? []).map((g: { Ref: string }) => g.Ref);
      if (groups.length === 0) expect(conf).not.toContain('TELEPORT_TARGET_GROUP_ARNS');
      else expect(conf).toContain(`TELEPORT_TARGET_GROUP_ARNS="${groups.map((g: string) => standIn({ Ref: g })).join(',')}"`);
    }
  });

  test('auth and proxy groups replace instances on ELB health and roll one at a time, keeping one in service', () => {
    for (const tier of ['Auth', 'Proxy']) {
      const [asg] = Object.entries(t.findResources('AWS::AutoScaling::AutoScalingGroup')).filter(([id]) => id.startsWith(tier)).map(([, r]) => r);
      expect(asg.Properties).toMatchObject({ HealthCheckType: 'ELB', MinSize: '2', MaxSize: '4' });
      expect(asg.Properties.DesiredCapacity).toBeUndefined();
      expect(asg.UpdatePolicy.AutoScalingRollingUpdate).toMatchObject({ MinInstancesInService: 1, MaxBatchSize: 1 });
    }
    // nodes have no load balancer: EC2 status checks only
    const [nodes] = Object.entries(t.findResources('AWS::AutoScaling::AutoScalingGroup')).filter(([id]) => id.startsWith('Nodes')).map(([, r]) => r);
    expect(nodes.Properties).toMatchObject({ HealthCheckType: 'EC2', MinSize: '1', MaxSize: '10' });
    expect(nodes.UpdatePolicy.AutoScalingRollingUpdate).toMatchObject({ MinInstancesInService: 1 });
  });

  test('the auth group is created and updated first: the proxy and node groups depend on it, and on no other group', () => {
    const groups = t.findResources('AWS::AutoScaling::AutoScalingGroup') as Record<string, Res & { DependsOn?: string[] }>;
    const auth = logicalId(t, 'AWS::AutoScaling::AutoScalingGroup', 'Auth');
    const groupDeps = (id: string) => (groups[id].DependsOn ?? []).filter((d) => d in groups);
    expect(groupDeps(auth)).toEqual([]);
    for (const tier of ['Proxy', 'Nodes']) expect(groupDeps(logicalId(t, 'AWS::AutoScaling::AutoScalingGroup', tier))).toEqual([auth]);
  });

  test('outputs name the proxy URL, SSM paths, tables and bucket', () => {
    const outputs = t.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(outputs.ProxyUrl.Value).toBe('https://teleport.example.com');
    expect(outputs.SsmParameterPrefix.Value).toBe('/teleport/acme');
    expect(outputs.SsmTokenPathNode.Value).toBe('/teleport/acme/tokens/node');
    expect(outputs.SsmTokenPathProxy.Value).toBe('/teleport/acme/tokens/proxy');
    expect(outputs.SsmCaPinPath.Value).toBe('/teleport/acme/ca-pin');
    expect(outputs.StateTableName.Value).toEqual({ Ref: logicalId(t, 'AWS::DynamoDB::Table', 'StorageStateTable') });
    expect(outputs.EventsTableName.Value).toEqual({ Ref: logicalId(t, 'AWS::DynamoDB::Table', 'StorageEventsTable') });
    expect(outputs.RecordingsBucketName.Value).toEqual({ Ref: logicalId(t, 'AWS::S3::Bucket', 'StorageRecordingsBucket') });
  });

  test('outputs give the cluster URL, a Session Manager shell on an auth server and the first-user command; the auth role lets the SSM agent serve it', () => {
    // THEN the cluster URL, the auth group, the shell and the tctl line are outputs
    const outputs = t.toJSON().Outputs as Record<string, { Value: any; Description?: string }>;
    const authGroup = logicalId(t, 'AWS::AutoScaling::AutoScalingGroup', 'AuthInstancesGroup');
    expect(outputs.ProxyUrl).toEqual({ Value: 'https://teleport.example.com', Description: 'The cluster URL: web UI and tsh --proxy address' });
    expect(outputs.AuthAutoScalingGroupName.Value).toEqual({ Ref: authGroup });
    expect(outputs.FirstUserCommand.Value).toBe('sudo tctl users add <username> root,ec2-user');
    const parts: unknown[] = outputs.ShellCommand.Value['Fn::Join'][1];
    expect(parts.filter((p) => typeof p !== 'string')).toEqual([{ Ref: 'AWS::Region' }, { Ref: 'AWS::Region' }, { Ref: authGroup }]);
    expect(parts[0]).toBe('aws ssm start-session --region ');
    // AND the auth instances' role has what the SSM agent needs for Session Manager, action by action
    const s = statements(t, 'AuthRole');
    expect(actions(s.SsmAgentRegister.Action)).toEqual(['ssm:UpdateInstanceInformation']);
    expect(actions(s.SsmSessionManager.Action)).toEqual([
      'ssmmessages:CreateControlChannel',
      'ssmmessages:CreateDataChannel',
      'ssmmessages:OpenControlChannel',
      'ssmmessages:OpenDataChannel',
    ]);
  });

  test('the shell command, run by bash, opens the session on the first in-service healthy auth instance', async () => {
    // GIVEN the command with the stack's values (region, group name) and an `aws` CLI stand-in that answers
    // describe-auto-scaling-groups through a JMESPath evaluation of --query and records start-session
    const parts: unknown[] = (t.toJSON().Outputs.ShellCommand.Value as any)['Fn::Join'][1];
    const command = parts.map((p) => (typeof p === 'string' ? p : (p as { Ref: string }).Ref === 'AWS::Region' ? 'eu-west-1' : 'Teleport-acme-AuthGroup-X1')).join('');
    const dir = scratchDir('shell-command-');
    fs.writeFileSync(path.join(dir, 'aws'), FAKE_AWS, { mode: 0o755 });
    // WHEN bash runs it
    const r = await run('bash', ['-c', command], { env: { PATH: `${dir}:${process.env.PATH}`, FAKE_AWS_LOG: path.join(dir, 'calls') } });
    // THEN the session is started in the stack's region on the first InService, Healthy instance of the auth group
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(fs.readFileSync(path.join(dir, 'calls'), 'utf8').trim().split('\n')).toEqual([
      'autoscaling describe-auto-scaling-groups --region eu-west-1 --auto-scaling-group-names Teleport-acme-AuthGroup-X1',
      'ssm start-session --region eu-west-1 --target i-0healthy',
    ]);
  });

  test('the README\'s walk-through runs the same shell and first-user commands', () => {
    // GIVEN the outputs with the README's example region and the group name as a placeholder
    const outputs = t.toJSON().Outputs as Record<string, { Value: any }>;
    const parts: unknown[] = outputs.ShellCommand.Value['Fn::Join'][1];
    const shell = parts.map((p) => (typeof p === 'string' ? p : (p as { Ref: string }).Ref === 'AWS::Region' ? 'eu-west-1' : '<AuthAutoScalingGroupName>')).join('');
    // WHEN the README's Deploy to AWS commands are read
    const commands = readmeCommands('Deploy to AWS').map((c) => c.text);
    // THEN it shows exactly these, the user named
    expect(commands.filter((c) => c.startsWith('aws ssm start-session') && c.includes('autoscaling'))).toEqual([shell]);
    expect(commands).toContain(outputs.FirstUserCommand.Value.replace('<username>', 'alice'));
    expect(commands).toContain('tsh login --proxy=teleport.example.com:443 --user=alice');
  });
});

describe('ClusterStack: ACM certificate, hosted zone, restricted CIDRs', () => {
  // GIVEN a certificate ARN, a hosted zone and one allowed CIDR
  const certificateArn = 'arn:aws:acm:eu-west-1:123456789012:certificate/0f2e5a1c-7d3b-4c1e-9a8b-123456789abc';
  const t = synth({
    certificateArn,
    hostedZone: { hostedZoneId: 'Z0123456789ABCDEFGHIJ', zoneName: 'example.com' },
    allowedCidrs: ['203.0.113.0/24'],
  });

  test('an ALB terminates TLS on 443 with the certificate and a TLS 1.2+/1.3 policy', () => {
    const alb = one(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer', 'ProxyAlb');
    expect(alb.Properties).toMatchObject({ Scheme: 'internet-facing', Type: 'application', Name: 'acme-web' });
    expect(alb.Properties.LoadBalancerAttributes).toEqual(
      expect.arrayContaining([{ Key: 'routing.http.drop_invalid_header_fields.enabled', Value: 'true' }]),
    );
    t.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Port: 443,
      Protocol: 'HTTPS',
      Certificates: [{ CertificateArn: certificateArn }],
      SslPolicy: 'ELBSecurityPolicy-TLS13-1-2-2021-06',
    });
  });

  test('the ALB target group is HTTPS to 3080 with the /webapi/ping health check', () => {
    t.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      Port: 3080,
      Protocol: 'HTTPS',
      HealthCheckPath: '/webapi/ping',
      HealthCheckProtocol: 'HTTPS',
    });
  });

  test('the NLB carries 3023 and 3024 only (no 443: the ALB has it; no 3026: nothing serves it)', () => {
    const listeners = (Object.values(t.findResources('AWS::ElasticLoadBalancingV2::Listener')) as Res[])
      .filter((l) => l.Properties.LoadBalancerArn.Ref.startsWith('ProxyNlb'))
      .map((l) => l.Properties.Port)
      .sort();
    expect(listeners).toEqual([3023, 3024]);
  });

  test('only the allowed CIDR reaches the public listeners', () => {
    const nlbSg = logicalId(t, 'AWS::EC2::SecurityGroup', 'ProxyNlbSecurityGroup');
    const albSg = logicalId(t, 'AWS::EC2::SecurityGroup', 'ProxyAlbSecurityGroup');
    const proxySg = logicalId(t, 'AWS::EC2::SecurityGroup', 'ProxyInstanceSecurityGroup');
    expect(ingress(t, nlbSg)).toEqual(['3023-3023<-203.0.113.0/24', '3024-3024<-203.0.113.0/24']);
    expect(ingress(t, albSg)).toEqual(['443-443<-203.0.113.0/24']);
    expect(ingress(t, proxySg)).toEqual(
      [`3023-3023<-${nlbSg}`, `3024-3024<-${nlbSg}`, `3080-3080<-${albSg}`].sort(),
    );
  });

  test('Route 53 aliases the domain to the ALB in the given zone (no lookup)', () => {
    const alb = logicalId(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer', 'ProxyAlb');
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

  test('proxies and auth are told USE_ACM=true', () => {
    expect(confLines(t, 'Proxy')).toContain('USE_ACM="true"');
    expect(confLines(t, 'Auth')).toContain('USE_ACM="true"');
  });
});

describe('ClusterStack: existing VPC and a DNS-validated certificate', () => {
  // GIVEN an existing VPC by ids and createCertificate
  const t = synth({
    existingVpc: {
      vpcId: 'vpc-0123456789abcdef0',
      availabilityZones: ['eu-west-1a', 'eu-west-1b'],
      publicSubnetIds: ['subnet-0000000000000000a', 'subnet-0000000000000000b'],
      privateSubnetIds: ['subnet-0000000000000000c', 'subnet-0000000000000000d'],
    },
    hostedZone: { hostedZoneId: 'Z0123456789ABCDEFGHIJ', zoneName: 'example.com' },
    createCertificate: true,
    notificationsTopic: sns.Topic.fromTopicArn(new Stack(testApp(), 'Ops'), 'Topic', 'arn:aws:sns:eu-west-1:123456789012:ops'),
  });

  test('every group sends its scaling notifications to the given topic', () => {
    const groups = Object.values(t.findResources('AWS::AutoScaling::AutoScalingGroup')) as Res[];
    expect(groups).toHaveLength(3);
    for (const g of groups) {
      expect(g.Properties.NotificationConfigurations).toEqual([
        expect.objectContaining({ TopicARN: 'arn:aws:sns:eu-west-1:123456789012:ops' }),
      ]);
    }
  });

  test('no VPC resources are created and the instances go into the given private subnets', () => {
    t.resourceCountIs('AWS::EC2::VPC', 0);
    t.resourceCountIs('AWS::EC2::Subnet', 0);
    t.resourceCountIs('AWS::EC2::NatGateway', 0);
    for (const asg of Object.values(t.findResources('AWS::AutoScaling::AutoScalingGroup')) as Res[]) {
      expect(asg.Properties.VPCZoneIdentifier).toEqual(['subnet-0000000000000000c', 'subnet-0000000000000000d']);
    }
    t.hasResourceProperties('AWS::EC2::SecurityGroup', { VpcId: 'vpc-0123456789abcdef0' });
    const alb = one(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer', 'ProxyAlb');
    expect(alb.Properties.Subnets).toEqual(['subnet-0000000000000000a', 'subnet-0000000000000000b']);
  });

  test('the certificate is requested for the domain and its wildcard, validated in the zone', () => {
    t.hasResourceProperties('AWS::CertificateManager::Certificate', {
      DomainName: 'teleport.example.com',
      SubjectAlternativeNames: ['*.teleport.example.com'],
      ValidationMethod: 'DNS',
      DomainValidationOptions: [{ DomainName: 'teleport.example.com', HostedZoneId: 'Z0123456789ABCDEFGHIJ' }],
    });
  });
});

describe('ClusterStack: concrete account and region', () => {
  // GIVEN an environment-specific stack with explicit zones and a certificate
  const t = synth({
    env: { account: '123456789012', region: 'eu-west-1' },
    availabilityZones: ['eu-west-1a', 'eu-west-1b'],
    certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/0f2e5a1c-7d3b-4c1e-9a8b-123456789abc',
  });

  test('the subnets use the given zones (no synth-time lookup) and the ALB logs to the logs bucket', () => {
    const zones = (Object.values(t.findResources('AWS::EC2::Subnet')) as Res[]).map((s) => s.Properties.AvailabilityZone);
    expect([...new Set(zones)].sort()).toEqual(['eu-west-1a', 'eu-west-1b']);
    const alb = one(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer', 'ProxyAlb');
    expect(alb.Properties.LoadBalancerAttributes).toEqual(
      expect.arrayContaining([
        { Key: 'access_logs.s3.enabled', Value: 'true' },
        { Key: 'access_logs.s3.bucket', Value: { Ref: logicalId(t, 'AWS::S3::Bucket', 'StorageLogsBucket') } },
      ]),
    );
  });

  test('without zones a concrete environment is refused instead of looked up', () => {
    expect(() => new ClusterStack(testApp(), 'C', { clusterName: 'acme', domainName: 'teleport.example.com', env: { account: '123456789012', region: 'eu-west-1' } })).toThrow(
      /availabilityZones must be given for a new VPC when the stack has an account and region/,
    );
  });
});

/**
 * An `aws` CLI stand-in: `autoscaling describe-auto-scaling-groups` answers a group with a pending, an
 * unhealthy and two healthy in-service instances, filtered by `--query` with a JMESPath implementation
 * (the language the CLI's --query speaks) and printed as `--output text` prints one value; every call
 * is logged to $FAKE_AWS_LOG without its query and output options.
 */
const FAKE_AWS = `#!${process.execPath}
const fs = require('node:fs');
const jmespath = require(${JSON.stringify(require.resolve('jmespath'))});
const args = process.argv.slice(2);
const opt = (name) => args[args.indexOf(name) + 1];
const logged = args.filter((a, i) => !['--query', '--output'].includes(a) && !['--query', '--output'].includes(args[i - 1]));
fs.appendFileSync(process.env.FAKE_AWS_LOG, logged.join(' ') + '\\n');
if (args[0] === 'autoscaling' && args[1] === 'describe-auto-scaling-groups') {
  const Instances = [
    { InstanceId: 'i-0pending', LifecycleState: 'Pending', HealthStatus: 'Healthy' },
    { InstanceId: 'i-0unhealthy', LifecycleState: 'InService', HealthStatus: 'Unhealthy' },
    { InstanceId: 'i-0healthy', LifecycleState: 'InService', HealthStatus: 'Healthy' },
    { InstanceId: 'i-0second', LifecycleState: 'InService', HealthStatus: 'Healthy' },
  ];
  if (opt('--output') !== 'text') { console.error('expected --output text'); process.exit(2); }
  const result = jmespath.search({ AutoScalingGroups: [{ AutoScalingGroupName: opt('--auto-scaling-group-names'), Instances }] }, opt('--query'));
  console.log(result === null ? 'None' : String(result));
} else if (!(args[0] === 'ssm' && args[1] === 'start-session')) {
  console.error('unexpected call: ' + args.join(' '));
  process.exit(2);
}
`;

describe('ClusterStack: alarms, their topic and the dashboard', () => {
  // GIVEN the default cluster with an alarm e-mail
  const t = synth({ alarmEmail: 'ops@example.com' });
  const alarms = Object.values(t.findResources('AWS::CloudWatch::Alarm')) as Res[];
  const topic = logicalId(t, 'AWS::SNS::Topic', 'MonitoringTopic');
  /** The alarms whose metric (or one of its math inputs) has these dimensions' references. */
  const watching = (ref: string) => alarms.filter((a) => JSON.stringify(a.Properties).includes(ref));
  /** The alarm's metric names, whether it has one metric or a list (math, or a labelled metric). */
  const metricNames = (a: Res): string[] => (a.Properties.MetricName ? [a.Properties.MetricName] : a.Properties.Metrics.filter((m: any) => m.MetricStat).map((m: any) => m.MetricStat.Metric.MetricName));

  test('every target group has a no-healthy-target and a stuck-unhealthy-target alarm', () => {
    const groups = Object.keys(t.findResources('AWS::ElasticLoadBalancingV2::TargetGroup'));
    expect(groups.length).toBeGreaterThanOrEqual(3);
    for (const g of groups) {
      const metrics = watching(g).map((a) => [...metricNames(a), a.Properties.ComparisonOperator, a.Properties.EvaluationPeriods]);
      expect(metrics.sort()).toEqual([
        ['HealthyHostCount', 'LessThanThreshold', 2],
        ['UnHealthyHostCount', 'GreaterThanOrEqualToThreshold', 15],
      ]);
    }
  });

  test('every Lambda function of the stack has an errors and a throttles alarm', () => {
    const functions = Object.keys(t.findResources('AWS::Lambda::Function'));
    expect(functions.length).toBeGreaterThanOrEqual(3);
    for (const f of functions) {
      expect(watching(f).flatMap(metricNames).sort()).toEqual(['Errors', 'Throttles']);
    }
  });

  test('each DynamoDB table has an alarm on its throttled reads plus writes', () => {
    for (const table of [logicalId(t, 'AWS::DynamoDB::Table', 'StorageStateTable'), logicalId(t, 'AWS::DynamoDB::Table', 'StorageEventsTable')]) {
      const [alarm] = watching(table);
      expect(metricNames(alarm).sort()).toEqual(['ReadThrottleEvents', 'WriteThrottleEvents']);
      expect(alarm.Properties.Metrics.find((m: any) => m.Expression).Expression).toBe('r + w');
    }
  });

  test('every alarm notifies the topic when it fires and when it clears', () => {
    expect(alarms.length).toBeGreaterThan(0);
    for (const a of alarms) {
      expect(a.Properties.AlarmActions).toEqual([{ Ref: topic }]);
      expect(a.Properties.OKActions).toEqual([{ Ref: topic }]);
      expect(a.Properties.AlarmDescription).toMatch(/^Teleport acme: /);
    }
  });

  test('the topic is encrypted with a rotated key CloudWatch may use, requires TLS, and mails alarmEmail', () => {
    const keyId = one(t, 'AWS::SNS::Topic', 'MonitoringTopic').Properties.KmsMasterKeyId['Fn::GetAtt'][0];
    const key = t.findResources('AWS::KMS::Key')[keyId];
    expect(key.Properties.EnableKeyRotation).toBe(true);
    const cw = key.Properties.KeyPolicy.Statement.find((s: any) => s.Principal?.Service === 'cloudwatch.amazonaws.com');
    expect(actions(cw.Action)).toEqual(['kms:Decrypt', 'kms:GenerateDataKey*']);
    t.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com', TopicArn: { Ref: topic } });
    const policy = one(t, 'AWS::SNS::TopicPolicy', 'MonitoringTopicPolicy');
    expect(JSON.stringify(policy.Properties)).toContain('"aws:SecureTransport":"false"');
    t.hasOutput('AlarmTopicArn', { Value: { Ref: topic } });
  });

  test('one dashboard named after the cluster, showing the alarms', () => {
    t.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const d = one(t, 'AWS::CloudWatch::Dashboard');
    expect(d.Properties.DashboardName).toBe('teleport-acme');
    expect(JSON.stringify(d.Properties.DashboardBody)).toContain('"type\\":\\"alarm\\"');
  });

  test('no alarmEmail: no subscription; a malformed one is refused', () => {
    synth().resourceCountIs('AWS::SNS::Subscription', 0);
    expect(() => synth({ alarmEmail: 'ops at example' })).toThrow("alarmEmail must be one e-mail address such as ops@example.com, got 'ops at example'");
  });
});

describe('ClusterStack: logs and metrics leave the instances (CloudWatch agent)', () => {
  // GIVEN the default cluster
  const t = synth();
  const logGroups = Object.keys(t.findResources('AWS::Logs::LogGroup')).filter((id) => id.startsWith('Telemetry'));
  const logs = logicalId(t, 'AWS::Logs::LogGroup', 'TelemetryLogs');
  const metricsGroup = logicalId(t, 'AWS::Logs::LogGroup', 'TelemetryMetrics');
  const alarms = Object.values(t.findResources('AWS::CloudWatch::Alarm')) as Res[];
  const agentAlarms = alarms.filter((a) => a.Properties.Namespace === METRICS_NAMESPACE);

  test('two log groups, the units\' logs and the agent\'s metric events, kept 30 days by default, retained with the data; logRetentionDays changes it', () => {
    expect(logGroups.sort()).toEqual([logs, metricsGroup].sort());
    for (const g of logGroups) {
      expect(t.findResources('AWS::Logs::LogGroup')[g]).toMatchObject({ Properties: { RetentionInDays: 30 }, DeletionPolicy: 'Retain' });
    }
    const week = synth({ logRetentionDays: 7 });
    const weekGroups = Object.entries(week.findResources('AWS::Logs::LogGroup')).filter(([id]) => id.startsWith('Telemetry'));
    expect(weekGroups.map(([, g]) => g.Properties.RetentionInDays)).toEqual([7, 7]);
    t.hasOutput('LogGroupName', { Value: { Ref: logs } });
  });

  test('both groups are encrypted with their own rotating key, which CloudWatch Logs may use for this account\'s and region\'s log groups only', () => {
    const key = logicalId(t, 'AWS::KMS::Key', 'TelemetryKey');
    for (const g of logGroups) expect(t.findResources('AWS::Logs::LogGroup')[g].Properties.KmsKeyId).toEqual({ 'Fn::GetAtt': [key, 'Arn'] });
    const k = t.findResources('AWS::KMS::Key')[key];
    expect(k.Properties.EnableKeyRotation).toBe(true);
    const logsStatements = k.Properties.KeyPolicy.Statement.filter((st: any) => JSON.stringify(st.Principal ?? {}).includes('logs.'));
    expect(logsStatements).toHaveLength(1);
    const [st] = logsStatements;
    expect(st.Principal).toEqual({ Service: { 'Fn::Join': ['', ['logs.', { Ref: 'AWS::Region' }, '.amazonaws.com']] } });
    expect(actions(st.Action)).toEqual([...LOGS_KEY_ACTIONS].sort());
    expect(st.Condition).toEqual({
      ArnLike: {
        'kms:EncryptionContext:aws:logs:arn': { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':logs:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':log-group:*']] },
      },
    });
  });

  test('a retention CloudWatch Logs does not accept is refused, naming the prop and the accepted values', () => {
    expect(() => synth({ logRetentionDays: 10 })).toThrow(/^logRetentionDays must be one of the retention periods CloudWatch Logs accepts \(1, 3, 5, 7, 14, 30, .*3653 days\), got 10$/);
  });

  test.each(['Auth', 'Proxy', 'Nodes'])('the %s instances are told the two groups, and their role may write to exactly those (no PutMetricData, no other logs action)', (tier) => {
    expect(confLines(t, tier)).toEqual(expect.arrayContaining(['TELEPORT_LOG_GROUP="<token>"', 'TELEPORT_METRICS_LOG_GROUP="<token>"']));
    const userData = JSON.stringify(one(t, 'AWS::EC2::LaunchTemplate', `${tier}Instances`).Properties.LaunchTemplateData.UserData);
    expect(userData).toContain(`TELEPORT_LOG_GROUP=\\"",{"Ref":"${logs}"}`);
    expect(userData).toContain(`TELEPORT_METRICS_LOG_GROUP=\\"",{"Ref":"${metricsGroup}"}`);
    const s = statements(t, `${tier}Role`);
    expect(actions(s.InstanceTelemetry.Action)).toEqual([...AGENT_LOG_ACTIONS].sort());
    expect(actions(s.InstanceTelemetry.Action)).toEqual(['logs:CreateLogStream', 'logs:DescribeLogStreams', 'logs:PutLogEvents']);
    expect(s.InstanceTelemetry.Resource).toEqual([{ 'Fn::GetAtt': [logs, 'Arn'] }, { 'Fn::GetAtt': [metricsGroup, 'Arn'] }]);
    expect(s.InstanceTelemetry.Condition).toBeUndefined();
    for (const [sid, st] of Object.entries(s)) {
      if (sid === 'InstanceTelemetry') continue;
      expect([sid, actions(st.Action).filter((a) => a.startsWith('logs:') || a.startsWith('cloudwatch:'))]).toEqual([sid, []]);
    }
  });

  test('alarms on what the agent publishes: an auth server not ready, recordings waiting on a node, certificate issuance failing, each with a deliberate treatment of missing data', () => {
    const summary = agentAlarms.map((a) => ({
      metric: a.Properties.MetricName,
      dimensions: a.Properties.Dimensions,
      statistic: a.Properties.Statistic,
      period: a.Properties.Period,
      comparison: a.Properties.ComparisonOperator,
      threshold: a.Properties.Threshold,
      evaluationPeriods: a.Properties.EvaluationPeriods,
      missing: a.Properties.TreatMissingData,
    }));
    const dims = (role: string) => [
      { Name: 'ClusterName', Value: 'acme' },
      { Name: 'Role', Value: role },
    ];
    expect(summary.sort((a, b) => a.metric.localeCompare(b.metric))).toEqual([
      { metric: PublishedMetrics.certificateIssueFailures, dimensions: dims('auth'), statistic: 'Sum', period: 300, comparison: 'GreaterThanOrEqualToThreshold', threshold: 1, evaluationPeriods: 1, missing: 'notBreaching' },
      { metric: PublishedMetrics.recordingUploadsPending, dimensions: dims('node'), statistic: 'Maximum', period: 300, comparison: 'GreaterThanOrEqualToThreshold', threshold: 1, evaluationPeriods: 6, missing: 'notBreaching' },
      // No auth server reporting is no evidence of a ready auth tier: breaching.
      { metric: PublishedMetrics.ready, dimensions: dims('auth'), statistic: 'Minimum', period: 60, comparison: 'LessThanThreshold', threshold: 1, evaluationPeriods: 5, missing: 'breaching' },
    ]);
  });

  test('the alarms read what the agent config publishes: its namespace, its dimension names and values, and metrics it selects', () => {
    // GIVEN the agent config `teleport configure` writes for an auth and a node instance of this cluster
    const published = (role: 'auth' | 'node') => {
      const conf = validateConf({ TELEPORT_ROLE: role, TELEPORT_CLUSTER_NAME: 'acme', EC2_REGION: 'eu-west-1', TELEPORT_AUTH_SERVER_LB: 'auth.internal', TELEPORT_DYNAMO_TABLE_NAME: 'acme-state', TELEPORT_DYNAMO_EVENTS_TABLE_NAME: 'acme-events', TELEPORT_S3_BUCKET: 'acme-recordings', TELEPORT_LOG_GROUP: 'l', TELEPORT_METRICS_LOG_GROUP: 'm', ...(role === 'node' ? { TELEPORT_DYNAMO_TABLE_NAME: '', TELEPORT_DYNAMO_EVENTS_TABLE_NAME: '', TELEPORT_S3_BUCKET: '' } : {}) }, 'conf');
      const files = agentConfig(conf, { mode: role, clusterName: 'acme', diagAddr: '127.0.0.1:3000', prometheusFile: '/etc/teleport.d/cloudwatch-prometheus.yaml' })!;
      const emf = files.config.logs.metrics_collected.prometheus.emf_processor;
      const labels = parse(files.prometheus).scrape_configs[0].static_configs[0].labels as Record<string, string>;
      return { namespace: emf.metric_namespace, dimensions: emf.metric_declaration[0].dimensions, selectors: emf.metric_declaration[0].metric_selectors.map((r) => new RegExp(r)), labels };
    };
    // THEN every alarm on the Teleport namespace reads a metric an instance of its Role publishes, with exactly the dimensions it publishes
    expect(agentAlarms).toHaveLength(3);
    for (const a of agentAlarms) {
      const role = a.Properties.Dimensions.find((d: { Name: string }) => d.Name === 'Role').Value as 'auth' | 'node';
      const p = published(role);
      expect(a.Properties.Namespace).toBe(p.namespace);
      expect([a.Properties.MetricName, p.selectors.some((r) => r.test(a.Properties.MetricName))]).toEqual([a.Properties.MetricName, true]);
      expect(a.Properties.Dimensions.map((d: { Name: string }) => d.Name)).toEqual(p.dimensions[0]);
      for (const d of a.Properties.Dimensions as { Name: string; Value: string }[]) expect([d.Name, d.Value]).toEqual([d.Name, p.labels[d.Name]]);
    }
  });

  test('the dashboard has a row of the agent-published metrics', () => {
    const body = JSON.stringify(one(t, 'AWS::CloudWatch::Dashboard').Properties.DashboardBody);
    for (const m of [PublishedMetrics.ready, PublishedMetrics.recordingUploadsPending, PublishedMetrics.certificateIssueFailures, PublishedMetrics.certificatesIssued]) {
      expect(body).toContain(`\\"${METRICS_NAMESPACE}\\",\\"${m}\\"`);
    }
  });
});

describe('ClusterStack: sessionRecording', () => {
  test('GIVEN sessionRecording: proxy WHEN synthesised THEN the auth instances are told TELEPORT_SESSION_RECORDING=proxy, and the other tiers nothing', () => {
    // GIVEN / WHEN
    const t = synth({ sessionRecording: 'proxy' });
    // THEN
    expect(confLines(t, 'Auth')).toContain('TELEPORT_SESSION_RECORDING="proxy"');
    expect(confLines(t, 'Proxy').join('\n')).not.toContain('TELEPORT_SESSION_RECORDING');
    expect(confLines(t, 'Nodes').join('\n')).not.toContain('TELEPORT_SESSION_RECORDING');
    // and the AMI's conf reader takes it for the auth service
    const vars = Object.fromEntries(confLines(t, 'Auth').map((l) => /^([A-Z0-9_]+)="(.*)"$/.exec(l)!.slice(1, 3)).map(([k, v]) => [k, v === '<token>' ? 'x.example.com' : v]));
    expect(validateConf({ ...vars, EC2_REGION: 'eu-west-1', TELEPORT_SSM_KEY_ARN: 'arn:aws:kms:eu-west-1:123456789012:key/k', TELEPORT_TARGET_GROUP_ARNS: '' }, 'conf').sessionRecording).toBe('proxy');
  });

  test('GIVEN no sessionRecording WHEN synthesised THEN no instance is told one (the default, node)', () => {
    expect(confLines(synth(), 'Auth').join('\n')).not.toContain('TELEPORT_SESSION_RECORDING');
  });

  test('GIVEN an unknown sessionRecording WHEN synthesised THEN it is refused, naming the values', () => {
    expect(() => synth({ sessionRecording: 'sometimes' as 'node' })).toThrow('sessionRecording must be node, proxy or off, not "sometimes"');
  });
});

describe('ClusterStack: caKeysInKms', () => {
  test('GIVEN caKeysInKms WHEN synthesised THEN the auth instances are told their own role ARN, and their role may create only tagged P-256 signing keys', () => {
    // GIVEN / WHEN
    const t = synth({ caKeysInKms: true });
    // THEN the auth conf names the auth role (the key policy's signer); the other tiers get nothing
    const authRole = logicalId(t, 'AWS::IAM::Role', 'AuthRole');
    const userData = JSON.stringify(one(t, 'AWS::EC2::LaunchTemplate', 'AuthInstances').Properties.LaunchTemplateData.UserData);
    expect(userData).toContain(`TELEPORT_CA_KMS_ROLE_ARN=\\"",{"Fn::GetAtt":["${authRole}","Arn"]}`);
    for (const tier of ['Proxy', 'Nodes']) expect(confLines(t, tier).join('\n')).not.toContain('TELEPORT_CA_KMS_ROLE_ARN');
    // AND the auth role creates keys under conditions, and has no use permission of its own (the key policy grants it)
    const s = statements(t, 'AuthRole');
    const taggedOnly = { 'ForAllValues:StringEquals': { 'aws:TagKeys': ['teleport-ca'] }, Null: { 'aws:RequestTag/teleport-ca': 'false' } };
    expect(s.CaKeysCreate).toMatchObject({ Action: 'kms:CreateKey', Resource: '*', Condition: { StringEquals: { 'kms:KeySpec': 'ECC_NIST_P256', 'kms:KeyUsage': 'SIGN_VERIFY' }, ...taggedOnly } });
    expect(s.CaKeysTag).toMatchObject({ Action: 'kms:TagResource', Resource: '*', Condition: taggedOnly });
    const kmsActions = Object.values(statements(t, 'AuthRole')).flatMap((st) => actions(st.Action)).filter((a) => a.startsWith('kms:'));
    expect(kmsActions).not.toEqual(expect.arrayContaining(['kms:Sign']));
    // AND the AMI's conf reader turns it into ca_key_params for the auth service
    const vars = Object.fromEntries(confLines(t, 'Auth').map((l) => /^([A-Z0-9_]+)="(.*)"$/.exec(l)!.slice(1, 3)).map(([k, v]) => [k, v === '<token>' ? 'x.example.com' : v]));
    const roleArn = 'arn:aws:iam::123456789012:role/acme-auth';
    expect(validateConf({ ...vars, EC2_REGION: 'eu-west-1', TELEPORT_SSM_KEY_ARN: 'arn:aws:kms:eu-west-1:123456789012:key/k', TELEPORT_TARGET_GROUP_ARNS: '', TELEPORT_CA_KMS_ROLE_ARN: roleArn }, 'conf').caKmsRoleArn).toBe(roleArn);
  });

  test('GIVEN no caKeysInKms WHEN synthesised THEN no role may create KMS keys and no instance is told to use them', () => {
    const t = synth();
    expect(confLines(t, 'Auth').join('\n')).not.toContain('TELEPORT_CA_KMS_ROLE_ARN');
    for (const tier of ['AuthRole', 'ProxyRole', 'NodesRole']) {
      const kmsCreate = Object.values(statements(t, tier)).flatMap((st) => actions(st.Action)).filter((a) => a === 'kms:CreateKey' || a === 'kms:TagResource');
      expect([tier, kmsCreate]).toEqual([tier, []]);
    }
  });
});
