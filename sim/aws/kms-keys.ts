/**
 * KMS asymmetric signing keys as a gateway route (JSON 1.1, `X-Amz-Target:
 * TrentService.<Action>`): CreateKey (KeyUsage SIGN_VERIFY, KeySpec ECC_NIST_P256
 * or RSA_2048/3072/4096), DescribeKey, GetPublicKey, Sign (MessageType RAW
 * or DIGEST) and ScheduleKeyDeletion. The private keys are real keys held by the
 * endpoint and never leave it; signatures are what KMS returns (ECDSA as DER).
 *
 * IAM calls: `kms:CreateKey` on `*` (with `kms:KeySpec`, `kms:KeyUsage` and the request's
 * tags as `aws:RequestTag/<key>` and `aws:TagKeys`), `kms:TagResource` on the new key when
 * CreateKey has `Tags`, the others on the key's ARN with its tags as `aws:ResourceTag/<key>`.
 * Key policies: CreateKey's `Policy`, or the default one (the account root may do `kms:*`,
 * which delegates the key to IAM); every call on a key is decided with it as the resource
 * policy. As in KMS, CreateKey refuses a policy that would not let its caller change it later
 * (the lockout safety check: a `kms:PutKeyPolicy` decision on the new key, through the audit).
 * A key is named by its id or ARN (aliases are not served). Not served: symmetric keys,
 * grants, aliases, PutKeyPolicy itself, multi-region keys, Verify, RSASSA-PSS.
 */
import { constants, createHash, createPublicKey, generateKeyPairSync, KeyObject, privateEncrypt, randomUUID } from 'node:crypto';
import { signP256Digest } from './ecdsa-digest';
import { DEFAULT_KEY_POLICY } from '../iam/policies';
import type { AwsCall } from '../types';
import { ACCOUNT, arn } from '../types';
import type { Authorize, ServiceHandler } from './gateway';
import { AwsError, jsonRequest, jsonResponse, refusal } from './protocol';

type Call = Omit<AwsCall, 'caller'>;
type Input = Record<string, any>;

const SPECS: Record<string, { make: () => KeyObject; algorithms: string[] }> = {
  ECC_NIST_P256: { make: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, algorithms: ['ECDSA_SHA_256'] },
  ...Object.fromEntries(
    [2048, 3072, 4096].map((bits) => [
      `RSA_${bits}`,
      {
        make: () => generateKeyPairSync('rsa', { modulusLength: bits }).privateKey,
        algorithms: ['RSASSA_PKCS1_V1_5_SHA_256', 'RSASSA_PKCS1_V1_5_SHA_384', 'RSASSA_PKCS1_V1_5_SHA_512'],
      },
    ]),
  ),
};

const HASHES: Record<string, { hash: string; size: number }> = { SHA_256: { hash: 'sha256', size: 32 }, SHA_384: { hash: 'sha384', size: 48 }, SHA_512: { hash: 'sha512', size: 64 } };

interface Key {
  readonly id: string;
  readonly arn: string;
  readonly spec: string;
  readonly privateKey: KeyObject;
  readonly created: Date;
  readonly description: string;
  readonly tags: Readonly<Record<string, string>>;
  readonly policy: NonNullable<AwsCall['resourcePolicy']>;
  deletionDate?: Date;
}

/** What an action does: the IAM calls it makes, a check after they are allowed, and the answer. */
interface Step {
  readonly calls: Call[];
  readonly check?: (authorize: Authorize) => void;
  readonly run: () => unknown;
}

const validation = (message: string) => new AwsError(400, 'ValidationException', message);

export class KmsKeys {
  private readonly keys = new Map<string, Key>();

  /** The gateway route for `kms`. */
  readonly handler: ServiceHandler = async (req, authorize) => {
    const { op: action, input } = jsonRequest(req, ['TrentService']);
    const serve = this.actions[action];
    if (!serve) throw new AwsError(400, 'InvalidAction', `The action ${action} is not served by the local deployment.`);
    const step = serve(input);
    const denied = refusal('kms', req.caller, authorize, step.calls);
    if (denied) return denied;
    step.check?.(authorize);
    return jsonResponse('kms', step.run());
  };

  /** How many keys are held (for tests): `pending` counts those scheduled for deletion too. */
  count(opts: { pending?: boolean } = {}): number {
    return [...this.keys.values()].filter((k) => opts.pending || !k.deletionDate).length;
  }

  /** The key policy of a key given by id or ARN (for tests). */
  policy(keyId: string): { Statement: any[] } {
    const doc = this.key(keyId).policy.document as { Statement: unknown };
    return { Statement: [doc.Statement].flat() };
  }

