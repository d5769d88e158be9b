/**
 * The IAM audit (sim/iam/): calls of the deployment's instances and functions decided from the
 * template's policies by @cloud-copilot/iam-simulate, with reasons that name what decided, and the
 * report of denied calls and unused permissions. The fixture is shaped like the synthesized HA
 * stack (instance roles with Sids, Lambda roles with kms:ViaService conditions, bucket policies
 * denying insecure transport, a key policy granting the account root kms:*); `resolve` is a small
 * stand-in for sim/template.ts covering the intrinsics the fixture uses.
 */
import { IamAudit } from '../../sim/iam/audit';
import { PolicyError } from '../../sim/iam/policies';
import { SimulatorError } from '../../sim/iam/simulator';
import { ACCOUNT, arn, REGION, type AwsCall, type CfnResource, type CfnResources } from '../../sim/types';

const partition = { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }]] };
const ssmParameter = (name: string) => ({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ssm:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, `:parameter${name}`]] });
const getArn = (id: string) => ({ 'Fn::GetAtt': [id, 'Arn'] });
const viaService = (service: string) => ({ StringEquals: { 'kms:ViaService': { 'Fn::Join': ['', [`${service}.`, { Ref: 'AWS::Region' }, '.amazonaws.com']] } } });
const doc = (...Statement: object[]) => ({ Version: '2012-10-17', Statement });
const role = (service: string, policies: object[], extra: Record<string, unknown> = {}): CfnResource => ({
  Type: 'AWS::IAM::Role',
  Properties: {
    AssumeRolePolicyDocument: doc({ Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: service } }),
    Policies: policies,
    ...extra,
  },
});
const denyInsecure = (bucket: string) => ({
  Action: 's3:*',
  Condition: { Bool: { 'aws:SecureTransport': 'false' } },
  Effect: 'Deny',
  Principal: { AWS: '*' },
  Resource: [getArn(bucket), { 'Fn::Join': ['', [getArn(bucket), '/*']] }],
});

