/**
 * The local instance metadata service (sim/aws/imds.ts): IMDSv2 token flow, answers per source
 * address, and the SDK's credential chain and the runtime's instance facts reading it.
 */
import * as http from 'node:http';
import { SSMClient } from '@aws-sdk/client-ssm';
import { MetadataService } from '@aws-sdk/ec2-metadata-service';
import { Imds, type ImdsInstance } from '../../sim/aws/imds';
import { CredentialRegistry } from '../../sim/aws/credentials';
import { readInstanceFacts } from '../../runtime/instance/imds';
import { arn, REGION, type IssuedCredentials } from '../../sim/types';

const registry = new CredentialRegistry();
let imds: Imds | undefined;
let credsA: IssuedCredentials;

const instance = (ip: string, instanceId: string, credentials: () => IssuedCredentials): ImdsInstance => ({
  ip,
  instanceId,
  instanceType: 't3.small',
  availabilityZone: `${REGION}a`,
  localHostname: `ip-${ip.replace(/\./g, '-')}.${REGION}.compute.internal`,
  roleName: 'acme-NodesRole',
  credentials,
  tags: { Name: `node-${instanceId}`, 'teleport:role': 'node' },
  userData: '#!/bin/bash\necho hi\n',
});

beforeAll(async () => {
  imds = await Imds.start({ host: '127.0.0.1' });
  credsA = registry.issue({ roleLogicalId: 'NodesRole', roleArn: arn.role('acme-NodesRole'), name: 'i-0aaa' });
  const credsB = registry.issue({ roleLogicalId: 'NodesRole', roleArn: arn.role('acme-NodesRole'), name: 'i-0bbb' });
  imds.addInstance(instance('127.0.0.1', 'i-0aaa', () => credsA));
  imds.addInstance(instance('127.0.0.2', 'i-0bbb', () => credsB));
});

afterAll(async () => {
  await imds?.close();
});

