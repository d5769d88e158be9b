/**
 * Nothing published without a server behind it: in every synthesized variant of both stacks,
 * each target group, listener and security group rule leads only to ports that the instances
 * behind it serve. What an instance serves is computed the way the instance computes it: its user
 * data's conf goes through the AMI's generator, `teleport start`'s config builder and the list of
 * ports it binds (`plannedListeners`), which must also equal the shared contract's
 * `servedPorts(role)` (runtime/contract/ports.ts) that lib/ derives its listeners from.
 *
 * (A proxy NLB target group on 3024, which no proxy serves, failed every health check and, with ELB
 * health checks, made the proxy group replace its instances forever.)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Template } from 'aws-cdk-lib/assertions';
import { ClusterStack, ClusterStackProps } from '../../lib/cluster-stack';
import { StarterStack, StarterStackProps } from '../../lib/starter-stack';
import { buildConfig, parseConfig } from '../../runtime/config';
import { CONF_FILE, InstanceRole } from '../../runtime/contract/aws';
import { Ports, SERVED_PORTS, servedPorts } from '../../runtime/contract/ports';
import { parseConfText, validateConf } from '../../runtime/instance/conf';
import { generateConfig, instanceMode, renderConfig } from '../../runtime/instance/generate';
import { plannedListeners } from '../../runtime/service/listen';
import { NO_BUNDLING, type Res, testApp, userDataConf } from '../helpers/cdk';
import { scratchDir } from '../helpers/scratch';

const CERT_ARN = 'arn:aws:acm:eu-west-1:123456789012:certificate/0f2e5a1c-7d3b-4c1e-9a8b-123456789abc';
const ZONE = { hostedZoneId: 'Z0123456789ABCDEFGHIJ', zoneName: 'example.com' };
const AZS = ['eu-west-1a', 'eu-west-1b'];
const PUBLIC = ['subnet-0000000000000000a', 'subnet-0000000000000000b'];
const PRIVATE = ['subnet-0000000000000000c', 'subnet-0000000000000000d'];

const clusterVariants: [string, Partial<ClusterStackProps>][] = [
  ['cluster: new VPC, no certificate (NLB passes 443 through)', {}],
  ['cluster: ACM certificate, hosted zone, restricted CIDRs', { certificateArn: CERT_ARN, hostedZone: ZONE, allowedCidrs: ['203.0.113.0/24'] }],
  [
    'cluster: existing VPC, DNS-validated certificate',
    { existingVpc: { vpcId: 'vpc-0123456789abcdef0', availabilityZones: AZS, publicSubnetIds: PUBLIC, privateSubnetIds: PRIVATE }, hostedZone: ZONE, createCertificate: true },
  ],
  ['cluster: concrete account and region', { env: { account: '123456789012', region: 'eu-west-1' }, availabilityZones: AZS, certificateArn: CERT_ARN }],
];
const starterVariants: [string, Partial<StarterStackProps>][] = [
  ['starter: local storage, no domain', {}],
  ['starter: DynamoDB storage, domain without certificate, restricted CIDRs', { storage: 'dynamodb', domainName: 'teleport.example.com', allowedCidrs: ['203.0.113.0/24'] }],
  [
    'starter: ACM certificate, hosted zone, existing VPC',
    { domainName: 'teleport.example.com', certificateArn: CERT_ARN, hostedZone: ZONE, existingVpc: { vpcId: 'vpc-0123456789abcdef0', availabilityZones: AZS, publicSubnetIds: PUBLIC } },
  ],
  ["starter: Let's Encrypt (web on 443), hosted zone", { domainName: 'teleport.example.com', hostedZone: ZONE, letsEncryptEmail: 'ops@example.com' }],
];

const FACTS = { localIp: '10.0.1.17', localHostname: 'ip-10-0-1-17.eu-west-1.compute.internal' };

/** The role and the ports `teleport start` binds on an instance booted with this user data (the AMI's path, stand-ins for deploy-time values). */
function runtimeServes(userData: unknown, what: string): { role: InstanceRole; letsEncrypt: boolean; ports: number[] } {
  const conf = validateConf(parseConfText(userDataConf(userData, what), CONF_FILE).vars, CONF_FILE);
  // The join secrets fetch-join-secrets would have written (the config builder reads them).
  const dataDir = scratchDir('served-ports-');
  fs.writeFileSync(path.join(dataDir, 'token'), 'x'.repeat(32));
  fs.writeFileSync(path.join(dataDir, 'ca-pin'), `sha256:${'0'.repeat(64)}`);
  const text = renderConfig(generateConfig(conf, FACTS, { dataDir }), { confFile: CONF_FILE, mode: instanceMode(conf.role, conf.useAcm), outputFile: '/etc/teleport.yaml' });
  const config = buildConfig(parseConfig(text, '/etc/teleport.yaml'), {}, {});
  const listeners = plannedListeners(config);
  // The diagnostics endpoint is for the instance's own CloudWatch agent: on loopback, so nothing can publish it.
  expect(listeners.filter((l) => l.name === 'diag').map((l) => l.addr.host)).toEqual(['127.0.0.1']);
  return { role: conf.role, letsEncrypt: conf.letsEncrypt !== undefined, ports: listeners.filter((l) => l.name !== 'diag').map((l) => l.addr.port).sort() };
}

