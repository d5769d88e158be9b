/**
 * CA keys in AWS KMS: asymmetric ECC_NIST_P256 SIGN_VERIFY keys created in the
 * configured account and region. The backend keeps the public key (in the CA
 * resource) and the reference `awskms:<key ARN>`; signing hashes in process and
 * has KMS sign the digest (Sign, MessageType DIGEST, ECDSA_SHA_256). With
 * `signer_role_arn` each key is created with a key policy that lets only that
 * role use it (caKeyPolicy). The client
 * takes the SDK's standard region, credential and endpoint settings
 * (instance role, AWS_ENDPOINT_URL ...).
 */
import { createHash, createPublicKey } from 'node:crypto';
import type { KMSClient } from '@aws-sdk/client-kms';
import type { AwsKmsConfig } from '../config';
import { CA_KEY_TAG } from '../contract/aws';
import { BadParameterError } from '../utils/errors';
import type { KeyStore, KeyUse } from './keystore';
import type { Signer } from './signer';

const PREFIX = 'awskms:';

/**
 * What the account's administrators may do with a CA key through IAM: administer it (describe, disable,
 * schedule or cancel deletion, tag, change the key policy), never sign with it or grant its use
 * (`kms:CreateGrant` is left out with the use actions). Every such change is in CloudTrail.
 */
const ACCOUNT_ADMIN_ACTIONS = [
  'kms:Describe*', 'kms:List*', 'kms:Get*', 'kms:Enable*', 'kms:Disable*', 'kms:Update*', 'kms:PutKeyPolicy',
  'kms:RevokeGrant', 'kms:RetireGrant', 'kms:TagResource', 'kms:UntagResource', 'kms:ScheduleKeyDeletion', 'kms:CancelKeyDeletion',
];

/**
 * What the signer role (the auth servers') may do with a CA key, granted by the key policy itself: sign,
 * read the public key, and schedule the deletion of a key that lost the race for a new CA.
 * `kms:PutKeyPolicy` is there because KMS refuses to create a key whose policy would not let its creator
 * change that policy later (the policy lockout safety check); the auth server never calls it.
 */
const SIGNER_ACTIONS = ['kms:Sign', 'kms:GetPublicKey', 'kms:ScheduleKeyDeletion', 'kms:PutKeyPolicy'];

/**
 * The key policy of a CA key created with `signer_role_arn`: only that role may sign with the key; the
 * account (its IAM administrators) keeps administration, not use.
 */
export function caKeyPolicy(signerRoleArn: string): object {
  const [, partition, , , account] = signerRoleArn.split(':');
  return {
    Version: '2012-10-17',
    Statement: [
      { Sid: 'AccountAdministersKey', Effect: 'Allow', Principal: { AWS: `arn:${partition}:iam::${account}:root` }, Action: ACCOUNT_ADMIN_ACTIONS, Resource: '*' },
      { Sid: 'TeleportAuthSigns', Effect: 'Allow', Principal: { AWS: signerRoleArn }, Action: SIGNER_ACTIONS, Resource: '*' },
    ],
  };
}
const P256 = 32;
/** How long a key that lost the race for a new CA stays pending deletion (KMS's minimum). */
const DELETION_WINDOW_DAYS = 7;

type Kms = typeof import('@aws-sdk/client-kms');

/** r||s of a DER ECDSA signature (SEQUENCE of two INTEGERs), each `size` bytes. */
export function derToP1363(der: Buffer, size: number): Buffer {
  const fail = () => new BadParameterError('AWS KMS returned an ECDSA signature that is not DER');
  let i = 0;
  const length = (): number => {
    const first = der[i++];
    if (first < 0x80) return first;
    const n = first & 0x7f;
    if (n < 1 || n > 2) throw fail();
    let v = 0;
    for (let k = 0; k < n; k++) v = (v << 8) | der[i++];
    return v;
  };
  if (der[i++] !== 0x30) throw fail();
  if (length() !== der.length - i) throw fail();
  const half = (): Buffer => {
    if (der[i++] !== 0x02) throw fail();
    const n = length();
    let v = der.subarray(i, i + n);
    i += n;
    while (v.length > size && v[0] === 0) v = v.subarray(1);
    if (v.length > size || v.length === 0) throw fail();
    return Buffer.concat([Buffer.alloc(size - v.length), v]);
  };
  const out = Buffer.concat([half(), half()]);
  if (i !== der.length) throw fail();
  return out;
}

export class AwsKmsKeyStore implements KeyStore {
  readonly description: string;

