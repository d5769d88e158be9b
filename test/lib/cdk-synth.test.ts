import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, run, tempDir } from '../helpers/proc';

const CDK = path.join(ROOT, 'node_modules', '.bin', 'cdk');
const out = tempDir('cdk-synth-');
afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

/** No credentials, no profile files and no instance metadata. */
const env = {
  AWS_ACCESS_KEY_ID: '',
  AWS_SECRET_ACCESS_KEY: '',
  AWS_SESSION_TOKEN: '',
  AWS_PROFILE: '',
  AWS_DEFAULT_PROFILE: '',
  AWS_REGION: '',
  AWS_DEFAULT_REGION: '',
  AWS_CONFIG_FILE: path.join(out, 'no-config'),
  AWS_SHARED_CREDENTIALS_FILE: path.join(out, 'no-credentials'),
  AWS_EC2_METADATA_DISABLED: 'true',
  TMPDIR: out, // the CLI's own caches (v8-compile-cache) go with the test's directory
};

describe('`cdk synth` of the app as a process', () => {
  test('synthesises with no AWS credentials or network, cdk-nag included, exit 0', async () => {
    // GIVEN no credentials, no profile files and no instance metadata (env)
    // WHEN the CLI synthesises the app with the context a user would pass
    const r = await run(
      CDK,
      [
        'synth', '--quiet', '--no-notices', '--no-version-reporting', '--output', path.join(out, 'cdk.out'),
        '-c', 'clusterName=synthtest',
        '-c', 'domainName=teleport.example.com',
        '-c', 'hostedZoneId=Z0123456789ABCDEFGHIJ',
        '-c', 'hostedZoneName=example.com',
        '-c', 'certificateArn=arn:aws:acm:eu-west-1:123456789012:certificate/0f2e5a1c-7d3b-4c1e-9a8b-123456789abc',
        '-c', 'kubernetes=false',
      ],
      { cwd: ROOT, env },
    );
    // THEN it exits 0 and writes the stack's template with the context applied
    expect({ code: r.code, stderr: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, stderr: '' });
    const template = JSON.parse(fs.readFileSync(path.join(out, 'cdk.out', 'Teleport-synthtest.template.json'), 'utf8'));
    const types = Object.values(template.Resources as Record<string, { Type: string }>).map((r) => r.Type);
    expect(types).toContain('AWS::Route53::RecordSet');
    expect(types.filter((t) => t === 'AWS::ElasticLoadBalancingV2::LoadBalancer')).toHaveLength(3);
    // AND nothing asked for a context lookup (which would need credentials)
    const manifest = JSON.parse(fs.readFileSync(path.join(out, 'cdk.out', 'manifest.json'), 'utf8'));
    expect(manifest.missing).toBeUndefined();
    // AND the control plane handlers were bundled for real by esbuild: each function's asset holds its handler
    const assets = JSON.parse(fs.readFileSync(path.join(out, 'cdk.out', 'Teleport-synthtest.assets.json'), 'utf8'));
    const bundle = (prefix: string): string => {
      const [fn] = Object.entries(template.Resources as Record<string, { Type: string; Properties: any }>).filter(
        ([id, r]) => r.Type === 'AWS::Lambda::Function' && id.startsWith(prefix),
      );
      const hash = String(fn[1].Properties.Code.S3Key).replace(/\.zip$/, '');
      const dir = path.join(out, 'cdk.out', assets.files[hash].source.path);
      expect(fs.readdirSync(dir).sort()).toEqual(['index.js', 'index.js.map']);
      return fs.readFileSync(path.join(dir, 'index.js'), 'utf8');
    };
    const rotator = bundle('ControlPlaneRotator');
    expect(rotator).toContain('teleport-token-rotator-');
    expect(rotator).toContain('SecureString');
    const lifecycle = bundle('ControlPlaneLifecycle');
    expect(lifecycle).toContain('autoscaling:EC2_INSTANCE_TERMINATING');
    const pinPublisher = bundle('ControlPlanePinPublisher');
    expect(pinPublisher).toContain('no write of the host CA in the event');
    // AND the SDK is left to the Lambda runtime (required, not inlined)
    for (const code of [rotator, lifecycle, pinPublisher]) expect(code).toMatch(/require\("@aws-sdk\/client-ssm"\)/);
  }, 120_000);

  test('-c kubernetes=true stops synthesis with the reason and exit 1 (the Kubernetes proxy is not built)', async () => {
    // GIVEN no credentials (env) WHEN the CLI synthesises a cluster asking for the Kubernetes proxy
    const dir = path.join(out, 'cdk.out-kubernetes');
    const r = await run(
      CDK,
      ['synth', '--quiet', '--no-notices', '--no-version-reporting', '--output', dir, '-c', 'clusterName=synthkube', '-c', 'domainName=teleport.example.com', '-c', 'kubernetes=true'],
      { cwd: ROOT, env },
    );
    // THEN it fails naming the key and why, and writes no template
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('error: kubernetes: the Kubernetes proxy is not built yet, so nothing would serve port 3026; leave kubernetes unset (or false)');
    expect(fs.existsSync(path.join(dir, 'Teleport-synthkube.template.json'))).toBe(false);
  }, 120_000);

  test("cdk.json's Node.js flags keep aws-cdk-lib's template validation: a resource its schema refuses is reported", async () => {
    // GIVEN the Node.js flags cdk.json starts the app with
    const [node, ...rest] = String(JSON.parse(fs.readFileSync(path.join(ROOT, 'cdk.json'), 'utf8')).app).split(/\s+/);
    expect(node).toBe('node');
    const flags = rest.filter((a) => a.startsWith('--'));
    expect(rest.filter((a) => !a.startsWith('--'))).toEqual(['scripts/cdk-app.js']);
    // AND an app with a bucket that has a property CloudFormation's schema does not have
    const dir = path.join(out, 'validation');
    fs.mkdirSync(dir);
    const app = path.join(dir, 'app.js');
    fs.writeFileSync(
      app,
      [
        `const { App, Stack, CfnResource } = require(${JSON.stringify(path.join(ROOT, 'node_modules', 'aws-cdk-lib'))});`,
        `const app = new App({ outdir: ${JSON.stringify(path.join(dir, 'cdk.out'))} });`,
        "new CfnResource(new Stack(app, 'Checked'), 'Bucket', { type: 'AWS::S3::Bucket', properties: { NoSuchProperty: 1 } });",
        'app.synth();',
      ].join('\n'),
    );
    // WHEN it is synthesised under those flags
    const r = await run(process.execPath, [...flags, app], { cwd: ROOT, env });
    // THEN the validation ran and reported the property, on the construct
    expect({ code: r.code, stderr: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, stderr: '' });
    const report = JSON.parse(fs.readFileSync(path.join(dir, 'cdk.out', 'validation-report.json'), 'utf8'));
    const plugin = report.pluginReports.find((p: { pluginName: string }) => p.pluginName === 'CloudFormation Validate');
    expect(plugin.violations.map((v: any) => [v.ruleName, v.violatingConstructs[0].constructPath, v.description])).toEqual([
      ['F3002', 'Checked/Bucket', "NoSuchProperty: Additional properties are not allowed ('NoSuchProperty' was unexpected)"],
    ]);
  }, 120_000);

  test('synthesises the starter (-c stack=starter) into an existing VPC with no credentials, exit 0', async () => {
    // GIVEN no credentials (env) WHEN the CLI synthesises the starter into a VPC given by ids
    const dir = path.join(out, 'cdk.out-starter');
    const r = await run(
      CDK,
      [
        'synth', '--quiet', '--no-notices', '--no-version-reporting', '--output', dir,
        '-c', 'stack=starter',
        '-c', 'clusterName=synthstarter',
        '-c', 'storage=dynamodb',
        '-c', 'vpcId=vpc-0123456789abcdef0',
        '-c', 'availabilityZones=eu-west-1a,eu-west-1b',
        '-c', 'publicSubnetIds=subnet-0000000000000000a,subnet-0000000000000000b',
      ],
      { cwd: ROOT, env },
    );
    // THEN it exits 0 and writes the starter's template: one instance with an Elastic IP in the given subnet, no VPC
    expect({ code: r.code, stderr: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, stderr: '' });
    const template = JSON.parse(fs.readFileSync(path.join(dir, 'Teleport-synthstarter-starter.template.json'), 'utf8'));
    const resources = Object.values(template.Resources as Record<string, { Type: string; Properties: any }>);
    const types = resources.map((res) => res.Type);
    expect(types.filter((t) => t === 'AWS::EC2::Instance')).toHaveLength(1);
    expect(types).toContain('AWS::EC2::EIPAssociation');
    expect(types.filter((t) => t === 'AWS::DynamoDB::Table')).toHaveLength(2);
    expect(types).not.toContain('AWS::EC2::VPC');
    expect(types).not.toContain('AWS::AutoScaling::AutoScalingGroup');
    const instance = resources.find((res) => res.Type === 'AWS::EC2::Instance')!;
    expect(instance.Properties.NetworkInterfaces[0].SubnetId).toBe('subnet-0000000000000000a');
    // AND nothing asked for a context lookup (which would need credentials), and the cluster stack was not built
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    expect(manifest.missing).toBeUndefined();
    expect(Object.keys(manifest.artifacts)).not.toContain('Teleport-synthstarter');
    // AND aws-cdk-lib's template validation ran in the synth (cdk.json's app flags): it found the zones given by
    // context (W3010), which the stack acknowledges, and nothing else
    const report = JSON.parse(fs.readFileSync(path.join(dir, 'validation-report.json'), 'utf8'));
    const validate = report.pluginReports.find((p: { pluginName: string }) => p.pluginName === 'CloudFormation Validate');
    expect(validate.violations).toEqual([]);
    expect(validate.suppressedViolations.map((v: { ruleName: string }) => v.ruleName)).toEqual(['W3010']);
  }, 120_000);
});
