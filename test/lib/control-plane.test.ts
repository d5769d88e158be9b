import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, Duration, Stack, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { actions, logicalId, NO_BUNDLING, one, statements, type Res, type Stmt, testApp } from '../helpers/cdk';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ClusterStack } from '../../lib/cluster-stack';
import {
  CONTROL_PLANE_TABLE_ACTIONS,
  CONTROL_PLANE_TABLE_KMS_ACTIONS,
  ControlPlane,
  ControlPlaneProps,
  LIFECYCLE_ASG_ACTIONS,
  LIFECYCLE_SSM_ACTIONS,
  LOG_ACTIONS,
  hostCaRecordFilter,
  PIN_SSM_ACTIONS,
  PIN_STREAM_ACTIONS,
  PIN_STREAM_KMS_ACTIONS,
  ROTATOR_SSM_ACTIONS,
  ROTATOR_SSM_KMS_ACTIONS,
} from '../../lib/control-plane';




const sorted = (a: readonly string[]) => [...a].sort();

/** Every string literal anywhere in a JSON value. */
function strings(v: unknown, out: string[] = []): string[] {
  if (typeof v === 'string') out.push(v);
  else if (Array.isArray(v)) v.forEach((x) => strings(x, out));
  else if (v && typeof v === 'object') Object.values(v).forEach((x) => strings(x, out));
  return out;
}

/** A `Fn::Join` ARN rendered with its tokens as `<Ref>` / `<Id.Attr>`. */
function arnText(v: unknown): string {
  if (typeof v === 'string') return v;
  const o = v as Record<string, any>;
  if (o['Fn::Join']) return (o['Fn::Join'][1] as unknown[]).map(arnText).join(o['Fn::Join'][0]);
  if (o.Ref) return `<${o.Ref}>`;
  if (o['Fn::GetAtt']) return `<${o['Fn::GetAtt'].join('.')}>`;
  return JSON.stringify(v);
}

