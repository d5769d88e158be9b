/**
 * Who a caller of the auth API is when its certificate comes from a trusted cluster
 * (runtime/auth/http.ts callerOf): from that cluster's user CA a `remote_user`; from its host CA a
 * `remote_proxy` only with role Proxy and a host name of that cluster; anything else nobody.
 */
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { callerOf, ForeignCAs } from '../../../runtime/auth/http';
import { generateCA, generateTlsKey, issueCert, publicKeyPem, TlsKeyPair } from '../../../runtime/tlsca';

const ROOT = 'root.example';

describe('callerOf: callers from a trusted cluster', () => {
  let rootHost: TlsKeyPair;
  let rootUser: TlsKeyPair;
  let other: TlsKeyPair;
  let foreign: ForeignCAs;

  beforeAll(async () => {
    [rootHost, rootUser, other] = await Promise.all([generateCA(ROOT), generateCA(ROOT), generateCA('other.example')]);
    foreign = { host: [{ cluster: ROOT, certs: [new X509Certificate(rootHost.cert)] }], user: [{ cluster: ROOT, certs: [new X509Certificate(rootUser.cert)] }] };
  });

  /** A TLS connection whose client presented a certificate from `ca` (not one of this cluster's CAs, so not `authorized`). */
  const from = async (ca: TlsKeyPair, username: string, groups: string[]) => {
    const cert = await issueCert({ ca, publicKey: publicKeyPem(generateTlsKey()), identity: { username, groups, principals: [] }, ttlMs: 3600_000 });
    const socket = { authorized: false, getPeerCertificate: () => ({ raw: new X509Certificate(cert).raw }) } as unknown as TLSSocket;
    return callerOf(socket, [], [], () => foreign);
  };

  it('GIVEN a root proxy certificate (root host CA, role Proxy, <uuid>.root) THEN it is a remote_proxy of the root', async () => {
    expect(await from(rootHost, `p1.${ROOT}`, ['Proxy'])).toMatchObject({ kind: 'remote_proxy', cluster: ROOT });
  });

  it('GIVEN the root host CA but another role, more roles, or a host name of another cluster THEN it is nobody', async () => {
    expect(await from(rootHost, `n1.${ROOT}`, ['Node'])).toEqual({ kind: 'nop' });
    expect(await from(rootHost, `a1.${ROOT}`, ['Proxy', 'Admin'])).toEqual({ kind: 'nop' });
    expect(await from(rootHost, 'p1.leaf.example', ['Proxy'])).toEqual({ kind: 'nop' });
  });

  it('GIVEN the root user CA THEN a remote_user; GIVEN a CA no trusted cluster has THEN nobody', async () => {
    expect(await from(rootUser, 'alice', ['admin'])).toMatchObject({ kind: 'remote_user', cluster: ROOT });
    expect(await from(rootUser, `p1.${ROOT}`, ['Proxy'])).toMatchObject({ kind: 'remote_user' });
    expect(await from(other, 'p1.other.example', ['Proxy'])).toEqual({ kind: 'nop' });
  });
});
