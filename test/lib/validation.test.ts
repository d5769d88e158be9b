import { App } from 'aws-cdk-lib';
import { clusterPropsFromContext } from '../../lib/app-context';
import { ClusterStack, ClusterStackProps } from '../../lib/cluster-stack';
import { checkServed } from '../../lib/validation';
import type { InstanceRole } from '../../runtime/contract/aws';
import { testApp } from '../helpers/cdk';

const base: ClusterStackProps = { clusterName: 'acme', domainName: 'teleport.example.com' };

/** Builds a cluster stack with `props` over the base props; returns the app to check nothing was defined. */
function build(props: Partial<ClusterStackProps>): App {
  const app = testApp();
  new ClusterStack(app, 'Cluster', { ...base, ...props });
  return app;
}

describe('ClusterStack prop validation (before any resource is defined)', () => {
  test.each<[string, Partial<ClusterStackProps>, RegExp]>([
    ['a cluster name with dots', { clusterName: 'teleport.example.com' }, /clusterName must be 1-20 lower-case letters/],
    ['a cluster name too long for LB names', { clusterName: 'a'.repeat(21) }, /clusterName must be 1-20/],
    ['a cluster name ending in a hyphen', { clusterName: 'acme-' }, /clusterName/],
    ['an upper-case cluster name', { clusterName: 'Acme' }, /clusterName/],
    ['a bare host as domain', { domainName: 'teleport' }, /domainName must be a lower-case DNS name/],
    ['a domain with a trailing dot', { domainName: 'teleport.example.com.' }, /domainName/],
    ['a malformed hosted zone id', { hostedZone: { hostedZoneId: 'zone-1', zoneName: 'example.com' } }, /hostedZone.hostedZoneId must be a Route 53 hosted zone id/],
    ['a domain outside the hosted zone', { hostedZone: { hostedZoneId: 'Z0123456789ABCDEFGHIJ', zoneName: 'example.org' } }, /domainName 'teleport.example.com' is not inside the hosted zone 'example.org'/],
    ['a malformed certificate ARN', { certificateArn: 'arn:aws:iam::123456789012:server-certificate/x' }, /certificateArn must be an ACM certificate ARN/],
    ['both a certificate ARN and createCertificate', { certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/0f2e5a1c-7d3b-4c1e-9a8b-123456789abc', createCertificate: true }, /either certificateArn or createCertificate/],
    ['createCertificate without a zone', { createCertificate: true }, /createCertificate needs hostedZone/],
    ['a malformed CIDR', { allowedCidrs: ['10.0.0.0/33'] }, /allowedCidrs must contain IPv4 CIDR blocks/],
    ['an empty CIDR list', { allowedCidrs: [] }, /allowedCidrs must list at least one CIDR block/],
    ['kubernetes on (the Kubernetes proxy is not built)', { kubernetes: true }, /^kubernetes: the Kubernetes proxy is not built yet, so nothing would serve port 3026; leave kubernetes unset \(or false\)$/],
    ['a malformed instance type', { proxy: { instanceType: 'large' } }, /proxy.instanceType must be an EC2 instance type/],
    ['zero auth servers', { auth: { minCapacity: 0 } }, /auth.minCapacity must be an integer between 1 and/],
    ['a max below min', { node: { minCapacity: 3, maxCapacity: 2 } }, /node.maxCapacity must be an integer between 3 and/],
    ['a single-instance max (no room for a rolling update)', { auth: { maxCapacity: 1 } }, /auth.maxCapacity must be an integer between 2 and/],
    ['an AMI parameter without a leading slash', { amiParameterName: 'teleport/ami' }, /amiParameterName must be an SSM parameter name/],
    ['an existing VPC with one subnet', { existingVpc: { vpcId: 'vpc-0123456789abcdef0', availabilityZones: ['a'], publicSubnetIds: ['subnet-0000000000000000a'], privateSubnetIds: ['subnet-0000000000000000b'] } }, /existingVpc.publicSubnetIds must list at least two subnets/],
    ['an existing VPC with a malformed id', { existingVpc: { vpcId: 'my-vpc', availabilityZones: ['a', 'b'], publicSubnetIds: ['subnet-0000000000000000a', 'subnet-0000000000000000b'], privateSubnetIds: ['subnet-0000000000000000c', 'subnet-0000000000000000d'] } }, /existingVpc.vpcId must be a VPC id/],
  ])('rejects %s', (_name, props, message) => {
    // GIVEN invalid props WHEN the stack is built THEN a clear error names the prop
    let app: App | undefined;
    expect(() => {
      app = testApp();
      new ClusterStack(app, 'Cluster', { ...base, ...props });
    }).toThrow(message);
    // AND nothing was defined: the checks run before the stack itself is created
    expect(app!.node.children.length).toBe(0);
  });

  test('valid props build', () => {
    expect(() => build({ auth: { minCapacity: 1, maxCapacity: 2 }, allowedCidrs: ['203.0.113.0/24', '198.51.100.7/32'], kubernetes: false })).not.toThrow();
  });
});

describe('clusterPropsFromContext', () => {
  const ctx = (values: Record<string, unknown>) => (key: string) => values[key];

  test('reads command-line strings into typed props', () => {
    // GIVEN context as `cdk synth -c key=value` delivers it (all strings)
    const props = clusterPropsFromContext(
      ctx({
        clusterName: 'acme',
        domainName: 'teleport.example.com',
        hostedZoneId: 'Z0123456789ABCDEFGHIJ',
        hostedZoneName: 'example.com',
        kubernetes: 'true',
        allowedCidrs: '203.0.113.0/24, 198.51.100.0/24',
        vpcId: 'vpc-0123456789abcdef0',
        availabilityZones: 'eu-west-1a,eu-west-1b',
        publicSubnetIds: 'subnet-0000000000000000a,subnet-0000000000000000b',
        privateSubnetIds: 'subnet-0000000000000000c,subnet-0000000000000000d',
        authMinCapacity: '3',
        nodeInstanceType: 't3.micro',
        logRetentionDays: '90',
        sessionRecording: 'proxy',
        certificateArn: '',
      }),
    );
    // THEN lists, booleans and numbers are parsed, and empty values mean "not given"
    expect(props).toMatchObject({
      clusterName: 'acme',
      hostedZone: { hostedZoneId: 'Z0123456789ABCDEFGHIJ', zoneName: 'example.com' },
      kubernetes: true,
      allowedCidrs: ['203.0.113.0/24', '198.51.100.0/24'],
      existingVpc: { vpcId: 'vpc-0123456789abcdef0', availabilityZones: ['eu-west-1a', 'eu-west-1b'] },
      auth: { minCapacity: 3 },
      node: { instanceType: 't3.micro' },
      logRetentionDays: 90,
      sessionRecording: 'proxy',
    });
    expect(props.certificateArn).toBeUndefined();
    expect(props.proxy).toBeUndefined();
    expect(props.env).toBeUndefined();
  });

  test.each<[string, Record<string, unknown>, RegExp]>([
    ['a missing clusterName', { domainName: 'teleport.example.com' }, /clusterName is required/],
    ['a non-boolean kubernetes', { clusterName: 'a', domainName: 'b.example.com', kubernetes: 'maybe' }, /kubernetes/],
    ['a non-numeric capacity', { clusterName: 'a', domainName: 'b.example.com', authMinCapacity: 'two' }, /authMinCapacity/],
    ['an unknown sessionRecording', { clusterName: 'a', domainName: 'b.example.com', sessionRecording: 'sometimes' }, /sessionRecording: expected node, proxy or off/],
    ['a zone id without a zone name', { clusterName: 'a', domainName: 'b.example.com', hostedZoneId: 'Z0123456789ABCDEFGHIJ' }, /both hostedZoneId and hostedZoneName/],
    ['subnets without vpcId', { clusterName: 'a', domainName: 'b.example.com', publicSubnetIds: 'subnet-0000000000000000a' }, /publicSubnetIds and privateSubnetIds need vpcId/],
    ['vpcId without subnets', { clusterName: 'a', domainName: 'b.example.com', vpcId: 'vpc-0123456789abcdef0' }, /vpcId needs availabilityZones/],
  ])('rejects %s', (_name, values, message) => {
    expect(() => clusterPropsFromContext(ctx(values))).toThrow(message);
  });
});

describe('checkServed: a port may be published only where the runtime serves it', () => {
  test.each<[InstanceRole, number]>([
    ['proxy', 3026],
    ['proxy', 3022],
    ['node', 3025],
    ['node', 3024],
    ['auth,node,proxy', 3026],
  ])('GIVEN role %s WHEN port %d is to be published THEN it is refused, naming what it serves', (role, port) => {
    expect(() => checkServed(role, port, 'the listener')).toThrow(
      new RegExp(`^the listener: port ${port} is not served by the ${role} runtime \\(it serves [\\d, ]+\\), so it cannot be published$`),
    );
  });

  test.each<[InstanceRole, number]>([
    ['proxy', 3023],
    ['proxy', 3024],
    ['proxy', 3080],
    ['auth', 3025],
    ['node', 3022],
    ['auth,node,proxy', 3080],
  ])('GIVEN role %s WHEN port %d is to be published THEN it is returned', (role, port) => {
    expect(checkServed(role, port, 'the listener')).toBe(port);
  });
});