describe('ControlPlane in the ClusterStack (customer key for the table and the SecureStrings)', () => {
  // GIVEN the default cluster stack
  const app = testApp({ context: NO_BUNDLING });
  const stack = new ClusterStack(app, 'Cluster', { clusterName: 'acme', domainName: 'teleport.example.com' });
  // WHEN it is synthesised
  const t = Template.fromStack(stack);
  const template = t.toJSON();
  const rotatorId = logicalId(t, 'AWS::Lambda::Function', 'ControlPlaneRotator');
  const lifecycleId = logicalId(t, 'AWS::Lambda::Function', 'ControlPlaneLifecycle');
  const pinId = logicalId(t, 'AWS::Lambda::Function', 'ControlPlanePinPublisher');
  const tableId = logicalId(t, 'AWS::DynamoDB::Table', 'StorageStateTable');
  const keyId = logicalId(t, 'AWS::KMS::Key', 'StorageKey');
  const groups = ['AuthInstancesGroup', 'ProxyInstancesGroup', 'NodesInstancesGroup'].map((p) =>
    logicalId(t, 'AWS::AutoScaling::AutoScalingGroup', p),
  );

  test('three handler functions on the newest Node.js runtime, arm64, with the README environment', () => {
    // THEN the handlers run nodejs24.x on arm64 from their bundled index.handler
    for (const id of [rotatorId, lifecycleId, pinId]) {
      const fn = t.findResources('AWS::Lambda::Function')[id] as Res;
      expect(fn.Properties.Runtime).toBe('nodejs24.x');
      expect(fn.Properties.Architectures).toEqual(['arm64']);
      expect(fn.Properties.Handler).toBe('index.handler');
      expect(fn.Properties.Timeout).toBe(60);
      // AND each writes to its own log group with a retention
      const group = fn.Properties.LoggingConfig.LogGroup.Ref;
      expect((t.findResources('AWS::Logs::LogGroup')[group] as Res).Properties.RetentionInDays).toBe(365);
    }
    // AND the rotator knows the cluster, the state table and the SecureString key
    const rotator = t.findResources('AWS::Lambda::Function')[rotatorId] as Res;
    expect(rotator.Properties.Environment.Variables).toEqual({
      TELEPORT_CLUSTER_NAME: 'acme',
      TELEPORT_DYNAMO_TABLE_NAME: { Ref: tableId },
      TELEPORT_SSM_KEY_ARN: { 'Fn::GetAtt': [keyId, 'Arn'] },
      NODE_OPTIONS: '--enable-source-maps',
    });
    // AND the lifecycle handler needs no key
    const lifecycle = t.findResources('AWS::Lambda::Function')[lifecycleId] as Res;
    expect(lifecycle.Properties.Environment.Variables).toEqual({
      TELEPORT_CLUSTER_NAME: 'acme',
      TELEPORT_DYNAMO_TABLE_NAME: { Ref: tableId },
      NODE_OPTIONS: '--enable-source-maps',
    });
    // AND the pin publisher only the cluster (it reads no table, only the stream records it is given)
    const pin = t.findResources('AWS::Lambda::Function')[pinId] as Res;
    expect(pin.Properties.Environment.Variables).toEqual({ TELEPORT_CLUSTER_NAME: 'acme', NODE_OPTIONS: '--enable-source-maps' });
  });

  test('the state table\'s stream invokes the pin publisher, filtered to writes of the cluster\'s host CA, from the oldest record kept', () => {
    // THEN one event source mapping: the state table's stream to the pin publisher
    const mappings = Object.values(t.findResources('AWS::Lambda::EventSourceMapping')) as Res[];
    expect(mappings).toHaveLength(1);
    expect(mappings[0].Properties).toEqual({
      EventSourceArn: { 'Fn::GetAtt': [tableId, 'StreamArn'] },
      FunctionName: { Ref: pinId },
      StartingPosition: 'TRIM_HORIZON',
      BatchSize: 100,
      MaximumRetryAttempts: 10,
      MaximumRecordAgeInSeconds: 3600,
      FilterCriteria: { Filters: [{ Pattern: hostCaRecordFilter('acme').pattern }] },
    });
    // AND the filter keeps INSERT and MODIFY of exactly the host CA item (FullPath = "teleport" + its key)
    expect(JSON.parse(mappings[0].Properties.FilterCriteria.Filters[0].Pattern)).toEqual({
      eventName: ['INSERT', 'MODIFY'],
      dynamodb: { Keys: { FullPath: { S: ['teleport/authorities/host/acme'] } } },
    });
    // AND the table streams new images (the publisher reads the CA from the record)
    expect(one(t, 'AWS::DynamoDB::Table', 'StorageStateTable').Properties.StreamSpecification).toEqual({ StreamViewType: 'NEW_IMAGE' });
  });

  test('the pin publisher\'s role: its logs, reading the state table\'s stream (and its key through DynamoDB), writing the pin parameter only', () => {
    // THEN its inline policy has exactly these statements
    const s = statements(t, 'ControlPlanePinPublisherRole');
    expect(Object.keys(s).sort()).toEqual(['OwnLogGroup', 'PublishPin', 'StateTableStream', 'StateTableStreamKey']);
    expect(s.OwnLogGroup.Resource).toEqual({ 'Fn::GetAtt': [logicalId(t, 'AWS::Logs::LogGroup', 'ControlPlanePinPublisherLogs'), 'Arn'] });
    expect(actions(s.StateTableStream.Action)).toEqual(['dynamodb:DescribeStream', 'dynamodb:GetRecords', 'dynamodb:GetShardIterator', 'dynamodb:ListStreams']);
    expect(actions(s.StateTableStream.Action)).toEqual(sorted(PIN_STREAM_ACTIONS));
    expect(s.StateTableStream.Resource).toEqual({ 'Fn::GetAtt': [tableId, 'StreamArn'] });
    expect(actions(s.StateTableStreamKey.Action)).toEqual(['kms:Decrypt']);
    expect(actions(s.StateTableStreamKey.Action)).toEqual(sorted(PIN_STREAM_KMS_ACTIONS));
    expect(s.StateTableStreamKey.Resource).toEqual({ 'Fn::GetAtt': [keyId, 'Arn'] });
    expect(JSON.stringify(s.StateTableStreamKey.Condition)).toContain('"dynamodb.');
    expect(actions(s.PublishPin.Action)).toEqual(['ssm:PutParameter']);
    expect(actions(s.PublishPin.Action)).toEqual(sorted(PIN_SSM_ACTIONS));
    expect([s.PublishPin.Resource].flat().map(arnText)).toEqual(['arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter/teleport/acme/ca-pin']);
    // AND no table, token or other parameter access, no managed policy
    expect(JSON.stringify(s)).not.toMatch(/dynamodb:(GetItem|Query|PutItem)|tokens\/|kms:Encrypt/);
    expect(one(t, 'AWS::IAM::Role', 'ControlPlanePinPublisherRole').Properties.ManagedPolicyArns).toBeUndefined();
  });

  test('the rotator runs every hour on an EventBridge schedule', () => {
    // THEN a rule with rate(1 hour) targets the rotator
    const rule = one(t, 'AWS::Events::Rule', 'ControlPlaneRotationSchedule');
    expect(rule.Properties.ScheduleExpression).toBe('rate(1 hour)');
    expect(rule.Properties.Targets.map((x: any) => x.Arn)).toEqual([{ 'Fn::GetAtt': [rotatorId, 'Arn'] }]);
    // AND EventBridge may invoke it
    t.hasResourceProperties('AWS::Lambda::Permission', {
      FunctionName: { 'Fn::GetAtt': [rotatorId, 'Arn'] },
      Principal: 'events.amazonaws.com',
      SourceArn: { 'Fn::GetAtt': [logicalId(t, 'AWS::Events::Rule', 'ControlPlaneRotationSchedule'), 'Arn'] },
    });
  });

  test('a custom resource runs the rotator at deployment through the Provider framework', () => {
    // THEN the custom resource's service token is the framework function, which calls the rotator
    const custom = one(t, 'Custom::TeleportTokenRotation', 'ControlPlaneInitialRotation');
    const frameworkId = custom.Properties.ServiceToken['Fn::GetAtt'][0];
    const framework = t.findResources('AWS::Lambda::Function')[frameworkId] as Res;
    expect(framework.Properties.Environment.Variables.USER_ON_EVENT_FUNCTION_ARN).toEqual({ 'Fn::GetAtt': [rotatorId, 'Arn'] });
    expect(framework.Properties.Runtime).toBe('nodejs24.x');
    // AND its properties are stable inputs only (no per-deployment nonce)
    expect(Object.keys(custom.Properties).sort()).toEqual(['ClusterName', 'ServiceToken', 'StateTable']);
    // AND the framework's role may only write its logs and invoke the rotator
    const frameworkRole = framework.Properties.Role['Fn::GetAtt'][0];
    const inline = (t.findResources('AWS::IAM::Role')[frameworkRole] as Res).Properties.Policies.flatMap((p: any) => p.PolicyDocument.Statement);
    expect(inline.map((s: Stmt) => actions(s.Action))).toEqual([sorted(LOG_ACTIONS)]);
    expect((t.findResources('AWS::IAM::Role')[frameworkRole] as Res).Properties.ManagedPolicyArns).toBeUndefined();
  });

  test('a TERMINATING lifecycle hook on each of the three tiers\' groups', () => {
    // THEN each group has exactly one hook, terminating, continuing by default
    const hooks = Object.values(t.findResources('AWS::AutoScaling::LifecycleHook')) as Res[];
    expect(hooks.map((h) => h.Properties.AutoScalingGroupName.Ref).sort()).toEqual([...groups].sort());
    for (const h of hooks) {
      expect(h.Properties.LifecycleTransition).toBe('autoscaling:EC2_INSTANCE_TERMINATING');
      expect(h.Properties.DefaultResult).toBe('CONTINUE');
      expect(h.Properties.HeartbeatTimeout).toBe(300);
      // AND the action goes to EventBridge (no SNS/SQS target)
      expect(h.Properties.NotificationTargetARN).toBeUndefined();
    }
  });

  test('an EventBridge rule sends the three groups\' terminate actions to the lifecycle function', () => {
    // THEN the rule matches Auto Scaling's terminate lifecycle actions of exactly these groups
    const rule = one(t, 'AWS::Events::Rule', 'ControlPlaneLifecycleRule');
    expect(rule.Properties.EventPattern).toEqual({
      source: ['aws.autoscaling'],
      'detail-type': ['EC2 Instance-terminate Lifecycle Action'],
      detail: { AutoScalingGroupName: groups.map((g) => ({ Ref: g })) },
    });
    expect(rule.Properties.Targets.map((x: any) => x.Arn)).toEqual([{ 'Fn::GetAtt': [lifecycleId, 'Arn'] }]);
  });

  test('the rotator\'s role: its logs, the state table, the two token parameters and the pin, the key through SSM and DynamoDB', () => {
    // THEN its inline policy has exactly these statements
    const s = statements(t, 'ControlPlaneRotatorRole');
    expect(Object.keys(s).sort()).toEqual(['EncryptSecureStrings', 'OwnLogGroup', 'PublishTokensAndPin', 'StateTable', 'StateTableKey']);
    expect(actions(s.OwnLogGroup.Action)).toEqual(sorted(LOG_ACTIONS));
    expect(s.OwnLogGroup.Resource).toEqual({ 'Fn::GetAtt': [logicalId(t, 'AWS::Logs::LogGroup', 'ControlPlaneRotatorLogs'), 'Arn'] });
    expect(actions(s.StateTable.Action)).toEqual([
      'dynamodb:DeleteItem', 'dynamodb:DescribeTable', 'dynamodb:DescribeTimeToLive', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query',
    ]);
    expect(actions(s.StateTable.Action)).toEqual(sorted(CONTROL_PLANE_TABLE_ACTIONS));
    expect(s.StateTable.Resource).toEqual({ 'Fn::GetAtt': [tableId, 'Arn'] });
    expect(actions(s.StateTableKey.Action)).toEqual(sorted(CONTROL_PLANE_TABLE_KMS_ACTIONS));
    expect(s.StateTableKey.Resource).toEqual({ 'Fn::GetAtt': [keyId, 'Arn'] });
    expect(JSON.stringify(s.StateTableKey.Condition)).toContain('dynamodb.');
    expect(actions(s.PublishTokensAndPin.Action)).toEqual(['ssm:PutParameter']);
    expect(actions(s.PublishTokensAndPin.Action)).toEqual(sorted(ROTATOR_SSM_ACTIONS));
    expect([s.PublishTokensAndPin.Resource].flat().map(arnText)).toEqual([
      'arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter/teleport/acme/tokens/node',
      'arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter/teleport/acme/tokens/proxy',
      'arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter/teleport/acme/ca-pin',
    ]);
    expect(actions(s.EncryptSecureStrings.Action)).toEqual(['kms:Encrypt', 'kms:GenerateDataKey']);
    expect(actions(s.EncryptSecureStrings.Action)).toEqual(sorted(ROTATOR_SSM_KMS_ACTIONS));
    expect(s.EncryptSecureStrings.Resource).toEqual({ 'Fn::GetAtt': [keyId, 'Arn'] });
    expect(JSON.stringify(s.EncryptSecureStrings.Condition)).toContain('ssm.');
    // AND no managed policy, no separate policy resource
    expect(one(t, 'AWS::IAM::Role', 'ControlPlaneRotatorRole').Properties.ManagedPolicyArns).toBeUndefined();
  });

  test('the lifecycle role: its logs, the state table, completing actions of the three groups, the SSM inventory', () => {
    // THEN its inline policy has exactly these statements
    const s = statements(t, 'ControlPlaneLifecycleRole');
    expect(Object.keys(s).sort()).toEqual(['CompleteLifecycleAction', 'DescribeInstances', 'OwnLogGroup', 'StateTable', 'StateTableKey']);
    expect(actions(s.OwnLogGroup.Action)).toEqual(['logs:CreateLogStream', 'logs:PutLogEvents']);
    expect(s.OwnLogGroup.Resource).toEqual({ 'Fn::GetAtt': [logicalId(t, 'AWS::Logs::LogGroup', 'ControlPlaneLifecycleLogs'), 'Arn'] });
    expect(actions(s.StateTable.Action)).toEqual(sorted(CONTROL_PLANE_TABLE_ACTIONS));
    expect(s.StateTable.Resource).toEqual({ 'Fn::GetAtt': [tableId, 'Arn'] });
    expect(actions(s.StateTableKey.Action)).toEqual(['kms:Decrypt', 'kms:GenerateDataKey']);
    expect(actions(s.CompleteLifecycleAction.Action)).toEqual(['autoscaling:CompleteLifecycleAction']);
    expect(actions(s.CompleteLifecycleAction.Action)).toEqual(sorted(LIFECYCLE_ASG_ACTIONS));
    expect([s.CompleteLifecycleAction.Resource].flat().map(arnText)).toEqual(
      groups.map((g) => `arn:<AWS::Partition>:autoscaling:<AWS::Region>:<AWS::AccountId>:autoScalingGroup:*:autoScalingGroupName/<${g}>`),
    );
    expect(actions(s.DescribeInstances.Action)).toEqual(['ssm:DescribeInstanceInformation']);
    expect(actions(s.DescribeInstances.Action)).toEqual(sorted(LIFECYCLE_SSM_ACTIONS));
    expect(s.DescribeInstances.Resource).toBe('*');
    // AND it may not write SSM parameters
    expect(JSON.stringify(s)).not.toContain('ssm:PutParameter');
  });

  test('no token is in the template: no SSM parameter resources, "tokens/" only inside parameter names', () => {
    // THEN the stack declares no SSM parameter (SecureStrings are written by the rotator at run time)
    expect(t.findResources('AWS::SSM::Parameter')).toEqual({});
    const all = strings(template);
    expect(all.filter((s) => s === 'SecureString' || s.includes('resolve:ssm-secure'))).toEqual([]);
    // AND every string mentioning tokens/ is one of the published parameter paths or its ARN suffix
    const allowed = new Set(['/teleport/acme/tokens/node', '/teleport/acme/tokens/proxy']);
    const mentions = all.filter((s) => s.includes('tokens/'));
    expect(mentions.length).toBeGreaterThan(0);
    for (const s of mentions) {
      const suffix = s.slice(s.indexOf('/teleport/'));
      expect(allowed.has(suffix)).toBe(true);
    }
  });

  test('the rotator\'s function name is a stack output', () => {
    // THEN an operator can invoke it once the auth tier is up
    expect(template.Outputs.TokenRotatorFunctionName.Value).toEqual({ Ref: rotatorId });
  });
});

