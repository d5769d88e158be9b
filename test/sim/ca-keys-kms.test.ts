/**
 * CA keys in AWS KMS as the HA stack deploys them (`caKeysInKms`): what the synthesized template's IAM
 * policies and the key policy the auth servers give each key (runtime/keystore/awskms.ts caKeyPolicy)
 * allow, decided by the local deployment's IAM audit (@cloud-copilot/iam-simulate) through the local KMS
 * endpoint, with the real SDK client. The auth role may create only tagged P-256 signing keys and is the
 * only principal that can sign with them; an administrator with `kms:*` in IAM administers a key but
 * cannot sign with it, which it could with a key under KMS's default policy.
 */
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import { CreateKeyCommand, DescribeKeyCommand, GetPublicKeyCommand, KMSClient, ScheduleKeyDeletionCommand, SignCommand, type CreateKeyCommandInput } from '@aws-sdk/client-kms';
import { createHash } from 'node:crypto';
import { caKeyPolicy } from '../../runtime/keystore/awskms';
import { DEFAULT_CONTEXT } from '../../sim/cli-context';
import { CredentialRegistry } from '../../sim/aws/credentials';
import { Gateway } from '../../sim/aws/gateway';
import { KmsKeys } from '../../sim/aws/kms-keys';
import { IamAudit } from '../../sim/iam/audit';
import { synthesize } from '../../sim/synth';
import { Deployment } from '../../sim/template';
import { endpointTls } from '../../sim/tls';
import { arn, REGION, type Caller } from '../../sim/types';
import { tempDir } from '../helpers/proc';

jest.setTimeout(180_000);

/** An account administrator: `kms:*` on every key in IAM (not part of the stack; added to the audit's view of the account). */
const ADMIN_ROLE = {
  Type: 'AWS::IAM::Role',
  Properties: {
    AssumeRolePolicyDocument: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }] },
    Policies: [{ PolicyName: 'admin', PolicyDocument: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'kms:*', Resource: '*' }] } }],
  },
};

