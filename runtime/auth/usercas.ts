/**
 * The cluster's user CA keys as a node or proxy trusts them: read from the
 * auth service at start and re-read in the background, so that a rotation
 * takes effect without a restart. A failed refresh keeps the keys it had.
 */
import { parseAuthorizedKey } from '../sshcert';
import { NotFoundError } from '../utils/errors';
import { Logger } from '../utils/logger';
import { AuthClient } from './client';
import { CertAuthority } from './resources';

export const USER_CA_REFRESH_MS = 10_000;

/** Fetches the user CA keys; an empty answer is an error (nothing could log in). */
export async function fetchUserCAKeys(client: Pick<AuthClient, 'get'>): Promise<Buffer[]> {
  const cas = await client.get<CertAuthority[]>('/v1/authorities/user');
  const keys = cas.flatMap((ca) => ca.spec.checking_keys.map((k) => parseAuthorizedKey(Buffer.from(k, 'base64').toString()).blob));
  if (!keys.length) throw new NotFoundError('the auth server returned no user CA keys');
  return keys;
}

export interface TrustedUserCAs {
  /** The keys trusted now. */
  keys(): Buffer[];
  stop(): void;
}

export async function watchUserCAs(client: Pick<AuthClient, 'get'>, log: Logger, refreshMs = USER_CA_REFRESH_MS): Promise<TrustedUserCAs> {
  let keys = await fetchUserCAKeys(client);
  const timer = setInterval(() => {
    fetchUserCAKeys(client).then(
      (k) => (keys = k),
      (err) => log.warn('cannot refresh the user CA', { error: err }),
    );
  }, refreshMs);
  timer.unref();
  return { keys: () => keys, stop: () => clearInterval(timer) };
}