  private key(keyId: unknown): Key {
    if (typeof keyId !== 'string' || !keyId) throw validation("1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null");
    const id = keyId.startsWith('arn:') ? /:key\/([0-9a-f-]+)$/.exec(keyId)?.[1] : keyId;
    const key = id ? this.keys.get(id) : undefined;
    if (!key || (keyId.startsWith('arn:') && key.arn !== keyId)) throw new AwsError(400, 'NotFoundException', `Key '${keyId}' does not exist`);
    return key;
  }

  private usable(keyId: unknown): Key {
    const key = this.key(keyId);
    if (key.deletionDate) throw new AwsError(400, 'KMSInvalidStateException', `${key.arn} is pending deletion.`);
    return key;
  }

  private metadata(k: Key): Record<string, unknown> {
    return {
      AWSAccountId: ACCOUNT,
      KeyId: k.id,
      Arn: k.arn,
      CreationDate: k.created.getTime() / 1000,
      Enabled: !k.deletionDate,
      Description: k.description,
      KeyUsage: 'SIGN_VERIFY',
      KeyState: k.deletionDate ? 'PendingDeletion' : 'Enabled',
      ...(k.deletionDate ? { DeletionDate: k.deletionDate.getTime() / 1000 } : {}),
      Origin: 'AWS_KMS',
      KeyManager: 'CUSTOMER',
      KeySpec: k.spec,
      CustomerMasterKeySpec: k.spec,
      SigningAlgorithms: SPECS[k.spec].algorithms,
      MultiRegion: false,
    };
  }

  /** A call on `key`: decided with its key policy and its tags. */
  private on(key: Key, action: string): Call {
    const tags = Object.fromEntries(Object.entries(key.tags).map(([k, v]) => [`aws:ResourceTag/${k}`, v]));
    return { action, resource: key.arn, resourcePolicy: key.policy, context: tags };
  }

  private readonly actions: Record<string, (input: Input) => Step> = {
    CreateKey: (input) => {
      const spec = String(input.KeySpec ?? input.CustomerMasterKeySpec ?? 'SYMMETRIC_DEFAULT');
      if (!SPECS[spec]) throw validation(`The local deployment serves only asymmetric signing keys (KeySpec ${Object.keys(SPECS).join(', ')}), not ${spec}.`);
      if (input.KeyUsage !== 'SIGN_VERIFY') throw validation(`KeyUsage must be SIGN_VERIFY for KeySpec ${spec}.`);
      const tags = tagsOf(input.Tags);
      const id = randomUUID();
      const key: Key = {
        id,
        arn: arn.key(id),
        spec,
        privateKey: SPECS[spec].make(),
        created: new Date(),
        description: String(input.Description ?? ''),
        tags,
        policy: input.Policy === undefined ? { description: `default key policy of ${arn.key(id)}`, document: DEFAULT_KEY_POLICY } : { description: `key policy of ${arn.key(id)}`, document: policyOf(input.Policy) },
      };
      const requestTags = { ...Object.fromEntries(Object.entries(tags).map(([k, v]) => [`aws:RequestTag/${k}`, v])), ...(Object.keys(tags).length ? { 'aws:TagKeys': Object.keys(tags) } : {}) };
      return {
        calls: [
          { action: 'kms:CreateKey', resource: '*', context: { 'kms:KeySpec': spec, 'kms:KeyUsage': 'SIGN_VERIFY', ...requestTags } },
          ...(Object.keys(tags).length ? [{ action: 'kms:TagResource', resource: key.arn, resourcePolicy: key.policy, context: requestTags }] : []),
        ],
        // The lockout safety check: the new policy must let the caller change it later.
        check: (authorize) => {
          if (input.Policy !== undefined && !authorize(this.on(key, 'kms:PutKeyPolicy')).allowed) {
            throw new AwsError(400, 'MalformedPolicyDocumentException', 'The new key policy will not allow you to update the key policy in the future.');
          }
        },
        run: () => {
          this.keys.set(id, key);
          return { KeyMetadata: this.metadata(key) };
        },
      };
    },
    DescribeKey: (input) => {
      const key = this.key(input.KeyId);
      return { calls: [this.on(key, 'kms:DescribeKey')], run: () => ({ KeyMetadata: this.metadata(key) }) };
    },
    GetPublicKey: (input) => {
      const key = this.usable(input.KeyId);
      return {
        calls: [this.on(key, 'kms:GetPublicKey')],
        run: () => ({
          KeyId: key.arn,
          PublicKey: createPublicKey(key.privateKey).export({ format: 'der', type: 'spki' }).toString('base64'),
          KeySpec: key.spec,
          CustomerMasterKeySpec: key.spec,
          KeyUsage: 'SIGN_VERIFY',
          SigningAlgorithms: SPECS[key.spec].algorithms,
        }),
      };
    },
    Sign: (input) => {
      const key = this.usable(input.KeyId);
      const algorithm = String(input.SigningAlgorithm ?? '');
      if (!SPECS[key.spec].algorithms.includes(algorithm)) {
        throw new AwsError(400, 'InvalidKeyUsageException', `You cannot use the signing algorithm ${algorithm} with ${key.arn}.`);
      }
      const message = Buffer.from(String(input.Message ?? ''), 'base64');
      if (message.length < 1 || message.length > 4096) throw validation("1 validation error detected: Value at 'message' failed to satisfy constraint: Member must have length between 1 and 4096");
      const type = String(input.MessageType ?? 'RAW');
      if (type !== 'RAW' && type !== 'DIGEST') throw validation(`MessageType must be RAW or DIGEST, not ${type}.`);
      const hash = HASHES[/SHA_\d+$/.exec(algorithm)![0]];
      if (type === 'DIGEST' && message.length !== hash.size) throw validation(`Digest is invalid length for algorithm ${algorithm}.`);
      return {
        calls: [this.on(key, 'kms:Sign')],
        run: () => {
          const digest = type === 'DIGEST' ? message : createHash(hash.hash).update(message).digest();
          return { KeyId: key.arn, Signature: signDigest(key.privateKey, algorithm, hash.hash, digest).toString('base64'), SigningAlgorithm: algorithm };
        },
      };
    },
    ScheduleKeyDeletion: (input) => {
      const key = this.key(input.KeyId);
      const days = Number(input.PendingWindowInDays ?? 30);
      if (!Number.isInteger(days) || days < 7 || days > 30) throw validation("1 validation error detected: Value at 'pendingWindowInDays' failed to satisfy constraint: Member must have value between 7 and 30");
      return {
        calls: [this.on(key, 'kms:ScheduleKeyDeletion')],
        run: () => {
          key.deletionDate ??= new Date(Date.now() + days * 86_400_000);
          return { KeyId: key.arn, DeletionDate: key.deletionDate.getTime() / 1000, KeyState: 'PendingDeletion', PendingWindowInDays: days };
        },
      };
    },
  };
}

