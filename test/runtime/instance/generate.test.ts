import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildConfig, formatAddr, loadConfigFile, type TeleportConfig } from '../../../runtime/config';
import { validateConf } from '../../../runtime/instance/conf';
import { generateConfig, instanceMode, renderConfig, type InstanceFacts } from '../../../runtime/instance/generate';
import { tempDir } from '../../helpers/proc';

const PIN = 'sha256:' + 'ab'.repeat(32);
const FACTS: InstanceFacts = {
  localIp: '10.0.1.17',
  localHostname: 'ip-10-0-1-17.eu-west-1.compute.internal',
  publicIp: '203.0.113.7',
  instanceId: 'i-0123456789abcdef0',
  instanceType: 't3.small',
  availabilityZone: 'eu-west-1a',
};
const dir = tempDir('generate-');
const dataDir = path.join(dir, 'data');
fs.mkdirSync(dataDir);
// The files the join-secrets fetch writes before a proxy or node starts.
fs.writeFileSync(path.join(dataDir, 'token'), 'join-token-from-ssm\n');
fs.writeFileSync(path.join(dataDir, 'ca-pin'), `${PIN}\n`);
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const HA = {
  TELEPORT_CLUSTER_NAME: 'acme',
  EC2_REGION: 'eu-west-1',
  TELEPORT_AUTH_SERVER_LB: 'acme-auth-0123456789.elb.eu-west-1.amazonaws.com',
  TELEPORT_DOMAIN_NAME: 'teleport.example.com',
};
const DYNAMO = {
  TELEPORT_DYNAMO_TABLE_NAME: 'acme-state',
  TELEPORT_DYNAMO_EVENTS_TABLE_NAME: 'acme-events',
  TELEPORT_S3_BUCKET: 'acme-recordings',
  TELEPORT_SSM_KEY_ARN: 'arn:aws:kms:eu-west-1:123456789012:key/0f2e5a1c-7d3b-4c1e-9a8b-123456789abc',
};
const NLB = 'acme-proxy-0123456789.elb.eu-west-1.amazonaws.com';

/** Every role and mode the image supports, as user data would write the conf. */
const CASES: Record<string, Record<string, string>> = {
  auth: { TELEPORT_ROLE: 'auth', ...HA, ...DYNAMO, USE_ACM: 'false' },
  proxy: { TELEPORT_ROLE: 'proxy', ...HA, TELEPORT_PROXY_SERVER_LB: NLB, USE_ACM: 'false' },
  'proxy-acm': { TELEPORT_ROLE: 'proxy', ...HA, TELEPORT_PROXY_SERVER_LB: NLB, USE_ACM: 'true' },
  node: { TELEPORT_ROLE: 'node', ...HA },
  all: { TELEPORT_ROLE: 'auth,node,proxy', TELEPORT_CLUSTER_NAME: 'starter', EC2_REGION: 'eu-west-1' },
  'all-dynamodb': { TELEPORT_ROLE: 'auth,node,proxy', TELEPORT_CLUSTER_NAME: 'starter', EC2_REGION: 'eu-west-1', ...DYNAMO },
  'all-acm': {
    TELEPORT_ROLE: 'auth,node,proxy',
    TELEPORT_CLUSTER_NAME: 'starter',
    EC2_REGION: 'eu-west-1',
    USE_ACM: 'true',
    TELEPORT_DOMAIN_NAME: 'teleport.example.com',
    TELEPORT_EXTERNAL_HOSTNAME: 'teleport.example.com',
    TELEPORT_EXTERNAL_PORT: '443',
    TELEPORT_PROXY_SERVER_LB: '203.0.113.7',
  },
  'all-acm-dynamodb': {
    TELEPORT_ROLE: 'auth,node,proxy',
    TELEPORT_CLUSTER_NAME: 'starter',
    EC2_REGION: 'eu-west-1',
    USE_ACM: 'true',
    TELEPORT_DOMAIN_NAME: 'teleport.example.com',
    ...DYNAMO,
  },
  'all-letsencrypt': {
    TELEPORT_ROLE: 'auth,node,proxy',
    TELEPORT_CLUSTER_NAME: 'starter',
    EC2_REGION: 'eu-west-1',
    USE_ACM: 'false',
    USE_LETSENCRYPT: 'true',
    TELEPORT_DOMAIN_ADMIN_EMAIL: 'ops@example.com',
    TELEPORT_DOMAIN_NAME: 'teleport.example.com',
    TELEPORT_EXTERNAL_HOSTNAME: 'teleport.example.com',
    TELEPORT_EXTERNAL_PORT: '443',
  },
  'all-generic': { TELEPORT_ROLE: '' },
};