/** A small stack with three bare groups, for the construct on its own. */
function standalone(props: Partial<ControlPlaneProps> = {}, app = testApp({ context: NO_BUNDLING })) {
  const stack = new Stack(app, 'Standalone');
  const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 1, natGateways: 0, subnetConfiguration: [{ name: 'p', subnetType: ec2.SubnetType.PUBLIC }] });
  const table = new dynamodb.Table(stack, 'State', {
    partitionKey: { name: 'HashKey', type: dynamodb.AttributeType.STRING },
    sortKey: { name: 'FullPath', type: dynamodb.AttributeType.STRING },
    stream: dynamodb.StreamViewType.NEW_IMAGE,
  });
  const groups = ['A', 'B', 'C'].map(
    (n) =>
      new autoscaling.AutoScalingGroup(stack, n, {
        vpc,
        instanceType: new ec2.InstanceType('t3.micro'),
        machineImage: ec2.MachineImage.latestAmazonLinux2023(),
      }),
  );
  const cp = new ControlPlane(stack, 'ControlPlane', { clusterName: 'solo', stateTable: table, autoScalingGroups: groups, ...props });
  return { app, stack, cp, groups, table };
}

describe('ControlPlane with AWS-managed keys (no ssmKey, no stateTableKey)', () => {
  // GIVEN the construct with neither key and a 30-minute rotation
  const { stack } = standalone({ rotationPeriod: Duration.minutes(30) });
  // WHEN synthesised
  const t = Template.fromStack(stack);

  test('no KMS permissions and no TELEPORT_SSM_KEY_ARN: SSM uses alias/aws/ssm', () => {
    // THEN no role mentions KMS
    for (const role of ['ControlPlaneRotatorRole', 'ControlPlaneLifecycleRole', 'ControlPlanePinPublisherRole']) {
      const s = statements(t, role);
      expect(Object.keys(s)).not.toContain('StateTableKey');
      expect(Object.keys(s)).not.toContain('EncryptSecureStrings');
      expect(Object.keys(s)).not.toContain('StateTableStreamKey');
      expect(JSON.stringify(s)).not.toContain('kms:');
    }
    // AND the rotator has no key variable
    const rotator = one(t, 'AWS::Lambda::Function', 'ControlPlaneRotator');
    expect(Object.keys(rotator.Properties.Environment.Variables).sort()).toEqual(['NODE_OPTIONS', 'TELEPORT_CLUSTER_NAME', 'TELEPORT_DYNAMO_TABLE_NAME']);
  });

  test('the rotation period prop sets the schedule', () => {
    // THEN the schedule follows the prop
    expect(one(t, 'AWS::Events::Rule', 'ControlPlaneRotationSchedule').Properties.ScheduleExpression).toBe('rate(30 minutes)');
  });
});

