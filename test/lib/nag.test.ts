import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, Stack, Validations } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ClusterStack, ClusterStackProps } from '../../lib/cluster-stack';
import { StarterStack, StarterStackProps } from '../../lib/starter-stack';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nag-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function checkedApp(name: string): App {
  // No Lambda bundling (the checks read the template only); cdk-synth.test.ts bundles for real.
  const app = new App({ outdir: path.join(tmp, name), context: { 'aws:cdk:bundling-stacks': [] } });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return app;
}

/** Every cdk-nag acknowledgement recorded in the construct tree, with the path of the construct that carries it. */
function acknowledgements(app: App): { path: string; id: string; reason: string }[] {
  const out: { path: string; id: string; reason: string }[] = [];
  for (const c of app.node.findAll()) {
    for (const m of c.node.metadata) {
      if (m.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
      // data maps `<source>::<rule id>` to the reason
      for (const [key, reason] of Object.entries(m.data as Record<string, string>)) {
        const id = key.replace(/^Annotation::/, '');
        if (id.startsWith('AwsSolutions-')) out.push({ path: c.node.path, id, reason });
      }
    }
  }
  return out;
}

const variants: [string, Partial<ClusterStackProps>][] = [
  ['default (NLB, new VPC)', {}],
  [
    'ACM + zone + existing VPC',
    {
      certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/0f2e5a1c-7d3b-4c1e-9a8b-123456789abc',
      hostedZone: { hostedZoneId: 'Z0123456789ABCDEFGHIJ', zoneName: 'example.com' },
      existingVpc: {
        vpcId: 'vpc-0123456789abcdef0',
        availabilityZones: ['eu-west-1a', 'eu-west-1b'],
        publicSubnetIds: ['subnet-0000000000000000a', 'subnet-0000000000000000b'],
        privateSubnetIds: ['subnet-0000000000000000c', 'subnet-0000000000000000d'],
      },
    },
  ],
  [
    'concrete account/region with zones (ALB access logs on)',
    {
      env: { account: '123456789012', region: 'eu-west-1' },
      availabilityZones: ['eu-west-1a', 'eu-west-1b'],
      certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/0f2e5a1c-7d3b-4c1e-9a8b-123456789abc',
    },
  ],
];

const starterVariants: [string, Partial<StarterStackProps>][] = [
  ['starter: local storage, no domain, new VPC', {}],
  [
    "starter: Let's Encrypt, zone, DynamoDB storage",
    { domainName: 'teleport.example.com', hostedZone: { hostedZoneId: 'Z0123456789ABCDEFGHIJ', zoneName: 'example.com' }, letsEncryptEmail: 'ops@example.com', storage: 'dynamodb' },
  ],
  [
    'starter: local storage, ACM + zone + existing VPC',
    {
      domainName: 'teleport.example.com',
      certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/0f2e5a1c-7d3b-4c1e-9a8b-123456789abc',
      hostedZone: { hostedZoneId: 'Z0123456789ABCDEFGHIJ', zoneName: 'example.com' },
      existingVpc: {
        vpcId: 'vpc-0123456789abcdef0',
        availabilityZones: ['eu-west-1a', 'eu-west-1b'],
        publicSubnetIds: ['subnet-0000000000000000a', 'subnet-0000000000000000b'],
      },
    },
  ],
  ['starter: dynamodb storage, domain without certificate, restricted CIDRs', { storage: 'dynamodb', domainName: 'teleport.example.com', allowedCidrs: ['203.0.113.0/24'] }],
  [
    'starter: dynamodb storage, DNS-validated certificate, concrete account/region (ALB access logs on)',
    {
      storage: 'dynamodb',
      env: { account: '123456789012', region: 'eu-west-1' },
      availabilityZones: ['eu-west-1a', 'eu-west-1b'],
      domainName: 'teleport.example.com',
      hostedZone: { hostedZoneId: 'Z0123456789ABCDEFGHIJ', zoneName: 'example.com' },
      createCertificate: true,
    },
  ],
];

/** Synthesises `app` and returns the AwsSolutions findings nothing acknowledged. */
function unacknowledged(app: App): unknown[] {
  const assembly = app.synth();
  const report = JSON.parse(fs.readFileSync(path.join(assembly.directory, 'validation-report.json'), 'utf8'));
  return (report.pluginReports ?? []).flatMap((r: { violations?: unknown[] }) => r.violations ?? []);
}

describe('cdk-nag AwsSolutions checks', () => {
  test('the plugin is active: an unencrypted, unlogged bucket fails synthesis', () => {
    // GIVEN a stack with a bare bucket under the same checks
    const app = checkedApp('control');
    new s3.Bucket(new Stack(app, 'Control'), 'Bare');
    // WHEN synthesised THEN the findings stop synthesis
    expect(() => app.synth()).toThrow(/AwsSolutions-S1/);
  });

  test.each(variants)('%s: zero unacknowledged findings, every acknowledgement on a named resource with a reason', (name, props) => {
    // GIVEN the cluster stack under the AwsSolutions checks
    const app = checkedApp(name.replace(/\W+/g, '-'));
    new ClusterStack(app, 'Cluster', { clusterName: 'acme', domainName: 'teleport.example.com', ...props });
    // WHEN it is synthesised THEN no finding stops it
    expect(unacknowledged(app)).toEqual([]);
    // AND each acknowledgement sits on a resource (never the app or the stack) with a specific reason
    const acks = acknowledgements(app);
    expect(acks.length).toBeGreaterThan(0);
    for (const a of acks) {
      expect(a.path.startsWith('Cluster/')).toBe(true);
      expect(a.id).toMatch(/^AwsSolutions-[A-Z]+\d+/);
      expect(a.reason.length).toBeGreaterThan(60);
    }
  });

  test.each(starterVariants)('%s: zero unacknowledged findings, every acknowledgement on a named resource with a reason', (name, props) => {
    // GIVEN the starter stack under the AwsSolutions checks
    const app = checkedApp(name.replace(/\W+/g, '-'));
    new StarterStack(app, 'Starter', { clusterName: 'acme', ...props });
    // WHEN it is synthesised THEN no finding stops it
    expect(unacknowledged(app)).toEqual([]);
    // AND each acknowledgement sits on a resource (never the app or the stack) with a specific reason
    const acks = acknowledgements(app);
    expect(acks.map((a) => a.id)).toContain('AwsSolutions-EC29');
    for (const a of acks) {
      expect(a.path.startsWith('Starter/')).toBe(true);
      expect(a.id).toMatch(/^AwsSolutions-[A-Z]+\d+/);
      expect(a.reason.length).toBeGreaterThan(60);
    }
  });
});