  private constructor(
    private readonly kms: Kms,
    private readonly client: KMSClient,
    private readonly cfg: AwsKmsConfig,
  ) {
    this.description = `AWS KMS (account ${cfg.account}, ${cfg.region})`;
  }

  static async open(cfg: AwsKmsConfig): Promise<AwsKmsKeyStore> {
    const kms = await import('@aws-sdk/client-kms');
    return new AwsKmsKeyStore(kms, new kms.KMSClient({ region: cfg.region }), cfg);
  }

  /** Runs a KMS call; its failure says which call, on what, and where the settings are. */
  private async call<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      const e = err as Error;
      throw new BadParameterError(`${this.cfg.where}: AWS KMS ${what} failed: ${e.name}: ${e.message}`);
    }
  }

  async generate(use: KeyUse, label: string): Promise<{ ref: string; signer: Signer }> {
    if (use.kind === 'ssh' && use.algorithm !== 'ecdsa-p256') {
      throw new BadParameterError(`CA keys in AWS KMS are ECDSA P-256; auth_service.ca_key_type ${use.algorithm} is not supported there`);
    }
    const created = await this.call('CreateKey', () =>
      this.client.send(
        new this.kms.CreateKeyCommand({
          KeySpec: 'ECC_NIST_P256',
          KeyUsage: 'SIGN_VERIFY',
          Description: label,
          Tags: [{ TagKey: CA_KEY_TAG, TagValue: label }],
          ...(this.cfg.signerRoleArn ? { Policy: JSON.stringify(caKeyPolicy(this.cfg.signerRoleArn)) } : {}),
        }),
      ),
    );
    const arn = created.KeyMetadata?.Arn;
    if (!arn) throw new BadParameterError(`${this.cfg.where}: AWS KMS CreateKey returned no key ARN`);
    const ref = PREFIX + arn;
    return { ref, signer: await this.load(ref) };
  }

  owns(ref: string): boolean {
    return ref.startsWith(PREFIX);
  }

  /** The key ARN of a reference, which must be in the configured account and region. */
  private arnOf(ref: string): string {
    const arn = ref.slice(PREFIX.length);
    const m = /^arn:aws[\w-]*:kms:([\w-]+):(\d{12}):key\/[\w-]+$/.exec(arn);
    if (!m) throw new BadParameterError(`a CA key reference of kind awskms is not a KMS key ARN: ${JSON.stringify(arn)}`);
    if (m[1] !== this.cfg.region || m[2] !== this.cfg.account) {
      throw new BadParameterError(`${this.cfg.where}: a CA key is in AWS account ${m[2]}, region ${m[1]}, but this auth server is configured for account ${this.cfg.account}, region ${this.cfg.region}`);
    }
    return arn;
  }

  async load(ref: string): Promise<Signer> {
    const arn = this.arnOf(ref);
    const got = await this.call(`GetPublicKey of ${arn}`, () => this.client.send(new this.kms.GetPublicKeyCommand({ KeyId: arn })));
    if (got.KeySpec !== 'ECC_NIST_P256' || got.KeyUsage !== 'SIGN_VERIFY' || !got.PublicKey) {
      throw new BadParameterError(`the CA key ${arn} is not an ECC_NIST_P256 SIGN_VERIFY key (KeySpec ${got.KeySpec}, KeyUsage ${got.KeyUsage})`);
    }
    const publicKey = createPublicKey({ key: Buffer.from(got.PublicKey), format: 'der', type: 'spki' });
    return {
      publicKey,
      sign: async (data, hash) => {
        if (hash !== 'sha256') throw new BadParameterError(`a P-256 key in AWS KMS signs SHA-256 digests, not ${hash ?? 'raw data'}`);
        const digest = createHash('sha256').update(data).digest();
        const out = await this.call(`Sign with ${arn}`, () =>
          this.client.send(new this.kms.SignCommand({ KeyId: arn, Message: digest, MessageType: 'DIGEST', SigningAlgorithm: 'ECDSA_SHA_256' })),
        );
        if (!out.Signature) throw new BadParameterError(`AWS KMS Sign with ${arn} returned no signature`);
        return derToP1363(Buffer.from(out.Signature), P256);
      },
    };
  }

  async delete(ref: string): Promise<void> {
    const arn = this.arnOf(ref);
    await this.call(`ScheduleKeyDeletion of ${arn}`, () => this.client.send(new this.kms.ScheduleKeyDeletionCommand({ KeyId: arn, PendingWindowInDays: DELETION_WINDOW_DAYS })));
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