const refOf = (v: unknown): string | undefined => {
  const o = v as Record<string, any> | undefined;
  return o?.Ref ?? o?.['Fn::GetAtt']?.[0];
};

/** Every way the template lets traffic in, with the ports served behind it; the problems found. */
function unservedPublications(t: Template): { problems: string[]; published: string[] } {
  const problems: string[] = [];
  const published: string[] = [];
  const all = t.toJSON().Resources as Record<string, Res & { Type: string }>;
  const ofType = (type: string) => Object.entries(all).filter(([, r]) => r.Type === type);

  // Instances (launch templates and EC2 instances): what they serve, by the runtime and by the contract.
  const serves = new Map<string, ReturnType<typeof runtimeServes>>();
  const instanceGroups = new Map<string, string[]>(); // security group -> instance-like resources using it
  const useGroup = (sg: unknown, user: string) => {
    const id = refOf(sg)!;
    instanceGroups.set(id, [...(instanceGroups.get(id) ?? []), user]);
  };
  for (const [id, lt] of ofType('AWS::EC2::LaunchTemplate')) {
    serves.set(id, runtimeServes(lt.Properties.LaunchTemplateData.UserData, id));
    const data = lt.Properties.LaunchTemplateData;
    for (const sg of data.SecurityGroupIds ?? data.NetworkInterfaces?.flatMap((n: any) => n.Groups ?? []) ?? []) useGroup(sg, id);
  }
  for (const [id, inst] of ofType('AWS::EC2::Instance')) {
    serves.set(id, runtimeServes(inst.Properties.UserData, id));
    for (const sg of inst.Properties.SecurityGroupIds ?? inst.Properties.NetworkInterfaces?.flatMap((n: any) => n.GroupSet ?? []) ?? []) useGroup(sg, id);
  }
  for (const [id, s] of serves) {
    const contract = servedPorts(s.role, { letsEncrypt: s.letsEncrypt });
    if (s.ports.join() !== [...contract].sort().join()) {
      problems.push(`${id} (${s.role}) binds ${s.ports.join(', ')} but the contract says ${contract.join(', ')}`);
    }
  }
  const groupOf = (asgId: string) => refOf(all[asgId].Properties.LaunchTemplate?.LaunchTemplateId)!;
  const servedByAll = (behind: string[]) => (port: number) => behind.length > 0 && behind.every((b) => serves.get(b)!.ports.includes(port));

  // Target groups: the traffic port and the health check port, on every instance behind them.
  const targetGroups = new Set<string>();
  for (const [id, tg] of ofType('AWS::ElasticLoadBalancingV2::TargetGroup')) {
    targetGroups.add(id);
    const behind = [
      ...ofType('AWS::AutoScaling::AutoScalingGroup')
        .filter(([, g]) => (g.Properties.TargetGroupARNs ?? []).some((a: unknown) => refOf(a) === id))
        .map(([gid]) => groupOf(gid)),
      ...(tg.Properties.Targets ?? []).map((x: { Id: unknown }) => refOf(x.Id)!),
    ];
    const ports = [tg.Properties.Port, ...(tg.Properties.Targets ?? []).map((x: { Port?: number }) => x.Port), Number(tg.Properties.HealthCheckPort)].filter(
      (p): p is number => Number.isInteger(p),
    );
    for (const port of new Set(ports)) {
      published.push(`target group ${id}: ${port}`);
      if (!servedByAll(behind)(port)) problems.push(`target group ${id} sends port ${port} to ${behind.join(', ') || 'nothing'}, which does not serve it`);
    }
  }

  // Listeners: each forwards to one of those target groups; their ports are what a load balancer's group may open.
  const listenerPorts = new Map<string, number[]>();
  for (const [id, l] of ofType('AWS::ElasticLoadBalancingV2::Listener')) {
    const lb = refOf(l.Properties.LoadBalancerArn)!;
    listenerPorts.set(lb, [...(listenerPorts.get(lb) ?? []), l.Properties.Port]);
    const forwards = (l.Properties.DefaultActions ?? []).map((a: { Type: string; TargetGroupArn?: unknown }) => (a.Type === 'forward' ? refOf(a.TargetGroupArn) : undefined));
    if (forwards.length === 0 || forwards.some((tg: string | undefined) => !tg || !targetGroups.has(tg))) problems.push(`listener ${id} does not forward to a checked target group`);
  }
  const lbGroups = new Map<string, number[]>(); // security group -> listener ports of the load balancers using it
  for (const [id, lb] of ofType('AWS::ElasticLoadBalancingV2::LoadBalancer')) {
    for (const sg of lb.Properties.SecurityGroups ?? []) lbGroups.set(refOf(sg)!, [...(lbGroups.get(refOf(sg)!) ?? []), ...(listenerPorts.get(id) ?? [])]);
  }

  // Security groups: ingress to instances only on served ports, to load balancers only on their listener ports;
  // egress to another group only on what that group may receive.
  const allowedInto = (sg: string): ((port: number) => boolean) | undefined => {
    if (instanceGroups.has(sg)) return servedByAll(instanceGroups.get(sg)!);
    if (lbGroups.has(sg)) return (port) => lbGroups.get(sg)!.includes(port);
    return undefined;
  };
  const rule = (what: string, sg: string, from: number, to: number) => {
    published.push(`${what} ${sg}: ${from === to ? from : `${from}-${to}`}`);
    const allowed = allowedInto(sg);
    if (!allowed) problems.push(`${what} ${sg}: ${from}-${to} into a group that is neither an instance's nor a load balancer's`);
    else if (from !== to || !allowed(from)) problems.push(`${what} ${sg}: ${from === to ? `port ${from}` : `ports ${from}-${to}`} is not served behind it`);
  };
  for (const [id, sg] of ofType('AWS::EC2::SecurityGroup')) {
    for (const r of sg.Properties.SecurityGroupIngress ?? []) rule('ingress to', id, r.FromPort, r.ToPort);
  }
  for (const [, r] of ofType('AWS::EC2::SecurityGroupIngress')) rule('ingress to', refOf(r.Properties.GroupId)!, r.Properties.FromPort, r.Properties.ToPort);
  for (const [, r] of ofType('AWS::EC2::SecurityGroupEgress')) {
    if (r.Properties.DestinationSecurityGroupId) rule('egress into', refOf(r.Properties.DestinationSecurityGroupId)!, r.Properties.FromPort, r.Properties.ToPort);
  }
  return { problems, published: published.sort() };
}

