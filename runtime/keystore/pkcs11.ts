/**
 * CA keys inside a PKCS#11 token (an HSM, or SoftHSM2 for testing). The keys
 * are generated in the token as non-extractable, sensitive ECDSA P-256 key
 * pairs; the backend keeps only the public key (in the CA resource) and the
 * reference `pkcs11:{"token":"<label>","key_id":"<hex CKA_ID>"}`. Signing
 * hashes in process and has the token sign the digest (CKM_ECDSA), one
 * operation at a time on the auth server's session.
 */
import { createHash, createPublicKey, KeyObject, randomBytes } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import type { Pkcs11Config } from '../config';
import { AccessDeniedError, BadParameterError, NotFoundError } from '../utils/errors';
import type { KeyStore, KeyUse } from './keystore';
import type { Signer } from './signer';

const PREFIX = 'pkcs11:';
/** DER of the P-256 curve's OID (CKA_EC_PARAMS). */
const P256_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex');
const P256_SIZE = 32;

interface KeyRef {
  token: string;
  key_id: string;
}

function errorCode(err: unknown): number | undefined {
  return err instanceof pkcs11js.Pkcs11Error ? err.code : undefined;
}

/** The slot ID a pkcs11js handle (a CK_ULONG in native byte order) stands for. */
function slotId(handle: Buffer): number {
  return Number(handle.length >= 8 ? handle.readBigUInt64LE(0) : BigInt(handle.readUInt32LE(0)));
}

/** The uncompressed point of CKA_EC_POINT, which tokens return DER-wrapped (an OCTET STRING) or raw. */
function ecPoint(value: Buffer): Buffer {
  const raw = value.length === 2 * P256_SIZE + 3 && value[0] === 0x04 && value[1] === 2 * P256_SIZE + 1 ? value.subarray(2) : value;
  if (raw.length !== 2 * P256_SIZE + 1 || raw[0] !== 0x04) throw new BadParameterError('the token returned an EC public key that is not an uncompressed P-256 point');
  return raw;
}

function p256PublicKey(point: Buffer): KeyObject {
  const x = point.subarray(1, 1 + P256_SIZE).toString('base64url');
  const y = point.subarray(1 + P256_SIZE).toString('base64url');
  return createPublicKey({ key: { kty: 'EC', crv: 'P-256', x, y }, format: 'jwk' });
}