describe('no function reserves concurrency (new accounts cannot spare any of their unreserved pool)', () => {
  const cert = 'arn:aws:acm:eu-west-1:123456789012:certificate/0f2e5a1c-7d3b-4c1e-9a8b-123456789abc';
  test.each<[string, () => Stack]>([
    ['the default cluster', () => new ClusterStack(testApp({ context: NO_BUNDLING }), 'Cluster', { clusterName: 'acme', domainName: 'teleport.example.com' })],
    [
      'a cluster with a certificate in a concrete environment',
      () =>
        new ClusterStack(testApp({ context: NO_BUNDLING }), 'Cluster', {
          clusterName: 'acme',
          domainName: 'teleport.example.com',
          certificateArn: cert,
          env: { account: '123456789012', region: 'eu-west-1' },
          availabilityZones: ['eu-west-1a', 'eu-west-1b'],
        }),
    ],
    ['the control plane on its own', () => standalone().stack],
  ])('%s', (_name, build) => {
    // GIVEN the stack WHEN synthesised
    const fns = Object.entries(Template.fromStack(build()).findResources('AWS::Lambda::Function')) as [string, Res][];
    // THEN it has its functions (the handlers and the custom resource framework's), none with reserved concurrency
    expect(fns.length).toBeGreaterThanOrEqual(3);
    expect(fns.filter(([, f]) => f.Properties.ReservedConcurrentExecutions !== undefined).map(([id]) => id)).toEqual([]);
  });
});

