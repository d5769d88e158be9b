/** Apps and reading synthesised CloudFormation templates in the CDK tests. */
import { App, AppProps } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { CONF_FILE } from '../../runtime/contract/aws';
import { scratchDir } from './scratch';

export type Res = { Properties: Record<string, any>; DependsOn?: string[] };
export type Stmt = { Sid?: string; Action: string | string[]; Resource: unknown; Condition?: unknown };

/** An App whose cloud assembly goes to a temp directory removed after the test file (a bare `new App()` leaves one behind in TMPDIR). */
export function testApp(props: AppProps = {}): App {
  return new App({ outdir: scratchDir('cdk.out-'), ...props });
}

/** App context for Template-based tests: no Lambda bundling (the `cdk synth` process test bundles for real). */
export const NO_BUNDLING = { 'aws:cdk:bundling-stacks': [] };

/** The logical id of the one resource of `type` whose id starts with `prefix`. */
export function logicalId(t: Template, type: string, prefix = ''): string {
  const ids = Object.keys(t.findResources(type)).filter((id) => id.startsWith(prefix));
  if (ids.length !== 1) throw new Error(`${ids.length} ${type} resources start with '${prefix}'`);
  return ids[0];
}

/** The one resource of `type` whose logical id starts with `prefix`. */
export function one(t: Template, type: string, prefix = ''): Res {
  return t.findResources(type)[logicalId(t, type, prefix)] as Res;
}

/** The inline policy statements of the role whose logical id starts with `rolePrefix`, by Sid. */
export function statements(t: Template, rolePrefix: string): Record<string, Stmt> {
  const out: Record<string, Stmt> = {};
  for (const p of one(t, 'AWS::IAM::Role', rolePrefix).Properties.Policies ?? []) for (const s of p.PolicyDocument.Statement) out[s.Sid] = s;
  return out;
}

/** Actions of a statement, sorted. */
export const actions = (a: string | readonly string[]) => [a].flat().sort();

/** Ingress rules of group `groupId` (inline and standalone), as "port<-source". */
export function ingress(t: Template, groupId: string): string[] {
  const rules: string[] = [];
  const sg = t.findResources('AWS::EC2::SecurityGroup')[groupId];
  for (const r of sg.Properties.SecurityGroupIngress ?? []) rules.push(`${r.FromPort}-${r.ToPort}<-${r.CidrIp}`);
  for (const r of Object.values(t.findResources('AWS::EC2::SecurityGroupIngress')) as Res[]) {
    if (r.Properties.GroupId['Fn::GetAtt'][0] !== groupId) continue;
    rules.push(`${r.Properties.FromPort}-${r.Properties.ToPort}<-${r.Properties.SourceSecurityGroupId['Fn::GetAtt'][0]}`);
  }
  return rules.sort();
}

/** Egress rules of group `groupId` (inline and standalone), as "port->destination". */
export function egress(t: Template, groupId: string): string[] {
  const rules: string[] = [];
  const sg = t.findResources('AWS::EC2::SecurityGroup')[groupId];
  for (const r of sg.Properties.SecurityGroupEgress ?? []) rules.push(`${r.FromPort}-${r.ToPort}->${r.CidrIp}`);
  for (const r of Object.values(t.findResources('AWS::EC2::SecurityGroupEgress')) as Res[]) {
    if (r.Properties.GroupId['Fn::GetAtt'][0] !== groupId) continue;
    rules.push(`${r.Properties.FromPort}-${r.Properties.ToPort}->${r.Properties.DestinationSecurityGroupId['Fn::GetAtt'][0]}`);
  }
  return rules.sort();
}

/** A deploy-time value as a string the conf schema would see: ARNs for `Arn` attributes, the region, else a DNS-safe name. */
export function standIn(token: Record<string, any>): string {
  if (token.Ref === 'AWS::Region') return 'eu-west-1';
  const [resource, attribute] = token['Fn::GetAtt'] ?? [token.Ref, 'Ref'];
  const name = `${String(resource).toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 40)}-x`;
  // A target group's Ref is its ARN (CDK names them <listener>Group<hash>).
  if (attribute === 'Ref' && /Group[0-9A-F]{8}$/.test(String(resource))) {
    return `arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/${String(resource).slice(0, 32)}/0123456789abcdef`;
  }
  if (attribute === 'Arn') return `arn:aws:kms:eu-west-1:123456789012:key/${name}`;
  return attribute === 'DNSName' ? `${name}.elb.eu-west-1.amazonaws.com` : name;
}

/** The `/etc/teleport.d/conf` text an instance's or launch template's `UserData` writes, deploy-time values stood in. */
export function userDataConf(userData: unknown, what: string): string {
  const b64 = (userData as Record<string, any>)['Fn::Base64'];
  const script: string = typeof b64 === 'string' ? b64 : b64['Fn::Join'][1].map((p: unknown) => (typeof p === 'string' ? p : standIn(p as Record<string, any>))).join('');
  const m = new RegExp(`cat > ${CONF_FILE} <<'TELEPORT_CONF'\\n([\\s\\S]*?)\\nTELEPORT_CONF`).exec(script);
  if (!m) throw new Error(`no conf heredoc in the user data of ${what}`);
  return m[1];
}