const TEMPLATE: CfnResources = {
  StorageStateTable08B675A0: { Type: 'AWS::DynamoDB::Table', Properties: {} },
  StorageEventsTable624F63BE: { Type: 'AWS::DynamoDB::Table', Properties: {} },
  StorageRecordingsBucket6074B87C: { Type: 'AWS::S3::Bucket', Properties: {} },
  StorageRecordingsBucketPolicyEF8CF999: {
    Type: 'AWS::S3::BucketPolicy',
    Properties: { Bucket: { Ref: 'StorageRecordingsBucket6074B87C' }, PolicyDocument: doc(denyInsecure('StorageRecordingsBucket6074B87C')) },
  },
  StorageKeyBAA9457B: {
    Type: 'AWS::KMS::Key',
    Properties: {
      KeyPolicy: doc({
        Action: 'kms:*',
        Effect: 'Allow',
        Principal: { AWS: { 'Fn::Join': ['', [partition, ':iam::', { Ref: 'AWS::AccountId' }, ':root']] } },
        Resource: '*',
      }),
    },
  },
  AuthRoleC0FBE42D: role('ec2.amazonaws.com', [{
    PolicyName: 'teleport',
    PolicyDocument: doc(
      {
        Sid: 'Tables',
        Action: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query'],
        Effect: 'Allow',
        Resource: [getArn('StorageStateTable08B675A0'), getArn('StorageEventsTable624F63BE')],
      },
      {
        Sid: 'Recordings',
        Action: ['s3:AbortMultipartUpload', 's3:GetObject', 's3:PutObject'],
        Effect: 'Allow',
        Resource: { 'Fn::Join': ['', [getArn('StorageRecordingsBucket6074B87C'), '/records/*']] },
      },
      { Sid: 'DataKey', Action: ['kms:Decrypt', 'kms:GenerateDataKey'], Effect: 'Allow', Resource: getArn('StorageKeyBAA9457B') },
      {
        Sid: 'DescribeAnyTable',
        Action: 'dynamodb:Describe*',
        Effect: 'Allow',
        Resource: { 'Fn::Join': ['', [partition, ':dynamodb:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':table/*']] },
      },
    ),
  }]),
  ProxyRole46D67FAB: role('ec2.amazonaws.com', [{
    PolicyName: 'teleport',
    PolicyDocument: doc(
      { Sid: 'JoinParameters', Action: 'ssm:GetParameter', Effect: 'Allow', Resource: [ssmParameter('/teleport/acme/tokens/proxy'), ssmParameter('/teleport/acme/ca-pin')] },
      { Sid: 'DecryptSecureStrings', Action: 'kms:Decrypt', Condition: viaService('ssm'), Effect: 'Allow', Resource: getArn('StorageKeyBAA9457B') },
    ),
  }]),
  NodesRoleA22E0B2B: role('ec2.amazonaws.com', [{
    PolicyName: 'teleport',
    PolicyDocument: doc(
      { Sid: 'JoinParameters', Action: 'ssm:GetParameter', Effect: 'Allow', Resource: [ssmParameter('/teleport/acme/tokens/node'), ssmParameter('/teleport/acme/ca-pin')] },
      { Sid: 'DecryptSecureStrings', Action: 'kms:Decrypt', Condition: viaService('ssm'), Effect: 'Allow', Resource: getArn('StorageKeyBAA9457B') },
    ),
  }]),
  ControlPlaneRotatorAA4656CA: { Type: 'AWS::Lambda::Function', Properties: {} },
  ControlPlaneLifecycleRole5F3658BC: role('lambda.amazonaws.com', [{
    PolicyName: 'handler',
    PolicyDocument: doc(
      { Sid: 'StateTableKey', Action: ['kms:Decrypt', 'kms:GenerateDataKey'], Condition: viaService('dynamodb'), Effect: 'Allow', Resource: getArn('StorageKeyBAA9457B') },
      { Sid: 'DescribeInstances', Action: 'ssm:DescribeInstanceInformation', Effect: 'Allow', Resource: '*' },
    ),
  }], { ManagedPolicyArns: [{ Ref: 'LifecycleLogsPolicy' }] }),
  LifecycleLogsPolicy: {
    Type: 'AWS::IAM::ManagedPolicy',
    Properties: { PolicyDocument: doc({ Action: ['logs:CreateLogStream', 'logs:PutLogEvents'], Effect: 'Allow', Resource: '*' }) },
  },
  ControlPlaneProviderRole26893B90: role('lambda.amazonaws.com', []),
  ControlPlaneProviderRoleDefaultPolicyB76D1B03: {
    Type: 'AWS::IAM::Policy',
    Properties: {
      PolicyName: 'ControlPlaneProviderRoleDefaultPolicyB76D1B03',
      PolicyDocument: doc({
        Action: 'lambda:InvokeFunction',
        Effect: 'Allow',
        Resource: [getArn('ControlPlaneRotatorAA4656CA'), { 'Fn::Join': ['', [getArn('ControlPlaneRotatorAA4656CA'), ':*']] }],
      }),
      Roles: [{ Ref: 'ControlPlaneProviderRole26893B90' }],
    },
  },
};

/** Physical names the stand-in resolver gives: the logical id, lower-cased, with a stack prefix. */
const physical = (id: string) => `teleport-acme-${id.toLowerCase()}`;

/** A stand-in for sim/template.ts's resolver: Ref, Fn::GetAtt Arn and Fn::Join, as that module defines them. */
function standInResolve(resources: CfnResources) {
  const pseudo: Record<string, string> = { 'AWS::Partition': 'aws', 'AWS::Region': REGION, 'AWS::AccountId': ACCOUNT };
  const ref = (id: string): string => {
    if (pseudo[id]) return pseudo[id];
    const type = resources[id]?.Type;
    if (type === 'AWS::IAM::ManagedPolicy') return `arn:aws:iam::${ACCOUNT}:policy/${physical(id)}`;
    if (type === 'AWS::KMS::Key') return `key-${id.toLowerCase()}`;
    if (!type) throw new Error(`stand-in resolve: no resource ${id}`);
    return physical(id);
  };
  const getArn = (id: string): string => {
    const name = ref(id);
    switch (resources[id].Type) {
      case 'AWS::DynamoDB::Table': return arn.table(name);
      case 'AWS::S3::Bucket': return arn.bucket(name);
      case 'AWS::KMS::Key': return arn.key(name);
      case 'AWS::Lambda::Function': return arn.function(name);
      case 'AWS::IAM::Role': return arn.role(name);
      default: throw new Error(`stand-in resolve: no Arn for ${id}`);
    }
  };
  const resolve = (v: any): any => {
    if (Array.isArray(v)) return v.map(resolve);
    if (v === null || typeof v !== 'object') return v;
    if ('Ref' in v) return ref(v.Ref);
    if ('Fn::GetAtt' in v) return getArn(v['Fn::GetAtt'][0]);
    if ('Fn::Join' in v) return resolve(v['Fn::Join'][1]).join(v['Fn::Join'][0]);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, resolve(x)]));
  };
  return resolve;
}

/** An audit of `resources`, resolved by the stand-in. */
const auditOf = (resources: CfnResources, options: ConstructorParameters<typeof IamAudit>[2] = {}) => new IamAudit(resources, standInResolve(resources), options);
const caller = (roleLogicalId: string, name: string) => ({ roleLogicalId, roleArn: arn.role(physical(roleLogicalId)), name });
const AUTH = caller('AuthRoleC0FBE42D', 'i-0auth');
const PROXY = caller('ProxyRole46D67FAB', 'i-0proxy');
const NODE = caller('NodesRoleA22E0B2B', 'i-0node');
const LIFECYCLE = caller('ControlPlaneLifecycleRole5F3658BC', physical('ControlPlaneLifecycleAA'));
const PROVIDER = caller('ControlPlaneProviderRole26893B90', physical('ControlPlaneProviderAA'));
const STATE_TABLE = arn.table(physical('StorageStateTable08B675A0'));
const KEY = arn.key('key-storagekeybaa9457b');
const RECORDING = arn.object(physical('StorageRecordingsBucket6074B87C'), 'records/s-1.tar');
const PROXY_TOKEN = arn.parameter('/teleport/acme/tokens/proxy');
const call = (c: AwsCall['caller'], action: string, resource: string, extra: Partial<AwsCall> = {}): AwsCall => ({ caller: c, action, resource, ...extra });

/** A copy of the fixture with some resources replaced. */
const withResources = (changes: Record<string, CfnResource>): CfnResources => ({ ...TEMPLATE, ...changes });

describe('IamAudit decisions', () => {
  const audit = auditOf(TEMPLATE);
  afterAll(() => audit.close());

  test('a DynamoDB call on a table the role names is allowed, by that statement', () => {
    // GIVEN the auth role, whose statement Tables names the state table
    // WHEN an auth server puts an item there
    const d = audit.check(call(AUTH, 'dynamodb:PutItem', STATE_TABLE));
    // THEN it is allowed, and the reason names the granting statement
    expect(d).toEqual({ allowed: true, reason: 'allowed by inline policy teleport of AuthRoleC0FBE42D statement Tables' });
  });

  test('the same call on another table is denied for want of an Allow', () => {
    // GIVEN no statement of the auth role names table "other" for PutItem
    // WHEN an auth server puts an item there
    const d = audit.check(call(AUTH, 'dynamodb:PutItem', arn.table('other')));
    // THEN it is denied, saying no Allow matched in the role's policies
    expect(d.allowed).toBe(false);
    expect(d.reason).toBe('no matching Allow in the policies of AuthRoleC0FBE42D');
  });

  test("the proxy's join token is readable by the proxy role and not by the node role", () => {
    // GIVEN proxies may read tokens/proxy, nodes only tokens/node
    // WHEN each reads the proxy token
    const proxy = audit.check(call(PROXY, 'ssm:GetParameter', PROXY_TOKEN));
    const node = audit.check(call(NODE, 'ssm:GetParameter', PROXY_TOKEN));
    // THEN the proxy is allowed by JoinParameters and the node is denied
    expect(proxy).toEqual({ allowed: true, reason: 'allowed by inline policy teleport of ProxyRole46D67FAB statement JoinParameters' });
    expect(node).toEqual({ allowed: false, reason: 'no matching Allow in the policies of NodesRoleA22E0B2B' });
  });

  test('kms:Decrypt under a kms:ViaService condition: allowed through SSM, denied direct', () => {
    // GIVEN the proxy role may decrypt with the key only via SSM, and the key policy delegates to IAM
    // WHEN it decrypts as part of ssm:GetParameter (the audit derives kms:ViaService), with the key given explicitly, and directly
    const viaSsm = audit.check(call(PROXY, 'kms:Decrypt', KEY, { via: 'ssm:GetParameter' }));
    const explicit = audit.check(call(PROXY, 'kms:Decrypt', KEY, { context: { 'kms:ViaService': `ssm.${REGION}.amazonaws.com` } }));
    const direct = audit.check(call(PROXY, 'kms:Decrypt', KEY));
    const wrongService = audit.check(call(PROXY, 'kms:Decrypt', KEY, { via: 'dynamodb:GetItem' }));
    // THEN the first two are allowed by the role's statement and the key policy together
    expect(viaSsm).toEqual({ allowed: true, reason: 'allowed by inline policy teleport of ProxyRole46D67FAB statement DecryptSecureStrings and key policy of StorageKeyBAA9457B statement #1' });
    expect(explicit).toEqual(viaSsm);
    // AND the direct call and the call via DynamoDB are denied, naming the statement whose condition failed
    expect(direct.allowed).toBe(false);
    expect(direct.reason).toBe(
      'no matching Allow in the policies of ProxyRole46D67FAB; statement DecryptSecureStrings of inline policy teleport of ProxyRole46D67FAB '
      + `matches the action and resource but not its condition StringEquals kms:ViaService ssm.${REGION}.amazonaws.com (the request has no such key)`,
    );
    expect(wrongService.allowed).toBe(false);
    expect(wrongService.reason).toMatch(/not its condition StringEquals kms:ViaService ssm\./);
  });

  test('a role statement without conditions decrypts directly: the root key policy delegates to IAM', () => {
    // GIVEN the auth role's DataKey statement has no condition
    // WHEN an auth server decrypts directly
    const d = audit.check(call(AUTH, 'kms:Decrypt', KEY));
    // THEN it is allowed by both the identity statement and the key policy's account-root statement
    expect(d).toEqual({ allowed: true, reason: 'allowed by inline policy teleport of AuthRoleC0FBE42D statement DataKey and key policy of StorageKeyBAA9457B statement #1' });
  });

  test("S3 PutObject over plain HTTP is denied by the bucket policy's explicit Deny though the role allows it", () => {
    // GIVEN the auth role may put recordings, and the bucket policy denies s3:* when aws:SecureTransport is false
    // WHEN it puts one over TLS (the default) and one without
    const secure = audit.check(call(AUTH, 's3:PutObject', RECORDING));
    const insecure = audit.check(call(AUTH, 's3:PutObject', RECORDING, { context: { 'aws:SecureTransport': 'false' } }));
    // THEN the identity Allow suffices over TLS, and the explicit Deny wins without it
    expect(secure).toEqual({ allowed: true, reason: 'allowed by inline policy teleport of AuthRoleC0FBE42D statement Recordings' });
    expect(insecure).toEqual({ allowed: false, reason: 'explicit Deny in bucket policy StorageRecordingsBucketPolicyEF8CF999 of bucket teleport-acme-storagerecordingsbucket6074b87c statement #1' });
  });

  test('policies attached from the policy side (AWS::IAM::Policy Roles) and managed policies (ManagedPolicyArns) count', () => {
    // GIVEN the provider role's only permission is the DefaultPolicy attached through its Roles,
    // and the lifecycle role's logs permissions come from a template ManagedPolicy
    // WHEN the provider invokes the rotator and the lifecycle function writes logs
    const invoke = audit.check(call(PROVIDER, 'lambda:InvokeFunction', arn.function(physical('ControlPlaneRotatorAA4656CA'))));
    const logs = audit.check(call(LIFECYCLE, 'logs:PutLogEvents', `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:/aws/lambda/x:log-stream:s`));
    // THEN both are allowed, by those policies
    expect(invoke).toEqual({ allowed: true, reason: 'allowed by policy ControlPlaneProviderRoleDefaultPolicyB76D1B03 statement #1' });
    expect(logs).toEqual({ allowed: true, reason: 'allowed by managed policy LifecycleLogsPolicy statement #1' });
  });

  test('wildcard action and resource patterns, and wildcard-only actions', () => {
    // GIVEN the auth role may dynamodb:Describe* on table/*, and the lifecycle role may ssm:DescribeInstanceInformation on *
    // WHEN they call within and beside those patterns
    const describe = audit.check(call(AUTH, 'dynamodb:DescribeTable', arn.table('anything')));
    const scan = audit.check(call(AUTH, 'dynamodb:Scan', arn.table('anything')));
    const instances = audit.check(call(LIFECYCLE, 'ssm:DescribeInstanceInformation', '*'));
    // THEN the pattern matches decide
    expect(describe).toEqual({ allowed: true, reason: 'allowed by inline policy teleport of AuthRoleC0FBE42D statement DescribeAnyTable' });
    expect(scan).toEqual({ allowed: false, reason: 'no matching Allow in the policies of AuthRoleC0FBE42D' });
    expect(instances).toEqual({ allowed: true, reason: 'allowed by inline policy handler of ControlPlaneLifecycleRole5F3658BC statement DescribeInstances' });
  });

  test('a caller whose role is not the template role it claims, or not in the template, is denied', () => {
    // GIVEN callers naming an unknown role, and a known role with another ARN
    // WHEN they call
    const unknown = audit.check(call({ ...AUTH, roleLogicalId: 'Nope' }, 'dynamodb:GetItem', STATE_TABLE));
    const otherArn = audit.check(call({ ...AUTH, roleArn: arn.role('someone-else') }, 'dynamodb:GetItem', STATE_TABLE));
    // THEN both are denied, saying why
    expect(unknown).toEqual({ allowed: false, reason: 'role Nope is not in the template' });
    expect(otherArn.allowed).toBe(false);
    expect(otherArn.reason).toMatch(/someone-else is not .*teleport-acme-authrolec0fbe42d, the ARN of AuthRoleC0FBE42D/);
  });

  test('a request the library cannot evaluate is denied with its validation error', () => {
    // GIVEN an action no AWS service has
    // WHEN it is checked
    const d = audit.check(call(AUTH, 'dynamodb:FlyAway', STATE_TABLE));
    // THEN it is denied, naming the library's error
    expect(d.allowed).toBe(false);
    expect(d.reason).toMatch(/^the request cannot be evaluated: .*invalid\.action/);
  });
});

describe('IamAudit resource policies, principals and boundaries', () => {
  const PROXY_ARN = arn.role(physical('ProxyRole46D67FAB'));
  // GIVEN a key policy that trusts the account only for the proxy role (aws:PrincipalArn), a
  // bucket policy denying the auth role by its role ARN, a key created without a key policy,
  // a node role that may decrypt with any key, and a lifecycle role bounded to SSM
  const audit = auditOf(withResources({
    ControlPlaneLifecycleRole5F3658BC: { ...TEMPLATE.ControlPlaneLifecycleRole5F3658BC, Properties: { ...TEMPLATE.ControlPlaneLifecycleRole5F3658BC.Properties, PermissionsBoundary: { Ref: 'SsmOnly' } } },
    SsmOnly: { Type: 'AWS::IAM::ManagedPolicy', Properties: { PolicyDocument: doc({ Action: 'ssm:*', Effect: 'Allow', Resource: '*' }) } },
    DefaultKey: { Type: 'AWS::KMS::Key', Properties: {} },
    NodesRoleA22E0B2B: role('ec2.amazonaws.com', [{ PolicyName: 'keys', PolicyDocument: doc({ Sid: 'AnyKey', Action: 'kms:Decrypt', Effect: 'Allow', Resource: '*' }) }]),
    StorageKeyBAA9457B: {
      Type: 'AWS::KMS::Key',
      Properties: {
        KeyPolicy: doc({ Action: 'kms:*', Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` }, Resource: '*', Condition: { ArnEquals: { 'aws:PrincipalArn': PROXY_ARN } } }),
      },
    },
    StorageRecordingsBucketPolicyEF8CF999: {
      Type: 'AWS::S3::BucketPolicy',
      Properties: {
        Bucket: { Ref: 'StorageRecordingsBucket6074B87C' },
        PolicyDocument: doc(denyInsecure('StorageRecordingsBucket6074B87C'), {
          Sid: 'NoAuthReads', Action: 's3:GetObject', Effect: 'Deny', Principal: { AWS: getArn('AuthRoleC0FBE42D') }, Resource: { 'Fn::Join': ['', [getArn('StorageRecordingsBucket6074B87C'), '/*']] },
        }),
      },
    },
  }));
  afterAll(() => audit.close());

  test('KMS needs the key policy to allow: a role allowed by IAM is denied when the key policy does not trust it', () => {
    // WHEN the auth role (IAM allows kms:Decrypt) and the proxy role (via SSM) decrypt
    const auth = audit.check(call(AUTH, 'kms:Decrypt', KEY));
    const proxy = audit.check(call(PROXY, 'kms:Decrypt', KEY, { via: 'ssm:GetParameter' }));
    // THEN the key policy's aws:PrincipalArn condition, seeing the role's ARN, admits only the proxy
    expect(auth).toEqual({ allowed: false, reason: 'no matching Allow in key policy of StorageKeyBAA9457B' });
    expect(proxy.allowed).toBe(true);
  });

  test("a resource policy naming the role ARN applies to the role's sessions", () => {
    // WHEN the auth role reads and writes a recording
    const read = audit.check(call(AUTH, 's3:GetObject', RECORDING));
    const write = audit.check(call(AUTH, 's3:PutObject', RECORDING));
    // THEN the Deny naming its role ARN refuses the read, by Sid; the write is untouched
    expect(read).toEqual({ allowed: false, reason: 'explicit Deny in bucket policy StorageRecordingsBucketPolicyEF8CF999 of bucket teleport-acme-storagerecordingsbucket6074b87c statement NoAuthReads' });
    expect(write.allowed).toBe(true);
  });

  test('a permissions boundary limits what the identity policies allow', () => {
    // WHEN the bounded lifecycle role lists instances (inside the boundary) and writes logs (outside it),
    // both of which its identity policies allow
    const instances = audit.check(call(LIFECYCLE, 'ssm:DescribeInstanceInformation', '*'));
    const logs = audit.check(call(LIFECYCLE, 'logs:PutLogEvents', `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:/aws/lambda/x:log-stream:s`));
    // THEN the first is allowed and the second denied, naming the boundary
    expect(instances.allowed).toBe(true);
    expect(logs).toEqual({ allowed: false, reason: 'no matching Allow in permissions boundary managed policy SsmOnly' });
  });

  test("a key without KeyPolicy gets AWS's default key policy; a key not in the template has none, so KMS denies", () => {
    // WHEN the node role, which IAM lets decrypt with any key, decrypts with each
    const defaultKey = audit.check(call(NODE, 'kms:Decrypt', arn.key('key-defaultkey')));
    const unknown = audit.check(call(NODE, 'kms:Decrypt', arn.key('unknown')));
    // THEN the default key policy delegates to IAM, and the unknown key denies for want of a key policy
    expect(defaultKey).toEqual({ allowed: true, reason: 'allowed by inline policy keys of NodesRoleA22E0B2B statement AnyKey and default key policy of DefaultKey statement Enable IAM User Permissions' });
    expect(unknown.allowed).toBe(false);
    expect(unknown.reason).toMatch(/^no policy allows it \(the template has no resource policy for .*key\/unknown, and kms requires one that trusts the account\)$/);
  });
});

describe('IamAudit records and reports', () => {
  test('calls, denied calls, unused permissions, summary and report', async () => {
    // GIVEN a fresh audit that hears denied calls
    const heard: string[] = [];
    const audit = auditOf(TEMPLATE, { log: (l) => heard.push(l) });
    try {
      // WHEN the auth role puts and gets on the state table, reads a recording twice,
      // puts a recording in the clear, and a node reads the proxy's token twice
      audit.check(call(AUTH, 'dynamodb:PutItem', STATE_TABLE));
      audit.check(call(AUTH, 'dynamodb:GetItem', STATE_TABLE));
      audit.check(call(AUTH, 'dynamodb:DescribeTable', STATE_TABLE));
      audit.check(call(AUTH, 's3:GetObject', RECORDING));
      audit.check(call(AUTH, 's3:PutObject', RECORDING, { context: { 'aws:SecureTransport': 'false' } }));
      audit.check(call(NODE, 'ssm:GetParameter', PROXY_TOKEN));
      audit.check(call({ ...NODE, name: 'i-0node2' }, 'ssm:GetParameter', PROXY_TOKEN));

      // THEN every call is recorded in order, and the denied ones are the insecure put and the node reads
      expect(audit.calls().map((e) => [e.call.action, e.decision.allowed])).toEqual([
        ['dynamodb:PutItem', true], ['dynamodb:GetItem', true], ['dynamodb:DescribeTable', true], ['s3:GetObject', true],
        ['s3:PutObject', false], ['ssm:GetParameter', false], ['ssm:GetParameter', false],
      ]);
      expect(audit.denied().map((e) => `${e.call.caller.name} ${e.call.action}`)).toEqual(['i-0auth s3:PutObject', 'i-0node ssm:GetParameter', 'i-0node2 ssm:GetParameter']);
      expect(heard).toHaveLength(3);
      expect(heard[0]).toBe(`IAM denied i-0auth (AuthRoleC0FBE42D) s3:PutObject on ${RECORDING}: explicit Deny in bucket policy StorageRecordingsBucketPolicyEF8CF999 of bucket teleport-acme-storagerecordingsbucket6074b87c statement #1`);

      // AND the unused permissions list what no allowed call used, and not what one did
      const unused = audit.unusedPermissions().filter((u) => u.roleLogicalId === 'AuthRoleC0FBE42D');
      const entry = (sid: string, action: string, resource: string) => ({ roleLogicalId: 'AuthRoleC0FBE42D', policy: 'AuthRoleC0FBE42D/teleport', statement: expect.any(Number), sid, action, resource });
      const eventsTable = arn.table(physical('StorageEventsTable624F63BE'));
      expect(unused).toEqual(expect.arrayContaining([
        entry('Tables', 'dynamodb:Query', STATE_TABLE),
        entry('Tables', 'dynamodb:PutItem', eventsTable),
        entry('Recordings', 's3:AbortMultipartUpload', `${arn.bucket(physical('StorageRecordingsBucket6074B87C'))}/records/*`),
        entry('Recordings', 's3:PutObject', `${arn.bucket(physical('StorageRecordingsBucket6074B87C'))}/records/*`),
      ]));
      expect(unused).not.toEqual(expect.arrayContaining([entry('Tables', 'dynamodb:PutItem', STATE_TABLE)]));
      expect(unused).not.toEqual(expect.arrayContaining([entry('Tables', 'dynamodb:GetItem', STATE_TABLE)]));
      expect(unused).not.toEqual(expect.arrayContaining([entry('Recordings', 's3:GetObject', `${arn.bucket(physical('StorageRecordingsBucket6074B87C'))}/records/*`)]));
      // (the wildcard pattern dynamodb:Describe* was used by DescribeTable)
      expect(unused.some((u) => u.sid === 'DescribeAnyTable')).toBe(false);
      // (an attached policy's statement without a Sid is listed by policy and index)
      expect(audit.unusedPermissions()).toContainEqual({
        roleLogicalId: 'ControlPlaneProviderRole26893B90', policy: 'ControlPlaneProviderRoleDefaultPolicyB76D1B03', statement: 1,
        action: 'lambda:InvokeFunction', resource: arn.function(physical('ControlPlaneRotatorAA4656CA')),
      });

      // AND the summary counts per role
      const summary = audit.summary();
      expect(summary.find((s) => s.roleLogicalId === 'AuthRoleC0FBE42D')).toEqual({
        roleLogicalId: 'AuthRoleC0FBE42D', calls: 5, allowed: 4, denied: 1, unusedPermissions: unused.length,
      });
      expect(summary.find((s) => s.roleLogicalId === 'NodesRoleA22E0B2B')).toMatchObject({ calls: 2, allowed: 0, denied: 2 });

      // AND the report lists denied calls (grouped, with their callers) before the unused permissions
      const report = audit.report();
      expect(report).toContain('IAM audit: 7 calls, 3 denied');
      expect(report).toContain(`  NodesRoleA22E0B2B (i-0node, i-0node2) ssm:GetParameter on ${PROXY_TOKEN} x2\n    no matching Allow in the policies of NodesRoleA22E0B2B`);
      expect(report).toContain(`  AuthRoleC0FBE42D (i-0auth) s3:PutObject on ${RECORDING}\n    explicit Deny in bucket policy`);
      const lines = report.split('\n');
      expect(lines).toContain(`    AuthRoleC0FBE42D/teleport statement Tables: dynamodb:Query on ${STATE_TABLE}, ${eventsTable}`);
      expect(lines).toContain(`    AuthRoleC0FBE42D/teleport statement Tables: dynamodb:PutItem on ${eventsTable}`);
      expect(report.indexOf('Denied calls:')).toBeLessThan(report.indexOf('Unused permissions:'));
      expect(report.indexOf('Unused permissions:')).toBeLessThan(report.indexOf('Per role'));
      expect(report).toContain('  AuthRoleC0FBE42D: 5 / 4 / 1 /');
    } finally {
      await audit.close();
    }
  });
});

describe('IamAudit lifetime', () => {
  test('a closed audit refuses to decide, with a typed error', async () => {
    // GIVEN an audit whose simulator has been closed
    const audit = auditOf(TEMPLATE);
    audit.check(call(AUTH, 'dynamodb:GetItem', STATE_TABLE));
    await audit.close();
    // WHEN a call is checked
    // THEN it throws SimulatorError saying the worker exited, at once
    expect(() => audit.check(call(AUTH, 'dynamodb:GetItem', STATE_TABLE))).toThrow(SimulatorError);
    expect(() => audit.check(call(AUTH, 'dynamodb:GetItem', STATE_TABLE))).toThrow(/the worker exited/);
  });
});

describe('templatePolicies refusals', () => {
  test('an AWS managed policy is refused, naming it', () => {
    // GIVEN a role with an AWS managed policy, whose document the library does not ship
    const template = withResources({
      NodesRoleA22E0B2B: role('ec2.amazonaws.com', [], { ManagedPolicyArns: [{ 'Fn::Join': ['', [partition, ':iam::aws:policy/AmazonSSMManagedInstanceCore']] }] }),
    });
    // WHEN the audit reads the template
    // THEN it refuses with the role and the policy's ARN
    expect(() => auditOf(template)).toThrow(PolicyError);
    expect(() => auditOf(template)).toThrow(/NodesRoleA22E0B2B: AWS managed policy arn:aws:iam::aws:policy\/AmazonSSMManagedInstanceCore cannot be evaluated/);
  });
});