/** Generates, writes and reads the config back the way `teleport start -c` does. */
function generate(name: string, facts: InstanceFacts = FACTS): { mode: string; config: TeleportConfig } {
  const conf = validateConf(CASES[name], 'conf');
  const mode = instanceMode(conf.role, conf.useAcm);
  const file = path.join(dir, `${name}.yaml`);
  const text = renderConfig(generateConfig(conf, facts, { dataDir }), { confFile: '/etc/teleport.d/conf', mode, outputFile: '/etc/teleport.yaml' });
  fs.writeFileSync(file, text);
  const config = buildConfig(loadConfigFile(file), {}, {});
  // Nothing the generator writes is refused or ignored by teleport start.
  expect(config.warnings).toEqual([]);
  return { mode, config };
}

const addrs = (list: { host: string; port: number }[]) => list.map(formatAddr);

describe('teleport.yaml generated for each role and mode', () => {
  test.each(Object.keys(CASES))('GIVEN the %s conf WHEN generated THEN teleport start accepts it, unchanged from the snapshot', (name) => {
    generate(name);
    // The snapshot is of the file the image writes, with its own data directory.
    const conf = validateConf(CASES[name], 'conf');
    const mode = instanceMode(conf.role, conf.useAcm);
    expect(renderConfig(generateConfig(conf, FACTS), { confFile: '/etc/teleport.d/conf', mode, outputFile: '/etc/teleport.yaml' })).toMatchSnapshot();
  });

  test('GIVEN an auth conf WHEN generated THEN only auth runs, on 3025, on the shared DynamoDB and S3 storage, published at the auth NLB', () => {
    const { mode, config } = generate('auth');
    expect(mode).toBe('auth');
    expect([config.auth.enabled, config.proxy.enabled, config.ssh.enabled]).toEqual([true, false, false]);
    expect(formatAddr(config.auth.listenAddr)).toBe('0.0.0.0:3025');
    expect(addrs(config.auth.publicAddrs)).toEqual([`${HA.TELEPORT_AUTH_SERVER_LB}:3025`]);
    expect(config.auth.clusterName).toBe('acme');
    expect(config.auth.authentication.secondFactor).toBe('otp');
    expect(config.storage).toMatchObject({ type: 'dynamodb', region: 'eu-west-1', tableName: 'acme-state', auditEventsUri: ['dynamodb://acme-events'] });
    expect(config.storage.auditSessions).toMatchObject({ type: 's3', bucket: 'acme-recordings', prefix: 'records', region: 'eu-west-1', sse: 'aws:kms', kmsKeyId: DYNAMO.TELEPORT_SSM_KEY_ARN });
    expect(config.nodeName).toBe('ip-10-0-1-17-eu-west-1-compute-internal');
    expect(config.advertiseIp).toBe('10.0.1.17');
    expect(config.authToken).toBeUndefined();
  });

  test('GIVEN TELEPORT_SESSION_RECORDING=proxy on an auth or all-in-one conf WHEN generated THEN the cluster records on the proxy; on a proxy conf it is refused', () => {
    // GIVEN / WHEN
    for (const name of ['auth', 'all']) {
      const conf = validateConf({ ...CASES[name], TELEPORT_SESSION_RECORDING: 'proxy' }, 'conf');
      const file = path.join(dir, `${name}-recording-proxy.yaml`);
      fs.writeFileSync(file, renderConfig(generateConfig(conf, FACTS, { dataDir }), { confFile: '/etc/teleport.d/conf', mode: instanceMode(conf.role, conf.useAcm), outputFile: '/etc/teleport.yaml' }));
      // THEN teleport start reads it as proxy mode, without a warning
      const config = buildConfig(loadConfigFile(file), {}, {});
      expect(config.auth.sessionRecording).toBe('proxy');
      expect(config.warnings).toEqual([]);
    }
    // and without the variable the default stays (node)
    expect(generate('auth').config.auth.sessionRecording).toBe('node');
    expect(() => validateConf({ ...CASES.proxy, TELEPORT_SESSION_RECORDING: 'proxy' }, 'conf')).toThrow('TELEPORT_SESSION_RECORDING: is for the auth service (proxies and nodes read it from there), not for TELEPORT_ROLE=proxy');
    expect(() => validateConf({ ...CASES.auth, TELEPORT_SESSION_RECORDING: 'sometimes' }, 'conf')).toThrow('TELEPORT_SESSION_RECORDING: expected node, proxy or off');
  });

  test('GIVEN TELEPORT_CA_KMS_ROLE_ARN on an auth or all-in-one conf WHEN generated THEN the CA keys are in KMS in the role\'s account and the instance\'s region, signed by that role; elsewhere or malformed it is refused', () => {
    const role = 'arn:aws:iam::123456789012:role/acme-AuthRole';
    for (const name of ['auth', 'all']) {
      // GIVEN / WHEN
      const conf = validateConf({ ...CASES[name], TELEPORT_CA_KMS_ROLE_ARN: role }, 'conf');
      const file = path.join(dir, `${name}-ca-kms.yaml`);
      fs.writeFileSync(file, renderConfig(generateConfig(conf, FACTS, { dataDir }), { confFile: '/etc/teleport.d/conf', mode: instanceMode(conf.role, conf.useAcm), outputFile: '/etc/teleport.yaml' }));
      // THEN teleport start reads ca_key_params.aws_kms
      const config = buildConfig(loadConfigFile(file), {}, {});
      expect(config.caKeyParams).toEqual({ awsKms: { account: '123456789012', region: 'eu-west-1', signerRoleArn: role, where: expect.stringContaining('auth_service.ca_key_params.aws_kms') } });
    }
    // and without the variable the CA keys stay in the backend
    expect(generate('auth').config.caKeyParams).toBeUndefined();
    expect(() => validateConf({ ...CASES.node, TELEPORT_CA_KMS_ROLE_ARN: role }, 'conf')).toThrow("TELEPORT_CA_KMS_ROLE_ARN: is for the auth service (the CA keys are the auth servers'), not for TELEPORT_ROLE=node");
    expect(() => validateConf({ ...CASES.auth, TELEPORT_CA_KMS_ROLE_ARN: 'arn:aws:iam::123456789012:user/alice' }, 'conf')).toThrow('TELEPORT_CA_KMS_ROLE_ARN: expected an IAM role ARN');
  });

  test('GIVEN a proxy conf without ACM WHEN generated THEN it joins through the auth NLB with the SSM token and pin files, and publishes the domain on 443 and 3023', () => {
    const { mode, config } = generate('proxy');
    expect(mode).toBe('proxy');
    expect([config.auth.enabled, config.proxy.enabled, config.ssh.enabled]).toEqual([false, true, false]);
    expect(addrs(config.authServers)).toEqual([`${HA.TELEPORT_AUTH_SERVER_LB}:3025`]);
    expect(config.authToken).toBe('join-token-from-ssm');
    expect(config.caPins).toEqual([PIN]);
    expect([config.proxy.listenAddr, config.proxy.webListenAddr].map(formatAddr)).toEqual(['0.0.0.0:3023', '0.0.0.0:3080']);
    expect(addrs(config.proxy.publicAddrs)).toEqual(['teleport.example.com:443']);
    expect(addrs(config.proxy.sshPublicAddrs)).toEqual(['teleport.example.com:3023']);
    expect(config.connectionLimits).toEqual({ maxConnections: 65000, maxUsers: 10000 });
    // AND clients reach 3080 themselves through the NLB, so their own address counts: no X-Forwarded-For is trusted
    expect(config.proxy.trustXForwardedForFrom).toEqual([]);
  });

  test('GIVEN a proxy conf with ACM WHEN generated THEN the web address is the domain (the ALB) and SSH goes to the NLB', () => {
    const { mode, config } = generate('proxy-acm');
    expect(mode).toBe('proxy-acm');
    expect(addrs(config.proxy.publicAddrs)).toEqual(['teleport.example.com:443']);
    expect(addrs(config.proxy.sshPublicAddrs)).toEqual([`${NLB}:3023`]);
    expect(config.proxy.insecureNoTls).toBe(false);
    // AND the ALB in the VPC, the only peer on 3080, names the client in X-Forwarded-For
    expect(config.proxy.trustXForwardedForFrom.map((c) => `${c.address}/${c.prefix}`)).toEqual(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16']);
  });

  test('GIVEN a node conf WHEN generated THEN only the SSH service runs, on 3022, joining through the auth NLB on 3025', () => {
    const { mode, config } = generate('node');
    expect(mode).toBe('node');
    expect([config.auth.enabled, config.proxy.enabled, config.ssh.enabled]).toEqual([false, false, true]);
    expect(formatAddr(config.ssh.listenAddr)).toBe('0.0.0.0:3022');
    expect(config.ssh.labels).toEqual({ 'aws/instance-id': 'i-0123456789abcdef0', 'aws/instance-type': 't3.small', 'aws/availability-zone': 'eu-west-1a' });
    // The earlier generator gave nodes the auth NLB on :443, where nothing listens (aws-deployment.md §2.3).
    expect(addrs(config.authServers)).toEqual([`${HA.TELEPORT_AUTH_SERVER_LB}:3025`]);
    expect(config.authToken).toBe('join-token-from-ssm');
    expect(config.caPins).toEqual([PIN]);
  });

  test('GIVEN an all-in-one conf without a domain WHEN generated THEN every role runs on local storage and the public IP is published on 3080', () => {
    const { mode, config } = generate('all');
    expect(mode).toBe('all');
    expect([config.auth.enabled, config.proxy.enabled, config.ssh.enabled]).toEqual([true, true, true]);
    expect(config.storage.type).not.toBe('dynamodb');
    expect(addrs(config.authServers)).toEqual(['127.0.0.1:3025']);
    expect(config.authToken).toBeUndefined();
    expect(addrs(config.proxy.publicAddrs)).toEqual(['203.0.113.7:3080']);
    expect(addrs(config.proxy.sshPublicAddrs)).toEqual(['203.0.113.7:3023']);
  });

  test('GIVEN an all-in-one conf with ACM WHEN generated THEN the web address is the domain on 443 and SSH goes to the instance address', () => {
    const { mode, config } = generate('all-acm');
    expect(mode).toBe('all-acm');
    expect(addrs(config.proxy.publicAddrs)).toEqual(['teleport.example.com:443']);
    expect(addrs(config.proxy.sshPublicAddrs)).toEqual(['203.0.113.7:3023']);
  });

  test("GIVEN an all-in-one conf with Let's Encrypt WHEN generated THEN the web listener is on 443 of the domain and gets its certificate from Let's Encrypt", () => {
    const { mode, config } = generate('all-letsencrypt');
    // mode all: the root unit, which may bind 443
    expect(mode).toBe('all');
    expect(formatAddr(config.proxy.webListenAddr)).toBe('0.0.0.0:443');
    expect(addrs(config.proxy.publicAddrs)).toEqual(['teleport.example.com:443']);
    expect(addrs(config.proxy.sshPublicAddrs)).toEqual(['teleport.example.com:3023']);
    expect(config.proxy.acme).toEqual({ directoryUrl: 'https://acme-v02.api.letsencrypt.org/directory', email: 'ops@example.com' });
    expect(config.proxy.keyPairs).toEqual([]);
  });

  test('GIVEN an all-in-one conf with the tables and bucket WHEN generated THEN it uses DynamoDB and S3', () => {
    const { config } = generate('all-dynamodb');
    expect(config.storage).toMatchObject({ type: 'dynamodb', tableName: 'acme-state', auditEventsUri: ['dynamodb://acme-events'] });
    expect(config.storage.auditSessions).toMatchObject({ type: 's3', bucket: 'acme-recordings' });
  });

  test('GIVEN an instance without a public address WHEN an all-in-one is generated THEN it publishes its private address', () => {
    const { config } = generate('all', { localIp: '10.0.1.17', localHostname: 'ip-10-0-1-17.ec2.internal' });
    expect(addrs(config.proxy.publicAddrs)).toEqual(['10.0.1.17:3080']);
  });

  test('GIVEN an empty TELEPORT_ROLE WHEN generated THEN it is the generic all-in-one named after the instance', () => {
    const { mode, config } = generate('all-generic');
    expect(mode).toBe('all');
    expect(config.auth.clusterName).toBe('ip-10-0-1-17-eu-west-1-compute-internal');
  });
});
