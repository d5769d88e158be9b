/** The cluster's host CA keys as a client of the auth API sees them: every checking key (both during a rotation). */
import { parseAuthorizedKey } from '../sshcert';
import { AuthClient } from './client';
import { CertAuthority } from './resources';

export async function fetchHostCAKeys(client: AuthClient): Promise<Buffer[]> {
  const cas = await client.get<CertAuthority[]>('/v1/authorities/host');
  return cas.flatMap((ca) => ca.spec.checking_keys.map((k) => parseAuthorizedKey(Buffer.from(k, 'base64').toString()).blob));
}
