/**
 * The local endpoint's KMS signing keys (sim/aws/kms-keys.ts), through the real
 * SDK client: keys it creates sign what node:crypto verifies with their public
 * keys, over a digest or a raw message; IAM decides each call.
 */
import * as fs from 'node:fs';
import * as https from 'node:https';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { CreateKeyCommand, DescribeKeyCommand, GetPublicKeyCommand, KMSClient, ScheduleKeyDeletionCommand, SignCommand } from '@aws-sdk/client-kms';
import { CredentialRegistry } from '../../sim/aws/credentials';
import { Gateway } from '../../sim/aws/gateway';
import { KmsKeys } from '../../sim/aws/kms-keys';
import { endpointTls } from '../../sim/tls';
import { arn, REGION, type AwsCall, type CallAuditor, type Caller, type IamDecision } from '../../sim/types';
import { tempDir } from '../helpers/proc';

const ALLOWED: Caller = { roleLogicalId: 'AuthRole', roleArn: arn.role('acme-AuthRole'), name: 'i-0auth' };
const NO_SIGN: Caller = { roleLogicalId: 'NoSignRole', roleArn: arn.role('acme-NoSignRole'), name: 'i-0nosign' };

class Auditor implements CallAuditor {
  readonly calls: AwsCall[] = [];
  check(call: AwsCall): IamDecision {
    this.calls.push(call);
    return call.caller.roleLogicalId === 'NoSignRole' && call.action === 'kms:Sign' ? { allowed: false, reason: 'the test denies it' } : { allowed: true };
  }
}

describe('KMS signing keys on the local endpoint', () => {
  let dir: string;
  let gateway: Gateway;
  let agent: https.Agent;
  const registry = new CredentialRegistry();
  const auditor = new Auditor();
  const clients: KMSClient[] = [];

  const client = (caller: Caller) => {
    const creds = registry.issue(caller);
    const credentials = { accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey, sessionToken: creds.sessionToken };
    const c = new KMSClient({ endpoint: gateway.url, region: REGION, credentials, requestHandler: { httpsAgent: agent }, maxAttempts: 1 });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    dir = tempDir('sim-kms-');
    const tls = await endpointTls(dir, ['127.0.0.1']);
    agent = new https.Agent({ ca: tls.cert, keepAlive: true });
    gateway = await Gateway.start({ tls, registry, auditor, host: '127.0.0.1' });
    gateway.route('kms', new KmsKeys().handler);
  });
  afterAll(async () => {
    for (const c of clients) c.destroy();
    agent?.destroy();
    await gateway?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test.each([
    ['ECC_NIST_P256', 'ECDSA_SHA_256'],
    ['RSA_2048', 'RSASSA_PKCS1_V1_5_SHA_256'],
  ] as const)('GIVEN a %s key WHEN a digest and a raw message are signed THEN both verify with its public key', async (spec, algorithm) => {
    // GIVEN
    const kms = client(ALLOWED);
    const created = await kms.send(new CreateKeyCommand({ KeySpec: spec, KeyUsage: 'SIGN_VERIFY', Description: 'test' }));
    const keyArn = created.KeyMetadata!.Arn!;
    expect(keyArn).toMatch(/^arn:aws:kms:eu-west-1:123456789012:key\//);
    const pub = await kms.send(new GetPublicKeyCommand({ KeyId: keyArn }));
    const publicKey = createPublicKey({ key: Buffer.from(pub.PublicKey!), format: 'der', type: 'spki' });
    const message = Buffer.from('the bytes a CA signs');
    // WHEN
    const overDigest = await kms.send(new SignCommand({ KeyId: keyArn, Message: createHash('sha256').update(message).digest(), MessageType: 'DIGEST', SigningAlgorithm: algorithm }));
    const overRaw = await kms.send(new SignCommand({ KeyId: created.KeyMetadata!.KeyId!, Message: message, MessageType: 'RAW', SigningAlgorithm: algorithm }));
    // THEN
    for (const sig of [overDigest.Signature!, overRaw.Signature!]) expect(verify('sha256', message, publicKey, Buffer.from(sig))).toBe(true);
    expect(verify('sha256', Buffer.from('other bytes'), publicKey, Buffer.from(overDigest.Signature!))).toBe(false);
    expect(auditor.calls.filter((c) => c.resource === keyArn).map((c) => c.action)).toEqual(['kms:GetPublicKey', 'kms:Sign', 'kms:Sign']);
  });

  test('GIVEN a role without kms:Sign WHEN it signs THEN AccessDeniedException, and describing is still allowed', async () => {
    const key = (await client(ALLOWED).send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata!.Arn!;
    const denied = client(NO_SIGN);
    await expect(denied.send(new SignCommand({ KeyId: key, Message: Buffer.alloc(32), MessageType: 'DIGEST', SigningAlgorithm: 'ECDSA_SHA_256' }))).rejects.toMatchObject({ name: 'AccessDeniedException' });
    expect((await denied.send(new DescribeKeyCommand({ KeyId: key }))).KeyMetadata?.KeyState).toBe('Enabled');
  });

  test.each([
    ['a digest of the wrong length', 'ValidationException', { MessageType: 'DIGEST', Message: Buffer.alloc(20), SigningAlgorithm: 'ECDSA_SHA_256' }],
    ['an algorithm the key does not have', 'InvalidKeyUsageException', { MessageType: 'DIGEST', Message: Buffer.alloc(32), SigningAlgorithm: 'RSASSA_PKCS1_V1_5_SHA_256' }],
  ] as const)('GIVEN %s WHEN signing THEN %s', async (_what, error, input) => {
    const kms = client(ALLOWED);
    const key = (await kms.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata!.Arn!;
    await expect(kms.send(new SignCommand({ KeyId: key, ...input }))).rejects.toMatchObject({ name: error });
  });

  test('GIVEN a key id that does not exist or a symmetric key spec WHEN used THEN NotFoundException / ValidationException', async () => {
    const kms = client(ALLOWED);
    await expect(kms.send(new GetPublicKeyCommand({ KeyId: '00000000-0000-0000-0000-000000000000' }))).rejects.toMatchObject({ name: 'NotFoundException' });
    await expect(kms.send(new CreateKeyCommand({ KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT' }))).rejects.toMatchObject({ name: 'ValidationException' });
  });

  test('GIVEN a key scheduled for deletion WHEN it signs THEN KMSInvalidStateException', async () => {
    const kms = client(ALLOWED);
    const key = (await kms.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata!.Arn!;
    await kms.send(new ScheduleKeyDeletionCommand({ KeyId: key, PendingWindowInDays: 7 }));
    await expect(kms.send(new SignCommand({ KeyId: key, Message: Buffer.alloc(32), MessageType: 'DIGEST', SigningAlgorithm: 'ECDSA_SHA_256' }))).rejects.toMatchObject({ name: 'KMSInvalidStateException' });
  });
});