describe('the shared contract is what the runtime binds', () => {
  test.each<[InstanceRole, number[]]>([
    ['auth', [Ports.auth]],
    ['proxy', [Ports.proxySsh, Ports.proxyTunnel, Ports.web]],
    ['node', [Ports.node]],
    ['auth,node,proxy', [Ports.node, Ports.proxySsh, Ports.proxyTunnel, Ports.auth, Ports.web]],
  ])('%s serves %j and not 3026 (no Kubernetes proxy)', (role, ports) => {
    // (with Let's Encrypt, the proxy's web port is 443 instead of 3080)
    if (role.includes('proxy')) expect([...servedPorts(role, { letsEncrypt: true })].sort()).toEqual(ports.map((p) => (p === Ports.web ? Ports.acmeWeb : p)).sort());
    // GIVEN the contract WHEN asked for the role THEN it lists exactly the ports its services bind
    expect([...servedPorts(role)].sort()).toEqual([...ports].sort());
    expect(Object.values(SERVED_PORTS).flat()).not.toContain(Ports.kube);
  });
});

describe.each(clusterVariants)('%s', (_name, props) => {
  // GIVEN the HA stack in this variant
  const t = Template.fromStack(new ClusterStack(testApp({ context: NO_BUNDLING }), 'Cluster', { clusterName: 'acme', domainName: 'teleport.example.com', ...props }));

  test('every target group, listener and security group rule leads to a served port', () => {
    // WHEN its publications are walked
    const { problems, published } = unservedPublications(t);
    // THEN none leads to a port nothing serves
    expect(problems).toEqual([]);
    // AND the walk saw the tiers' publications (it is not vacuous)
    expect(published).toEqual(expect.arrayContaining([expect.stringMatching(/: 3023$/), expect.stringMatching(/: 3024$/), expect.stringMatching(/: 3025$/), expect.stringMatching(/: 3022$/), expect.stringMatching(/: 3080$/)]));
    expect(published.join('\n')).not.toMatch(/: 3026$/m);
  });
});

