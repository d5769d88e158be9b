/**
 * A cluster member's identity: its SSH key and certificate, its TLS key and
 * certificate, and the CAs it trusts. Issued at join time (or by the auth
 * server to itself and to the local admin) and kept in the process storage
 * `<data_dir>/proc/sqlite.db` under `/ids/<role>/current`, so later starts
 * need no token.
 */
import { Backend } from '../backend';
import { key } from '../contract/keys';
import { identityOf } from '../tlsca';
import { isReason, NotFoundError } from '../utils/errors';
import { SystemRole } from './resources';

export interface Identity {
  role: SystemRole;
  /** `<hostUUID>.<cluster>` for hosts (or the admin's name). */
  username: string;
  clusterName: string;
  /** SSH private key, PEM. */
  sshKey: string;
  /** SSH certificate, authorized_keys format. */
  sshCert: string;
  /** TLS private key, PEM. */
  tlsKey: string;
  tlsCert: string;
  /** The TLS CAs to trust (host CA first). */
  tlsCACerts: string[];
  /** The SSH CAs to trust, authorized_keys lines. */
  sshCACerts: string[];
}

interface StoredIdentity {
  kind: 'identity';
  version: 'v2';
  metadata: { name: IdentitySlot };
  spec: { role: SystemRole; cluster_name: string; key: string; ssh_cert: string; tls_key: string; tls_cert: string; tls_ca_certs: string[]; ssh_ca_certs: string[] };
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64').toString();
/**
 * Where a role's identity is kept in the process storage: `/ids/<role>/current`, and during a host CA
 * rotation the one from the new CA in `/ids/<role>/replacement` (runtime/service/hostrotation.ts).
 */
export type IdentitySlot = 'current' | 'replacement';
export const identityKey = (role: SystemRole, slot: IdentitySlot = 'current') => key('ids', role.toLowerCase(), slot);

/** An identity as {@link IdentityStore.save} stored it. */
export function decodeIdentity(raw: Buffer): Identity {
  const s = (JSON.parse(raw.toString()) as StoredIdentity).spec;
  const tlsCert = unb64(s.tls_cert);
  return {
    role: s.role,
    username: identityOf(tlsCert).username,
    clusterName: s.cluster_name,
    sshKey: unb64(s.key),
    sshCert: unb64(s.ssh_cert),
    tlsKey: unb64(s.tls_key),
    tlsCert,
    tlsCACerts: s.tls_ca_certs.map(unb64),
    sshCACerts: s.ssh_ca_certs.map(unb64),
  };
}

export class IdentityStore {
  constructor(private readonly backend: Backend) {}

  async save(id: Identity, slot: IdentitySlot = 'current'): Promise<void> {
    const stored: StoredIdentity = {
      kind: 'identity',
      version: 'v2',
      metadata: { name: slot },
      spec: {
        role: id.role,
        cluster_name: id.clusterName,
        key: b64(id.sshKey),
        ssh_cert: b64(id.sshCert),
        tls_key: b64(id.tlsKey),
        tls_cert: b64(id.tlsCert),
        tls_ca_certs: id.tlsCACerts.map(b64),
        ssh_ca_certs: id.sshCACerts.map(b64),
      },
    };
    await this.backend.put({ key: identityKey(id.role, slot), value: Buffer.from(JSON.stringify(stored)) });
  }

  async load(role: SystemRole, slot: IdentitySlot = 'current'): Promise<Identity> {
    let raw;
    try {
      raw = await this.backend.get(identityKey(role, slot));
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError(`no ${slot === 'current' ? '' : slot + ' '}${role} identity in this data directory`);
      throw err;
    }
    return decodeIdentity(raw.value);
  }

  /** The replacement identity, if a rotation left one. */
  async replacement(role: SystemRole): Promise<Identity | undefined> {
    return (await this.has(role, 'replacement')) ? this.load(role, 'replacement') : undefined;
  }

  async removeReplacement(role: SystemRole): Promise<void> {
    await this.backend.delete(identityKey(role, 'replacement')).catch((err: unknown) => {
      if (!isReason(err, 'not_found')) throw err;
    });
  }

  async has(role: SystemRole, slot: IdentitySlot = 'current'): Promise<boolean> {
    try {
      await this.backend.get(identityKey(role, slot));
      return true;
    } catch (err) {
      if (isReason(err, 'not_found')) return false;
      throw err;
    }
  }
}