/** One request from `from` (a loopback address standing for an instance's address). */
function request(from: string, method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: imds!.port, localAddress: from, method, path, headers, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
async function token(from: string): Promise<string> {
  const out = await request(from, 'PUT', '/latest/api/token', { 'x-aws-ec2-metadata-token-ttl-seconds': '60' });
  expect(out.status).toBe(200);
  return out.body;
}
const get = async (from: string, path: string, t?: string) => request(from, 'GET', path, t ? { 'x-aws-ec2-metadata-token': t } : {});

describe('IMDSv2', () => {
  it('hands out tokens for a TTL of 1 to 21600 seconds only, and answers GETs only with one', async () => {
    // GIVEN an instance's address
    // WHEN it asks for tokens with bad TTLs
    for (const ttl of ['0', '21601', 'x']) expect((await request('127.0.0.1', 'PUT', '/latest/api/token', { 'x-aws-ec2-metadata-token-ttl-seconds': ttl })).status).toBe(400);
    expect((await request('127.0.0.1', 'PUT', '/latest/api/token')).status).toBe(400);
    // THEN they are refused; a GET without a token or with a made-up one is 401
    expect((await get('127.0.0.1', '/latest/meta-data/instance-id')).status).toBe(401);
    expect((await get('127.0.0.1', '/latest/meta-data/instance-id', 'made-up')).status).toBe(401);
    // AND with a token the instance's facts come back
    const t = await token('127.0.0.1');
    expect((await get('127.0.0.1', '/latest/meta-data/instance-id', t)).body).toBe('i-0aaa');
    expect((await get('127.0.0.1', '/latest/meta-data/placement/region', t)).body).toBe(REGION);
    expect((await get('127.0.0.1', '/latest/meta-data/tags/instance/teleport:role', t)).body).toBe('node');
    expect((await get('127.0.0.1', '/latest/user-data', t)).body).toBe('#!/bin/bash\necho hi\n');
    expect((await get('127.0.0.1', '/latest/meta-data/', t)).body.split('\n')).toEqual(expect.arrayContaining(['instance-id', 'local-ipv4', 'iam/', 'placement/', 'tags/']));
    expect(JSON.parse((await get('127.0.0.1', '/latest/dynamic/instance-identity/document', t)).body)).toMatchObject({ instanceId: 'i-0aaa', privateIp: '127.0.0.1', region: REGION });
  });

  it('answers each source address for its own instance, and 404 for an address of no instance', async () => {
    // GIVEN two instances at two addresses, and a third address with no instance
    const ta = await token('127.0.0.1');
    const tb = await token('127.0.0.2');
    // WHEN each reads its instance id
    // THEN each gets its own
    expect((await get('127.0.0.2', '/latest/meta-data/instance-id', tb)).body).toBe('i-0bbb');
    expect((await get('127.0.0.2', '/latest/meta-data/local-ipv4', tb)).body).toBe('127.0.0.2');
    // AND a token is bound to the address that got it
    expect((await get('127.0.0.2', '/latest/meta-data/instance-id', ta)).status).toBe(401);
    // AND an unknown address gets 404s, even for a token
    expect((await request('127.0.0.3', 'PUT', '/latest/api/token', { 'x-aws-ec2-metadata-token-ttl-seconds': '60' })).status).toBe(404);
  });

  it('stops answering for a removed instance', async () => {
    // GIVEN an instance with a live token
    const creds = registry.issue({ roleLogicalId: 'NodesRole', roleArn: arn.role('acme-NodesRole'), name: 'i-0ccc' });
    imds!.addInstance(instance('127.0.0.4', 'i-0ccc', () => creds));
    const t = await token('127.0.0.4');
    expect((await get('127.0.0.4', '/latest/meta-data/instance-id', t)).status).toBe(200);
    // WHEN it is removed
    imds!.removeInstance('127.0.0.4');
    // THEN its address gets 404s
    expect((await get('127.0.0.4', '/latest/meta-data/instance-id', t)).status).toBe(404);
  });

  it('gives the SDK default credential chain the issued keys of the instance role', async () => {
    // GIVEN the SDK pointed at the service through its environment variable, with no other credentials around
    const saved = { ...process.env };
    for (const k of Object.keys(process.env)) if (k.startsWith('AWS_')) delete process.env[k];
    process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = imds!.url;
    process.env.AWS_EC2_METADATA_V1_DISABLED = 'true';
    process.env.AWS_CONFIG_FILE = '/nonexistent/config';
    process.env.AWS_SHARED_CREDENTIALS_FILE = '/nonexistent/credentials';
    const ssm = new SSMClient({ region: REGION });
    try {
      // WHEN a client's default credential chain resolves credentials (env, files, then instance metadata)
      const c = await ssm.config.credentials();
      // THEN they are the keys issued for the instance's role
      expect(c).toMatchObject({ accessKeyId: credsA.accessKeyId, secretAccessKey: credsA.secretAccessKey, sessionToken: credsA.sessionToken });
      expect(c.expiration?.getTime()).toBe(Math.floor(Date.parse(credsA.expiration) / 1000) * 1000);
      // AND the SDK's metadata client reads the region
      expect((await new MetadataService({ ec2MetadataV1Disabled: true }).request('latest/meta-data/placement/region', {})).trim()).toBe(REGION);
    } finally {
      ssm.destroy();
      process.env = saved;
    }
  });

  it('gives the runtime the instance facts it writes into teleport.yaml', async () => {
    // GIVEN the runtime's reader pointed at the service
    // WHEN it reads the facts of the instance at 127.0.0.1
    const facts = await readInstanceFacts({ endpoint: imds!.url, retries: 0 });
    // THEN they are that instance's
    expect(facts).toMatchObject({ localIp: '127.0.0.1', localHostname: `ip-127-0-0-1.${REGION}.compute.internal` });
  });
});
