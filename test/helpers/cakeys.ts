/**
 * Where a cluster's CA keys are: the CA resources as stored, their public keys,
 * and every private key written under a data dir (to show a CA's is not there).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createPrivateKey, createPublicKey, KeyObject, X509Certificate } from 'node:crypto';
import Database from 'better-sqlite3';
import { openBackend } from '../../runtime/backend';
import { Keys } from '../../runtime/contract/keys';
import type { CertAuthority } from '../../runtime/auth/resources';
import { loadPrivateKey, parseAuthorizedKey, parsePublicKeyBlob } from '../../runtime/sshcert';
import type { TestAuth } from './cluster';

const unb64 = (s: string) => Buffer.from(s, 'base64').toString();

/** The user and host CA resources as stored in the auth server's backend. */
export async function storedCAs(auth: TestAuth): Promise<CertAuthority[]> {
  const backend = await openBackend({ type: 'sqlite', path: path.join(auth.dataDir, 'backend', 'sqlite.db') });
  try {
    return await Promise.all((['user', 'host'] as const).map(async (t) => JSON.parse((await backend.get(Keys.certAuthority(t, 'example.com'))).value.toString()) as CertAuthority));
  } finally {
    await backend.close();
  }
}

/** The public keys of both CAs: their SSH checking keys and their TLS CA certificates' keys, as SPKI DER hex. */
export function caPublicKeys(cas: CertAuthority[]): Set<string> {
  const spki = spkiHex;
  return new Set(
    cas.flatMap((ca) => [
      ...ca.spec.checking_keys.map((k) => spki(parsePublicKeyBlob(parseAuthorizedKey(unb64(k)).blob).publicKey)),
      ...ca.spec.tls_key_pairs.map((p) => spki(new X509Certificate(unb64(p.cert)).publicKey)),
    ]),
  );
}

const PEM = /-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]*?-----END \1PRIVATE KEY-----/g;

/**
 * Every private key written anywhere under `dir`: in any file's bytes, and in every row of every
 * SQLite database there (a long value spans overflow pages, so the raw bytes alone could miss it);
 * PEM and OpenSSH keys as text, JSON-escaped, or base64 inside JSON (how the CA resource stores them).
 */
export function privateKeysUnder(dir: string): KeyObject[] {
  const found: KeyObject[] = [];
  const scan = (text: string, depth: number) => {
    for (const m of text.replace(/\\n/g, '\n').matchAll(PEM)) {
      try {
        found.push(m[0].includes('OPENSSH') ? loadPrivateKey(m[0]) : createPrivateKey(m[0]));
      } catch {
        // not a key after all
      }
    }
    if (depth > 0) for (const b of text.match(/[A-Za-z0-9+/]{80,}={0,2}/g) ?? []) scan(Buffer.from(b, 'base64').toString('latin1'), depth - 1);
  };
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const bytes = fs.readFileSync(p);
        scan(bytes.toString('latin1'), 2);
        if (bytes.subarray(0, 16).toString('latin1') === 'SQLite format 3\0') scanDatabase(p);
      }
    }
  };
  const scanDatabase = (file: string) => {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[];
      for (const { name } of tables) {
        for (const row of db.prepare(`SELECT * FROM "${name}"`).raw().all() as unknown[][]) {
          for (const v of row) if (typeof v === 'string' || Buffer.isBuffer(v)) scan(Buffer.from(v as string).toString('latin1'), 2);
        }
      }
    } finally {
      db.close();
    }
  };
  walk(dir);
  return found;
}


/** The CA keys (SPKI DER hex of `caKeys`) among the private keys under `dir`. */
export function caPrivateKeysUnder(dir: string, caKeys: Set<string>): string[] {
  return privateKeysUnder(dir)
    .map(spkiHex)
    .filter((s) => caKeys.has(s));
}

/** The SPKI DER (hex) of a key's public half. */
export function spkiHex(k: KeyObject): string {
  return (k.type === 'private' ? createPublicKey(k) : k).export({ format: 'der', type: 'spki' }).toString('hex');
}
