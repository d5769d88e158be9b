/**
 * Access data from the store to a node: the auth service's AccessFeed (a
 * watch on users, roles and the user CA) and a node's AccessCache that long
 * polls it. The cache's client is the feed itself, called as the
 * `GET /v1/access` route calls it, or a client that fails like an
 * unreachable auth service.
 */
import { ACCESS_POLL_WAIT_MS, AccessCache } from '../../../../runtime/auth/access/cache';
import { AccessFeed } from '../../../../runtime/auth/access/feed';
import { newUser, roleSchema } from '../../../../runtime/auth/resources';
import { Backend, MemoryBackend, Watcher, WatchOptions } from '../../../../runtime/backend';
import { Keys } from '../../../../runtime/contract/keys';
import { formatAuthorizedKey, generateKeyPair, publicKeyBlob } from '../../../../runtime/sshcert';
import { ConnectionProblemError } from '../../../../runtime/utils/errors';
import { logger } from '../../../../runtime/utils/logger';
import { waitFor } from '../../../helpers/proc';

const log = logger('test');
const json = (v: unknown) => Buffer.from(JSON.stringify(v));

async function putRole(store: Backend, name: string, labels: Record<string, string>): Promise<void> {
  const role = roleSchema.parse({ kind: 'role', version: 'v3', metadata: { name }, spec: { allow: { logins: ['deploy'], node_labels: labels } } });
  await store.put({ key: Keys.role(name), value: json(role) });
}

function userCA(type: 'user' | 'host' = 'user'): { line: string; blob: Buffer; record: unknown } {
  const blob = publicKeyBlob(generateKeyPair('ed25519').publicKey);
  const line = formatAuthorizedKey(blob);
  const record = { kind: 'cert_authority', version: 'v2', sub_kind: type, spec: { type, cluster_name: 'example.com', checking_keys: [Buffer.from(line).toString('base64')], signing_keys: ['c2VjcmV0'] } };
  return { line, blob, record };
}

const PROD = { name: 'web-1', labels: { env: 'prod' } };
const ask = (cache: AccessCache) => cache.check({ user: 'bob', certRoles: ['ops'], login: 'deploy', node: PROD });