export class Pkcs11KeyStore implements KeyStore {
  readonly description: string;
  /** Session operations run one after another (a PKCS#11 session does one thing at a time). */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly lib: pkcs11js.PKCS11,
    private readonly session: Buffer,
    private readonly tokenLabel: string,
  ) {
    this.description = `PKCS#11 token "${tokenLabel}"`;
  }

  /** Loads the module, finds the token, opens a session and logs in; each failure says which setting is wrong. */
  static open(cfg: Pkcs11Config): Pkcs11KeyStore {
    const lib = new pkcs11js.PKCS11();
    try {
      lib.load(cfg.modulePath);
    } catch (err) {
      throw new BadParameterError(`${cfg.where.module_path}: cannot load the PKCS#11 module ${JSON.stringify(cfg.modulePath)}: ${(err as Error).message}`);
    }
    let initialized = false;
    try {
      lib.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
      initialized = true;
      const slots = lib.C_GetSlotList(true);
      const tokens = slots.map((slot) => ({ slot, id: slotId(slot), label: lib.C_GetTokenInfo(slot).label.trim() }));
      const chosen = tokens.find((t) => (cfg.slotNumber !== undefined ? t.id === cfg.slotNumber : t.label === cfg.tokenLabel));
      if (!chosen) {
        const wanted = cfg.slotNumber !== undefined ? `slot ${cfg.slotNumber}` : `token "${cfg.tokenLabel}"`;
        const have = tokens.map((t) => `slot ${t.id} "${t.label}"`).join(', ') || 'none';
        throw new NotFoundError(`${cfg.where.token}: the PKCS#11 module has no initialized ${wanted} (tokens: ${have})`);
      }
      const session = lib.C_OpenSession(chosen.slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      try {
        lib.C_Login(session, pkcs11js.CKU_USER, cfg.pin);
      } catch (err) {
        if (errorCode(err) === pkcs11js.CKR_USER_ALREADY_LOGGED_IN) return new Pkcs11KeyStore(lib, session, chosen.label);
        lib.C_CloseSession(session);
        if (errorCode(err) === pkcs11js.CKR_PIN_INCORRECT) throw new AccessDeniedError(`${cfg.where.pin}: wrong PIN for PKCS#11 token "${chosen.label}"`);
        throw new AccessDeniedError(`${cfg.where.pin}: cannot log in to PKCS#11 token "${chosen.label}": ${(err as Error).message}`);
      }
      return new Pkcs11KeyStore(lib, session, chosen.label);
    } catch (err) {
      if (initialized) lib.C_Finalize();
      lib.close();
      if (err instanceof pkcs11js.NativeError) throw new BadParameterError(`${cfg.where.module_path}: PKCS#11 module ${JSON.stringify(cfg.modulePath)}: ${err.message}`);
      throw err;
    }
  }

  private serial<T>(op: () => T | Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => undefined);
    return run;
  }

  async generate(use: KeyUse, label: string): Promise<{ ref: string; signer: Signer }> {
    if (use.kind === 'ssh' && use.algorithm !== 'ecdsa-p256') {
      throw new BadParameterError(`CA keys in a PKCS#11 token are ECDSA P-256; auth_service.ca_key_type ${use.algorithm} is not supported there`);
    }
    const id = randomBytes(16);
    const common = [
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_LABEL, value: label },
    ];
    await this.serial(() =>
      this.lib.C_GenerateKeyPair(
        this.session,
        { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
        [...common, { type: pkcs11js.CKA_EC_PARAMS, value: P256_PARAMS }, { type: pkcs11js.CKA_VERIFY, value: true }],
        [
          ...common,
          { type: pkcs11js.CKA_PRIVATE, value: true },
          { type: pkcs11js.CKA_SENSITIVE, value: true },
          { type: pkcs11js.CKA_EXTRACTABLE, value: false },
          { type: pkcs11js.CKA_SIGN, value: true },
        ],
      ),
    );
    const ref = PREFIX + JSON.stringify({ token: this.tokenLabel, key_id: id.toString('hex') } satisfies KeyRef);
    return { ref, signer: await this.load(ref) };
  }

  owns(ref: string): boolean {
    return ref.startsWith(PREFIX);
  }

  private parse(ref: string): Buffer {
    let parsed: Partial<KeyRef>;
    try {
      parsed = JSON.parse(ref.slice(PREFIX.length)) as Partial<KeyRef>;
    } catch {
      throw new BadParameterError('a CA key reference of kind pkcs11 is not valid JSON');
    }
    if (typeof parsed.token !== 'string' || typeof parsed.key_id !== 'string' || !/^([0-9a-f]{2})+$/.test(parsed.key_id)) {
      throw new BadParameterError('a CA key reference of kind pkcs11 lacks its token or key_id');
    }
    if (parsed.token !== this.tokenLabel) {
      throw new NotFoundError(`a CA key is in PKCS#11 token "${parsed.token}", but this auth server uses token "${this.tokenLabel}"`);
    }
    return Buffer.from(parsed.key_id, 'hex');
  }

  /** The handle of the key of class `cls` with CKA_ID `id`; NotFoundError when the token has none. */
  private find(cls: number, id: Buffer): Buffer {
    this.lib.C_FindObjectsInit(this.session, [
      { type: pkcs11js.CKA_CLASS, value: cls },
      { type: pkcs11js.CKA_ID, value: id },
    ]);
    try {
      const found = this.lib.C_FindObjects(this.session, 1);
      if (!found.length) throw new NotFoundError(`the CA key ${id.toString('hex')} is not in PKCS#11 token "${this.tokenLabel}"`);
      return found[0];
    } finally {
      this.lib.C_FindObjectsFinal(this.session);
    }
  }

  async load(ref: string): Promise<Signer> {
    const id = this.parse(ref);
    const { key, publicKey } = await this.serial(() => {
      const key = this.find(pkcs11js.CKO_PRIVATE_KEY, id);
      const pub = this.find(pkcs11js.CKO_PUBLIC_KEY, id);
      const [attr] = this.lib.C_GetAttributeValue(this.session, pub, [{ type: pkcs11js.CKA_EC_POINT }]);
      return { key, publicKey: p256PublicKey(ecPoint(attr.value as Buffer)) };
    });
    return {
      publicKey,
      sign: async (data, hash) => {
        if (hash !== 'sha256') throw new BadParameterError(`a P-256 key in a PKCS#11 token signs SHA-256 digests, not ${hash ?? 'raw data'}`);
        const digest = createHash(hash).update(data).digest();
        return this.serial(
          () =>
            new Promise<Buffer>((resolve, reject) => {
              this.lib.C_SignInit(this.session, { mechanism: pkcs11js.CKM_ECDSA }, key);
              this.lib.C_Sign(this.session, digest, Buffer.alloc(2 * P256_SIZE), (err, sig) => (err ? reject(err) : resolve(sig)));
            }),
        );
      },
    };
  }

  async delete(ref: string): Promise<void> {
    const id = this.parse(ref);
    await this.serial(() => {
      for (const cls of [pkcs11js.CKO_PRIVATE_KEY, pkcs11js.CKO_PUBLIC_KEY]) this.lib.C_DestroyObject(this.session, this.find(cls, id));
    });
  }

  async close(): Promise<void> {
    await this.serial(() => {
      try {
        this.lib.C_CloseSession(this.session);
      } finally {
        this.lib.C_Finalize();
        this.lib.close();
      }
    });
  }
}