describe('ControlPlane under cdk-nag on its own (the ClusterStack variants are in nag.test.ts)', () => {
  test('zero unacknowledged findings', () => {
    // GIVEN the construct in a stack under the AwsSolutions checks
    const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'cp-nag-'));
    try {
      const app = new App({ outdir, context: NO_BUNDLING });
      Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
      const { stack } = standalone({}, app);
      // Findings of the test scaffolding (bare VPC, groups, table), not of the construct.
      for (const id of ['AwsSolutions-VPC7', 'AwsSolutions-AS3', 'AwsSolutions-EC26', 'AwsSolutions-DDB3']) {
        Validations.of(stack).acknowledge({ id, reason: 'test scaffolding only' });
      }
      // WHEN synthesised THEN nothing of the control plane is reported
      const assembly = app.synth();
      const report = JSON.parse(fs.readFileSync(path.join(assembly.directory, 'validation-report.json'), 'utf8'));
      const violations = (report.pluginReports ?? []).flatMap((r: { violations?: unknown[] }) => r.violations ?? []);
      expect(violations).toEqual([]);
    } finally {
      fs.rmSync(outdir, { recursive: true, force: true });
    }
  });
});

describe('ControlPlane prop validation', () => {
  test.each<[string, Partial<ControlPlaneProps>, RegExp]>([
    ['bad cluster name', { clusterName: 'Bad_Name' }, /clusterName/],
    ['no groups', { autoScalingGroups: [] }, /autoScalingGroups must list/],
    ['rotation not whole minutes', { rotationPeriod: Duration.seconds(90) }, /whole minutes/],
    ['rotation as long as the token lifetime', { rotationPeriod: Duration.hours(4) }, /rotationPeriod/],
    ['hook timeout too short', { lifecycleHookTimeout: Duration.seconds(10) }, /lifecycleHookTimeout/],
  ])('%s is rejected before any resource is defined', (_name, bad, message) => {
    // GIVEN a stack with valid groups and table
    const { stack, groups, table } = standalone();
    const before = stack.node.findAll().length;
    // WHEN a second control plane gets the bad prop THEN it throws naming it
    expect(() => new ControlPlane(stack, 'Bad', { clusterName: 'solo', stateTable: table, autoScalingGroups: groups, ...bad })).toThrow(message);
    // AND nothing was added to the tree
    expect(stack.node.findAll().length).toBe(before);
  });

  test('a state table without a stream is rejected (the pin publisher is triggered by it)', () => {
    // GIVEN a table without a stream WHEN constructing THEN it throws naming the prop
    const { stack, groups } = standalone();
    const bare = new dynamodb.Table(stack, 'Bare', { partitionKey: { name: 'HashKey', type: dynamodb.AttributeType.STRING } });
    expect(() => new ControlPlane(stack, 'NoStream', { clusterName: 'solo', stateTable: bare, autoScalingGroups: groups })).toThrow(/^stateTable has no stream/);
  });

  test('the same group twice is rejected', () => {
    // GIVEN groups with a duplicate WHEN constructing THEN it throws
    const { stack, groups, table } = standalone();
    expect(() => new ControlPlane(stack, 'Dup', { clusterName: 'solo', stateTable: table, autoScalingGroups: [groups[0], groups[0]] })).toThrow(/twice/);
  });
});