describe('access feed and cache', () => {
  let store: MemoryBackend;
  let feed: AccessFeed;
  let reachable: boolean;
  let cache: AccessCache;
  let answers: unknown[];
  const ca = userCA();

  beforeEach(async () => {
    store = new MemoryBackend();
    await putRole(store, 'ops', { env: 'prod' });
    await store.put({ key: Keys.user('bob'), value: json(newUser('bob', ['ops'], ['bob'], 'test')) });
    await store.put({ key: Keys.certAuthority('user', 'example.com'), value: json(ca.record) });
    // Secrets next to the user record are not access data.
    await store.put({ key: Keys.userPassword('bob'), value: Buffer.from('scrypt-hash') });
    feed = new AccessFeed(store, log, 50);
    await feed.start();
    reachable = true;
    answers = [];
    const client = {
      get: async <T>(path: string): Promise<T> => {
        if (!reachable) throw new ConnectionProblemError('cannot reach the auth server');
        const q = new URL(path, 'https://auth').searchParams;
        const answer = await feed.poll(q.get('version') ?? '', Math.min(Number(q.get('wait')), 200));
        if (!reachable) throw new ConnectionProblemError('connection reset'); // a poll in flight fails too
        answers.push(answer);
        return answer as T;
      },
    };
    cache = new AccessCache(client, log);
  });
  afterEach(async () => {
    cache.stop();
    await feed.close();
    await store.close();
  });

  it('GIVEN a cache that has never loaded THEN it refuses every request (fail closed) and trusts no user CA', () => {
    expect(ask(cache)).toEqual({ allowed: false, reason: 'access denied: the roles and users of the cluster are not loaded yet; try again shortly' });
    expect(cache.userCAKeys()).toEqual([]);
  });

  it('GIVEN a loaded cache THEN it decides from the store and trusts the user CA public keys only', async () => {
    await cache.start();
    expect(ask(cache).allowed).toBe(true);
    expect(cache.userCAKeys()).toEqual([ca.blob]);
    const snapshot = JSON.stringify(feed.snapshot());
    expect(snapshot).not.toContain('c2VjcmV0');
    expect(snapshot).not.toContain('scrypt-hash');
  });

  it('GIVEN a host CA in the store THEN the cache trusts its public keys as host CA keys only, and a new one as soon as it is written', async () => {
    // GIVEN (nodes check proxies' Teleport-Proxy hellos with them)
    const host = userCA('host');
    await store.put({ key: Keys.certAuthority('host', 'example.com'), value: json(host.record) });
    await cache.start();
    await waitFor('the cache to load the host CA', () => cache.hostCAKeys().length > 0);
    expect(cache.hostCAKeys()).toEqual([host.blob]);
    expect(cache.userCAKeys()).toEqual([ca.blob]);
    expect(JSON.stringify(feed.snapshot())).not.toContain('c2VjcmV0');
    // WHEN the host CA is replaced (a rotation)
    const next = userCA('host');
    await store.put({ key: Keys.certAuthority('host', 'example.com'), value: json(next.record) });
    // THEN
    await waitFor('the cache to see the new host CA', () => cache.hostCAKeys()[0]?.equals(next.blob));
    expect(cache.userCAKeys()).toEqual([ca.blob]);
  });

  it('GIVEN nothing changes THEN a poll answers with the version only, the cache keeps its copy, and a change still arrives', async () => {
    // GIVEN a loaded cache
    await cache.start();
    const version = feed.version;
    // WHEN its polls see no change THEN the answers carry the version only, not the data again
    await waitFor('a poll that saw no change', () => answers.some((a) => (a as { unchanged?: boolean }).unchanged));
    expect(answers.find((a) => (a as { unchanged?: boolean }).unchanged)).toEqual({ version, unchanged: true });
    expect(ask(cache).allowed).toBe(true);
    expect(cache.userCAKeys()).toEqual([ca.blob]);
    // AND WHEN the user CA is rotated to a new key THEN the cache trusts the new key as soon as the poll returns it
    const next = userCA();
    await store.put({ key: Keys.certAuthority('user', 'example.com'), value: json(next.record) });
    await waitFor('the new user CA key', () => cache.userCAKeys()[0]?.equals(next.blob));
    expect(cache.userCAKeys()).toEqual([next.blob]);
  });

  it('GIVEN a poll held for a minute THEN its connection may stay silent longer than that, so the hold is not cut short', async () => {
    // GIVEN a client that records what the cache asks for
    const asked: { path: string; timeoutMs?: number }[] = [];
    const recording = new AccessCache(
      {
        get: async <T>(path: string, opts: { timeoutMs?: number } = {}): Promise<T> => {
          asked.push({ path, ...opts });
          return feed.poll(new URL(path, 'https://auth').searchParams.get('version') ?? '', 0) as T;
        },
      },
      log,
    );
    // WHEN it loads and polls
    await recording.start();
    await waitFor('a long poll', () => asked.length >= 2);
    recording.stop();
    // THEN each long poll asks the auth service to hold it for a minute and waits longer than that for the answer
    const poll = asked[1];
    expect(new URL(poll.path, 'https://auth').searchParams.get('wait')).toBe(String(ACCESS_POLL_WAIT_MS));
    expect(ACCESS_POLL_WAIT_MS).toBe(60_000);
    expect(poll.timeoutMs).toBeGreaterThan(ACCESS_POLL_WAIT_MS);
  });

  it('GIVEN a caller with no copy THEN a poll always carries the data, never "unchanged"', async () => {
    expect(await feed.poll('', 0)).toMatchObject({ version: feed.version, user_ca_keys: [ca.line] });
    expect(await feed.poll('another-auth-server.7', 0)).toMatchObject({ version: feed.version, user_ca_keys: [ca.line] });
  });

  it('GIVEN a role edited in the store THEN the cache refuses on its next decision without any certificate change', async () => {
    await cache.start();
    const before = feed.version;
    await putRole(store, 'ops', { env: 'staging' });
    await waitFor('the cache to see the edited role', () => !ask(cache).allowed);
    expect(feed.version).not.toBe(before);
    expect(ask(cache)).toEqual({ allowed: false, reason: 'access denied: user "bob" is not allowed on node "web-1"' });
  });

  it('GIVEN a deleted user THEN the cache refuses them', async () => {
    await cache.start();
    await store.delete(Keys.user('bob'));
    await waitFor('the cache to see the deletion', () => !ask(cache).allowed);
    expect(ask(cache)).toEqual({ allowed: false, reason: 'access denied: user "bob" does not exist' });
  });

  it('GIVEN an unreachable auth service THEN the cache keeps deciding from its last copy, and catches up when it is back', async () => {
    await cache.start();
    reachable = false;
    await putRole(store, 'ops', { env: 'staging' });
    // The feed moved on, the cache cannot hear of it: the last copy still decides.
    await waitFor('the feed to see the edit', () => !feed.role('ops')?.spec.allow.node_labels?.env.includes('prod'));
    expect(ask(cache).allowed).toBe(true);
    reachable = true;
    await waitFor('the cache to catch up', () => !ask(cache).allowed);
  });

  it('GIVEN the store closes the feed\'s watch THEN the feed watches again, re-reads, and misses nothing', async () => {
    const watchers: Watcher[] = [];
    const watched: Backend = Object.create(store, {
      newWatcher: { value: async (o: WatchOptions) => watchers[watchers.push(await store.newWatcher(o)) - 1] },
    });
    const own = new AccessFeed(watched, log, 10);
    await own.start();
    try {
      watchers[0].close();
      await putRole(store, 'late', { env: 'x' });
      await waitFor('the feed to see a write made after its watch closed', () => own.role('late'));
      expect(watchers.length).toBeGreaterThan(1);
    } finally {
      await own.close();
    }
  });

  it('GIVEN a password or login attempt written THEN the version does not move (nodes do not reload for it)', async () => {
    const before = feed.version;
    await store.put({ key: Keys.userPassword('bob'), value: Buffer.from('another-hash') });
    await store.put({ key: Keys.userLoginAttempt('bob', 'x'), value: Buffer.from('{}') });
    // A relevant write after them: once it is seen, the earlier ones were seen too (watch order).
    await putRole(store, 'other', { env: 'x' });
    await waitFor('the feed to see the role', () => feed.role('other'));
    expect(feed.version.split('.')[1]).toBe(String(Number(before.split('.')[1]) + 1));
  });
});