/** CreateKey's `Tags` ([{TagKey, TagValue}]) as a map; malformed tags are refused as KMS does. */
function tagsOf(raw: unknown): Record<string, string> {
  if (raw === undefined) return {};
  if (!Array.isArray(raw)) throw validation("1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must be a list");
  const tags: Record<string, string> = {};
  for (const t of raw) {
    if (typeof t?.TagKey !== 'string' || typeof t?.TagValue !== 'string' || !t.TagKey) throw new AwsError(400, 'TagException', 'Each tag needs a TagKey and a TagValue.');
    tags[t.TagKey] = t.TagValue;
  }
  return tags;
}

/** CreateKey's `Policy`: a JSON policy document with statements, at most 32 KB, or MalformedPolicyDocumentException. */
function policyOf(raw: unknown): { readonly Statement: unknown } {
  const malformed = (why: string) => new AwsError(400, 'MalformedPolicyDocumentException', why);
  if (typeof raw !== 'string' || raw.length > 32_768) throw malformed('The key policy must be a JSON document of at most 32 KB.');
  let doc: any;
  try {
    doc = JSON.parse(raw);
  } catch {
    throw malformed('The key policy is not valid JSON.');
  }
  if (!doc || typeof doc !== 'object' || doc.Statement === undefined) throw malformed('The key policy has no Statement.');
  return doc;
}

/** A KMS signature over `digest`: ECDSA as DER, RSA PKCS#1 v1.5 or PSS (salt as long as the hash). */
function signDigest(privateKey: KeyObject, algorithm: string, hash: string, digest: Buffer): Buffer {
  if (algorithm.startsWith('ECDSA_')) return signP256Digest(privateKey, digest);
  if (algorithm.startsWith('RSASSA_PKCS1_V1_5_')) {
    return privateEncrypt({ key: privateKey, padding: constants.RSA_PKCS1_PADDING }, Buffer.concat([DIGEST_INFO[hash], digest]));
  }
  throw new AwsError(400, 'UnsupportedOperationException', `The local deployment does not sign with ${algorithm} over a digest.`);
}

/** The DER DigestInfo prefix of PKCS#1 v1.5 signatures (RFC 8017 §9.2, note 1). */
const DIGEST_INFO: Record<string, Buffer> = {
  sha256: Buffer.from('3031300d060960864801650304020105000420', 'hex'),
  sha384: Buffer.from('3041300d060960864801650304020205000430', 'hex'),
  sha512: Buffer.from('3051300d060960864801650304020305000440', 'hex'),
};
