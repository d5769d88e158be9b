/**
 * The local deployment's reading of a synthesized template (names, ARNs, intrinsics), the
 * account limits it deploys into, and the boot it gives instances from the AMI's units.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bootScript, imageUnits, startOrder } from '../../sim/instance';
import { reservedConcurrencyFailures } from '../../sim/lambda/concurrency';
import { Deployment, LOCAL_IMAGE_ID, TemplateError } from '../../sim/template';
import { ACCOUNT, arn, REGION } from '../../sim/types';

const TEMPLATE = {
  Parameters: { AmiParam: { Type: 'AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>', Default: '/teleport/ami/latest' } },
  Conditions: { IsEu: { 'Fn::Equals': [{ Ref: 'AWS::Region' }, REGION] }, IsUs: { 'Fn::Not': [{ Condition: 'IsEu' }] } },
  Resources: {
    Table: { Type: 'AWS::DynamoDB::Table', Properties: { KeySchema: [] } },
    Named: { Type: 'AWS::DynamoDB::Table', Properties: { TableName: 'given-name' } },
    Bucket: { Type: 'AWS::S3::Bucket', Properties: {} },
    Lb: { Type: 'AWS::ElasticLoadBalancingV2::LoadBalancer', Properties: { Type: 'network', Name: 'acme-auth' } },
    Lb2: { Type: 'AWS::ElasticLoadBalancingV2::LoadBalancer', Properties: { Type: 'application' } },
    Fn: { Type: 'AWS::Lambda::Function', Properties: { Code: { S3Key: 'abc.zip' }, ReservedConcurrentExecutions: 1 } },
    Thing: {
      Type: 'AWS::SSM::Parameter',
      Properties: {
        Joined: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':x:', { Ref: 'AWS::AccountId' }]] },
        Sub: { 'Fn::Sub': ['${Table}/${Table.Arn}/${AWS::Region}/${V}/${!Literal}', { V: 'v' }] },
        Az: { 'Fn::Select': [1, { 'Fn::GetAZs': '' }] },
        If: { 'Fn::If': ['IsUs', 'us', { Ref: 'AWS::NoValue' }] },
        Other: { 'Fn::If': ['IsEu', 'eu', 'no'] },
        Ami: { Ref: 'AmiParam' },
        Dns: { 'Fn::GetAtt': ['Lb2', 'DNSName'] },
        B64: { 'Fn::Base64': { 'Fn::Join': ['-', ['a', 'b']] } },
      },
    },
  },
  Outputs: { TableName: { Value: { Ref: 'Table' } }, Stream: { Value: { 'Fn::GetAtt': ['Table', 'StreamArn'] } } },
};

let dir: string;
let d: Deployment;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sim-template-'));
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify({ artifacts: { 'Teleport-acme': { type: 'aws:cloudformation:stack', properties: { templateFile: 't.json' } } } }));
  fs.writeFileSync(path.join(dir, 't.json'), JSON.stringify(TEMPLATE));
  d = Deployment.load({ cdkOut: dir, loadBalancerAddress: (i) => `10.9.1.${i + 1}` });
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('template', () => {
  test('resources get CloudFormation-style physical names, or the name the template gives', () => {
    expect(d.physicalId('Table')).toMatch(/^Teleport-acme-Table-[0-9A-F]{12}$/);
    expect(d.physicalId('Named')).toBe('given-name');
    expect(d.physicalId('Bucket')).toMatch(/^teleport-acme-bucket-[0-9a-f]{12}$/);
    // the same template deploys under the same names
    expect(Deployment.load({ cdkOut: dir, loadBalancerAddress: () => '' }).physicalId('Table')).toBe(d.physicalId('Table'));
  });

  test('intrinsics resolve to plain JSON with the deployment names, ARNs and addresses', () => {
    const p = d.resolve(d.resource('Thing').Properties);
    expect(p.Joined).toBe(`arn:aws:x:${ACCOUNT}`);
    expect(p.Sub).toBe(`${d.physicalId('Table')}/${arn.table(d.physicalId('Table'))}/${REGION}/v/\${Literal}`);
    expect(p.Az).toBe(`${REGION}b`);
    expect('If' in p).toBe(false); // AWS::NoValue removes the key
    expect(p.Other).toBe('eu');
    expect(p.Ami).toBe(LOCAL_IMAGE_ID);
    expect(p.Dns).toBe('10.9.1.2'); // the second load balancer's virtual IP
    expect(Buffer.from(p.B64, 'base64').toString()).toBe('a-b');
  });

  test('a value known only once the resource exists is refused until it is recorded, and outputs wait for it', () => {
    expect(() => d.resolve({ 'Fn::GetAtt': ['Table', 'StreamArn'] })).toThrow(TemplateError);
    expect(d.resolvedOutputs().Stream).toBeUndefined();
    expect(d.resolvedOutputs().TableName.value).toBe(d.physicalId('Table'));
    const other = Deployment.load({ cdkOut: dir, loadBalancerAddress: () => '' });
    other.setAttribute('Table', 'StreamArn', 'arn:stream');
    expect(other.resolvedOutputs().Stream.value).toBe('arn:stream');
  });

  test('unknown resources, attributes and functions are refused by name', () => {
    expect(() => d.resolve({ Ref: 'Missing' })).toThrow(/no resource Missing/);
    expect(() => d.resolve({ 'Fn::GetAtt': ['Bucket', 'Nope'] })).toThrow(/Bucket.Nope/);
    expect(() => d.resolve({ 'Fn::ImportValue': 'x' })).toThrow(/Fn::ImportValue is not supported/);
  });
});

describe('account limits', () => {
  test('reserved concurrency fails as in a new account (quota 10, 10 kept unreserved); none passes', () => {
    // WHEN a function reserves 1 of a new account's 10
    const failures = reservedConcurrencyFailures(d.resources, d.resolve);
    // THEN its creation fails with AWS's message
    expect(failures).toEqual([{ logicalId: 'Fn', message: expect.stringContaining("decreases account's UnreservedConcurrentExecution below its minimum value of [10]") }]);
    // AND an account with room accepts it; a template without reservations passes anywhere
    expect(reservedConcurrencyFailures(d.resources, d.resolve, 1000)).toEqual([]);
    expect(reservedConcurrencyFailures({ F: { Type: 'AWS::Lambda::Function', Properties: {} } }, d.resolve)).toEqual([]);
  });
});

describe('instance boot from the AMI units', () => {
  test('the units of ami/files/system: the generator first, each role unit with its condition, pre-start, restart and runtime directory', () => {
    const units = imageUnits();
    expect(units[0].name).toBe('teleport-generate-config.service');
    expect(units[0].execStart).toBe('/usr/local/bin/teleport configure --from-conf /etc/teleport.d/conf --output /etc/teleport.yaml');
    const node = units.find((u) => u.name === 'teleport-node.service')!;
    expect(node).toMatchObject({
      conditions: ['/etc/teleport.d/role.node'],
      execStartPre: ['/usr/local/bin/teleport fetch-join-secrets --from-conf /etc/teleport.d/conf --role node'],
      restartOnFailure: true,
      restartSec: 5,
      runtimeDirectory: { name: 'teleport', mode: '0750' },
    });
    for (const u of units.filter((x) => x.restartOnFailure)) expect(u.conditions).toEqual([expect.stringMatching(/^\/etc\/teleport\.d\/role\./)]);
    // the readiness signal runs on every instance, after the role units
    expect(units.find((u) => u.name === 'teleport-signal.service')).toMatchObject({ execStart: '/usr/local/bin/teleport signal-ready --from-conf /etc/teleport.d/conf', restartOnFailure: false });
    expect(units.find((u) => u.name === 'teleport-signal.service')?.conditions).toEqual([]);
    const names = units.map((u) => u.name);
    for (const u of units.filter((x) => x.restartOnFailure)) expect(names.indexOf('teleport-signal.service')).toBeGreaterThan(names.indexOf(u.name));
  });

  test('units start in their After=/Before= order; a cycle is refused', () => {
    const unit = (name: string, after: string[] = [], before: string[] = []) => ({ name, after, before, conditions: [], execStartPre: [], execStart: 'true', restartOnFailure: false, restartSec: 0 });
    const order = startOrder([unit('a.service', ['c.service']), unit('b.service'), unit('c.service', [], ['b.service'])]).map((u) => u.name);
    expect(order).toEqual(['c.service', 'a.service', 'b.service']);
    expect(() => startOrder([unit('a.service', ['b.service']), unit('b.service', ['a.service'])])).toThrow(/cycle/);
  });

  test('the boot script mounts the instance disk, runs the user data, then the units in order, restarting a failed role unit', () => {
    const units = imageUnits();
    const script = bootScript({ root: '/r', userDataFile: '/r/user-data', units, nodeBinary: '/usr/bin/node' });
    const at = (s: string) => script.indexOf(s);
    for (const d of ['/etc', '/var', '/run', '/usr/local']) expect(script).toContain(`upperdir=/r/disk/${d.slice(1).replace('/', '-')}/upper`);
    expect(at("bash '/r/user-data'")).toBeGreaterThan(at('mount -t overlay'));
    expect(at('teleport configure --from-conf')).toBeGreaterThan(at("bash '/r/user-data'"));
    expect(at('fetch-join-secrets --from-conf /etc/teleport.d/conf --role node')).toBeGreaterThan(at('teleport configure --from-conf'));
    // a service runs in the background, restarted after RestartSec; the boot waits for all of them
    expect(script).toMatch(/if \[ -e '\/etc\/teleport.d\/role.node' \]; then \( while true; do install -d -m 0750 \/run\/teleport && /);
    expect(script).toContain('sleep 5');
    expect(script.trimEnd().split('\n').slice(-2)[0]).toBe('wait');
    // the CloudWatch agent's unit runs only where the agent is installed and a config was generated (neither here)
    expect(script).toContain(
      "if [ -e '/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl' ] && [ -e '/etc/teleport.d/cloudwatch-agent.json' ]; then",
    );
  });
});