describe.each(starterVariants)('%s', (_name, props) => {
  // GIVEN the starter in this variant
  const t = Template.fromStack(new StarterStack(testApp(), 'Starter', { clusterName: 'acme', ...props }));

  test('every target group, listener and security group rule leads to a served port', () => {
    // WHEN its publications are walked
    const { problems, published } = unservedPublications(t);
    // THEN none leads to a port nothing serves, and the proxy's ports are published (the web port on 443 with Let's Encrypt)
    expect(problems).toEqual([]);
    const web = props.letsEncryptEmail ? /: 443$/ : /: 3080$/;
    expect(published).toEqual(expect.arrayContaining([expect.stringMatching(/: 3023$/), expect.stringMatching(/: 3024$/), expect.stringMatching(web)]));
    if (props.letsEncryptEmail) expect(published.join('\n')).not.toMatch(/: 3080$/m);
    expect(published.join('\n')).not.toMatch(/: 3026$/m);
  });
});

describe('the walk finds an unserved publication', () => {
  test('GIVEN a template whose proxy NLB has a 3026 target group WHEN walked THEN it is reported', () => {
    // GIVEN the default cluster's template with one more NLB listener and target group on 3026 (nothing serves Kubernetes)
    const json = Template.fromStack(new ClusterStack(testApp({ context: NO_BUNDLING }), 'Cluster', { clusterName: 'acme', domainName: 'teleport.example.com' })).toJSON();
    const resources = json.Resources as Record<string, any>;
    const [sshTgId, sshTg] = Object.entries(resources).find(([, r]) => r.Type === 'AWS::ElasticLoadBalancingV2::TargetGroup' && r.Properties.Port === Ports.proxySsh)!;
    const [, sshListener] = Object.entries(resources).find(([, r]) => r.Type === 'AWS::ElasticLoadBalancingV2::Listener' && r.Properties.Port === Ports.proxySsh)!;
    resources.TunnelTargetGroup = { ...sshTg, Properties: { ...sshTg.Properties, Port: Ports.kube } };
    resources.TunnelListener = { ...sshListener, Properties: { ...sshListener.Properties, Port: Ports.kube, DefaultActions: [{ Type: 'forward', TargetGroupArn: { Ref: 'TunnelTargetGroup' } }] } };
    const [, proxyAsg] = Object.entries(resources).find(([, r]) => r.Type === 'AWS::AutoScaling::AutoScalingGroup' && r.Properties.TargetGroupARNs?.some((a: any) => a.Ref === sshTgId))!;
    proxyAsg.Properties.TargetGroupARNs.push({ Ref: 'TunnelTargetGroup' });
    // WHEN walked THEN the target group is reported
    expect(unservedPublications(Template.fromJSON(json)).problems).toEqual([expect.stringMatching(/^target group TunnelTargetGroup sends port 3026 to ProxyInstancesLaunchTemplate\w+, which does not serve it$/)]);
  });
});
