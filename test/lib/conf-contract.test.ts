/**
 * The contract between the CDK app and the AMI: the `/etc/teleport.d/conf` each tier's user data
 * writes must be accepted by the boot-time generator, give the tier's mode, and produce a
 * teleport.yaml that `teleport start` accepts. CloudFormation values (names and addresses known
 * only at deploy time) are replaced with plausible stand-ins.
 */
import { Template } from 'aws-cdk-lib/assertions';
import { ClusterStack, ClusterStackProps } from '../../lib/cluster-stack';
import { CONF_FILE } from '../../runtime/contract/aws';
import { parseConfText, validateConf } from '../../runtime/instance/conf';
import { generateConfig, instanceMode, renderConfig } from '../../runtime/instance/generate';
import { testApp, userDataConf } from '../helpers/cdk';

const FACTS = { localIp: '10.0.1.17', localHostname: 'ip-10-0-1-17.eu-west-1.compute.internal' };

/** The conf text a tier's launch template writes, with deploy-time values stood in. */
function confText(t: Template, tierPrefix: string): string {
  const [lt] = Object.entries(t.findResources('AWS::EC2::LaunchTemplate')).filter(([id]) => id.startsWith(tierPrefix));
  return userDataConf(lt[1].Properties.LaunchTemplateData.UserData, tierPrefix);
}

function generated(props: Partial<ClusterStackProps>, tierPrefix: string) {
  const app = testApp({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new ClusterStack(app, 'Cluster', { clusterName: 'acme', domainName: 'teleport.example.com', ...props });
  const conf = validateConf(parseConfText(confText(Template.fromStack(stack), tierPrefix), CONF_FILE).vars, CONF_FILE);
  const mode = instanceMode(conf.role, conf.useAcm);
  const config = generateConfig(conf, FACTS);
  // renderConfig throws unless the schema of `teleport start` accepts the file.
  renderConfig(config, { confFile: CONF_FILE, mode, outputFile: '/etc/teleport.yaml' });
  return { conf, mode, config };
}

const CERT = { certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/0f2e5a1c-7d3b-4c1e-9a8b-123456789abc' };

describe('ClusterStack user data → the AMI generator', () => {
  test.each([
    ['Auth', {}, 'auth'],
    ['Proxy', {}, 'proxy'],
    ['Proxy', CERT, 'proxy-acm'],
    ['Nodes', {}, 'node'],
  ] as const)('GIVEN the %s tier (%j) WHEN its conf is generated from THEN it is valid and gives mode %s', (tier, props, mode) => {
    expect(generated(props, tier).mode).toBe(mode);
  });

  test('GIVEN the auth tier WHEN generated THEN it uses the stack tables and bucket and publishes the auth NLB on 3025', () => {
    const { config } = generated({}, 'Auth');
    expect(config.teleport.storage).toMatchObject({ type: 'dynamodb', region: 'eu-west-1' });
    expect(config.teleport.storage!.audit_sessions_uri).toMatch(/^s3:\/\/[a-z0-9-]+\/records\?sse_kms_key=arn%3Aaws%3Akms/);
    expect(config.auth_service.public_addr).toMatch(/\.elb\.eu-west-1\.amazonaws\.com:3025$/);
    expect(config.auth_service.cluster_name).toBe('acme');
  });

  test('GIVEN the proxy tier with ACM WHEN generated THEN web is the domain on 443 and SSH is the proxy NLB', () => {
    const { config } = generated(CERT, 'Proxy');
    expect(config.proxy_service.public_addr).toBe('teleport.example.com:443');
    expect(config.proxy_service.ssh_public_addr).toMatch(/^proxy[a-z0-9]*-x\.elb\.eu-west-1\.amazonaws\.com:3023$/);
    expect(config.teleport.auth_servers).toEqual([expect.stringMatching(/^auth[a-z0-9]*-x\.elb\.eu-west-1\.amazonaws\.com:3025$/)]);
  });
});