describe('CA keys in KMS: the HA stack\'s IAM and the CA key policy', () => {
  let dir: string;
  let gateway: Gateway;
  let audit: IamAudit;
  let agent: https.Agent;
  const registry = new CredentialRegistry();
  const clients: KMSClient[] = [];
  let auth: Caller;
  let proxy: Caller;
  let admin: Caller;

  const kms = (caller: Caller) => {
    const creds = registry.issue(caller);
    const credentials = { accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey, sessionToken: creds.sessionToken };
    const c = new KMSClient({ endpoint: gateway.url, region: REGION, credentials, requestHandler: { httpsAgent: agent }, maxAttempts: 1 });
    clients.push(c);
    return c;
  };
  const caKey = (over: Partial<CreateKeyCommandInput> = {}): CreateKeyCommandInput => ({
    KeySpec: 'ECC_NIST_P256',
    KeyUsage: 'SIGN_VERIFY',
    Tags: [{ TagKey: 'teleport-ca', TagValue: 'user-ca' }],
    Policy: JSON.stringify(caKeyPolicy(auth.roleArn)),
    ...over,
  });
  const sign = (client: KMSClient, keyId: string) =>
    client.send(new SignCommand({ KeyId: keyId, Message: createHash('sha256').update('data').digest(), MessageType: 'DIGEST', SigningAlgorithm: 'ECDSA_SHA_256' }));
  const errorName = (p: Promise<unknown>) => p.then(() => 'allowed', (e: Error) => e.name);

  beforeAll(async () => {
    dir = tempDir('ca-keys-kms-');
    // GIVEN the HA app synthesized with caKeysInKms, and the IAM audit of its template (plus an account administrator)
    const cdkOut = await synthesize(path.join(dir, 'cdk.out'), { ...DEFAULT_CONTEXT, clusterName: 'acme', caKeysInKms: 'true' });
    const d = Deployment.load({ cdkOut, loadBalancerAddress: (i) => `10.99.0.${i + 1}` });
    for (const table of d.ofType('AWS::DynamoDB::Table')) d.setAttribute(table, 'StreamArn', arn.stream(d.physicalId(table), '2026-01-01T00:00:00.000'));
    (d.resources as Record<string, unknown>).AccountAdminRole = ADMIN_ROLE;
    audit = new IamAudit(d.resources, d.resolve);
    const role = (prefix: string): Caller => {
      const id = d.ofType('AWS::IAM::Role').find((r) => r.startsWith(prefix));
      if (!id) throw new Error(`no role ${prefix}* in the template`);
      return { roleLogicalId: id, roleArn: arn.role(d.physicalId(id)), name: `i-0${prefix.toLowerCase()}` };
    };
    auth = role('AuthRole');
    proxy = role('ProxyRole');
    admin = role('AccountAdminRole');
    // AND the local KMS endpoint, its calls decided by that audit
    const tls = await endpointTls(dir, ['127.0.0.1']);
    agent = new https.Agent({ ca: tls.cert, keepAlive: true });
    gateway = await Gateway.start({ tls, registry, auditor: audit, host: '127.0.0.1' });
    gateway.route('kms', new KmsKeys().handler);
  });

  afterAll(async () => {
    for (const c of clients) c.destroy();
    agent?.destroy();
    await gateway?.close();
    await audit?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the auth role creates a CA key with the key policy, signs with it, reads its public key and schedules its deletion', async () => {
    const client = kms(auth);
    const created = await client.send(new CreateKeyCommand(caKey()));
    const keyId = created.KeyMetadata!.Arn!;
    expect((await sign(client, keyId)).Signature?.length).toBeGreaterThan(0);
    expect((await client.send(new GetPublicKeyCommand({ KeyId: keyId }))).KeySpec).toBe('ECC_NIST_P256');
    expect((await client.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 }))).KeyState).toBe('PendingDeletion');
  });

  test.each([
    ['without the teleport-ca tag', { Tags: undefined }],
    ['with another tag beside it', { Tags: [{ TagKey: 'teleport-ca', TagValue: 'user-ca' }, { TagKey: 'owner', TagValue: 'x' }] }],
    ['of another key spec (RSA_2048)', { KeySpec: 'RSA_2048' as const }],
  ])('the auth role may not create a key %s', async (_what, over) => {
    expect(await errorName(kms(auth).send(new CreateKeyCommand(caKey(over))))).toBe('AccessDeniedException');
  });

  test('no other role can sign with a CA key: not the proxy\'s, and not an administrator with kms:* in IAM, who still administers it', async () => {
    const keyId = (await kms(auth).send(new CreateKeyCommand(caKey()))).KeyMetadata!.Arn!;
    expect(await errorName(sign(kms(proxy), keyId))).toBe('AccessDeniedException');
    expect(await errorName(kms(proxy).send(new CreateKeyCommand(caKey())))).toBe('AccessDeniedException');
    const adminKms = kms(admin);
    expect(await errorName(sign(adminKms, keyId))).toBe('AccessDeniedException');
    expect((await adminKms.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata?.KeyState).toBe('Enabled');
    // AND the key policy is what stops it: under KMS's default policy the same administrator signs
    const defaultPolicy = (await adminKms.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata!.Arn!;
    expect(await errorName(sign(adminKms, defaultPolicy))).toBe('allowed');
  });

  test('KMS refuses a key policy that would not let its creator change it later (the lockout safety check)', async () => {
    // GIVEN a policy that lets the account tag the key and the auth role sign, but nobody change the policy
    const root = auth.roleArn.replace(/:role\/.*$/, ':root');
    const signOnly = {
      Version: '2012-10-17',
      Statement: [
        { Effect: 'Allow', Principal: { AWS: root }, Action: ['kms:TagResource', 'kms:Describe*'], Resource: '*' },
        { Effect: 'Allow', Principal: { AWS: auth.roleArn }, Action: ['kms:Sign', 'kms:GetPublicKey'], Resource: '*' },
      ],
    };
    expect(await errorName(kms(auth).send(new CreateKeyCommand(caKey({ Policy: JSON.stringify(signOnly) }))))).toBe('MalformedPolicyDocumentException');
  });
});
