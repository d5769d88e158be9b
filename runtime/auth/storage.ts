/**
 * The auth service's cluster state: the backend `storage` names (SQLite in
 * the data dir, etcd, or DynamoDB), behind a read cache of the resources
 * every request touches, so that no request path queries the store for them.
 */
import { Backend, openBackend } from '../backend';
import { CachedBackend } from '../backend/cache';
import { StorageConfig } from '../config';
import { key, Keys } from '../contract/keys';
import { BadParameterError } from '../utils/errors';
import { Logger } from '../utils/logger';

/** CAs, cluster settings, roles, users, join and sign-up tokens, and the presence of nodes, proxies and auth servers. */
export const CACHED_PREFIXES = [
  key('authorities') + '/',
  key('cluster_configuration') + '/',
  key('authentication') + '/',
  Keys.roles(),
  Keys.users(),
  Keys.tokens(),
  Keys.signupTokens(),
  key('nodes') + '/',
  Keys.proxies(),
  Keys.authServers(),
];

function openStore(s: StorageConfig): Promise<Backend> {
  switch (s.type) {
    case 'etcd':
      return openBackend({ type: 'etcd', peers: s.peers, prefix: s.prefix, tlsCertFile: s.tlsCertFile, tlsKeyFile: s.tlsKeyFile, tlsCaFile: s.tlsCaFile, insecure: s.insecure });
    case 'dynamodb':
      throw new BadParameterError('storage type dynamodb is not available in this build yet');
    default:
      return openBackend({ type: 'sqlite', path: s.path, ...(s.pollStreamPeriodMs ? { pollPeriodMs: s.pollStreamPeriodMs } : {}) });
  }
}

export async function openClusterStorage(s: StorageConfig, log: Logger): Promise<Backend> {
  return CachedBackend.open(await openStore(s), { prefixes: CACHED_PREFIXES, log: log.child('cache') });
}
