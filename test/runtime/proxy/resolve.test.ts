/** Which node a proxy request names (formats.md §4.2), and the node list cache. */
import { Server } from '../../../runtime/auth/resources';
import { lookupIPs, NodeCache, resolveTarget } from '../../../runtime/proxy/resolve';
import { BadParameterError, ConnectionProblemError, NotFoundError } from '../../../runtime/utils/errors';
import { logger } from '../../../runtime/utils/logger';

const U1 = '11111111-1111-4111-8111-111111111111';
const U2 = '22222222-2222-4222-8222-222222222222';
const U3 = '33333333-3333-4333-8333-333333333333';

const node = (name: string, hostname: string, addr: string): Server => ({
  kind: 'node',
  version: 'v2',
  metadata: { name, namespace: 'default' },
  spec: { addr, hostname },
});

const NODES = [node(U1, 'db', '10.0.0.1:3022'), node(U2, 'web', '10.0.0.2:3022'), node(U3, 'web', '10.0.0.3:4022')];
const opts = { clusterName: 'example.com', resolvedIPs: [] as string[] };
const picked = (host: string, port = 0, o = opts) => {
  const r = resolveTarget({ host, port }, NODES, o);
  return r.kind === 'node' ? r.node.metadata.name : `direct ${r.addr.host}:${r.addr.port}`;
};

describe('resolveTarget', () => {
  it('GIVEN a node UUID THEN that node, whatever the port', () => {
    expect(picked(U2, 9999)).toBe(U2);
    expect(picked(U2.toUpperCase())).toBe(U2);
  });

  it('GIVEN a UUID no node has THEN NotFound, with no DNS fallback', () => {
    expect(() => picked('44444444-4444-4444-8444-444444444444')).toThrow(NotFoundError);
    expect(() => picked('44444444-4444-4444-8444-444444444444')).toThrow('no node with UUID 44444444-4444-4444-8444-444444444444 in cluster example.com');
  });

  it('GIVEN a hostname or an address IP THEN the node, with the port checked only when given', () => {
    expect(picked('db')).toBe(U1);
    expect(picked('db', 3022)).toBe(U1);
    expect(picked('db', 22)).toBe('direct db:22');
    expect(picked('10.0.0.3')).toBe(U3);
    expect(picked('10.0.0.3', 4022)).toBe(U3);
  });

  it('GIVEN <nodename>.<cluster> or <uuid>.<cluster> (host certificate principals) THEN that node', () => {
    expect(picked('db.example.com')).toBe(U1);
    expect(picked('DB.Example.COM')).toBe(U1);
    expect(picked(`${U3}.example.com`)).toBe(U3);
    expect(picked('db.other.com')).toBe('direct db.other.com:3022');
  });

  it('GIVEN a name that matches two nodes THEN an ambiguous host error listing both, unless the port tells them apart', () => {
    let err: unknown;
    try {
      picked('web');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BadParameterError);
    expect((err as Error).message).toBe(
      `ambiguous host "web": it matches 2 nodes in cluster example.com: ${U2} (web at 10.0.0.2:3022), ${U3} (web at 10.0.0.3:4022); name the node by its UUID or by IP:port`,
    );
    expect(picked('web', 4022)).toBe(U3);
  });

  it('GIVEN a name whose DNS addresses are node IPs THEN those nodes match', () => {
    expect(picked('db-alias', 0, { ...opts, resolvedIPs: ['10.0.0.1'] })).toBe(U1);
    expect(() => picked('everything', 0, { ...opts, resolvedIPs: ['10.0.0.1', '10.0.0.2'] })).toThrow(/ambiguous host "everything": it matches 2 nodes/);
  });

  it('GIVEN no match THEN the host is dialled directly, on port 3022 unless given', () => {
    expect(picked('bastion.internal')).toBe('direct bastion.internal:3022');
    expect(picked('bastion.internal', 2222)).toBe('direct bastion.internal:2222');
    expect(picked('10.9.9.9', 22)).toBe('direct 10.9.9.9:22');
  });

  it('GIVEN a node record whose address does not parse THEN it is skipped', () => {
    const r = resolveTarget({ host: 'broken', port: 0 }, [node(U1, 'broken', 'not-an-address')], opts);
    expect(r).toEqual({ kind: 'direct', addr: { host: 'broken', port: 3022 } });
  });

  it('GIVEN a node behind NAT (use_tunnel, no address) THEN its name or UUID matches it on any port, with no address to dial', () => {
    const natNode: Server = { ...node(U3, 'nat', ''), spec: { addr: '', hostname: 'nat', use_tunnel: true } };
    const nodes = [...NODES.slice(0, 2), natNode];
    for (const [host, port] of [['nat', 0], ['nat', 3022], ['nat', 22], ['nat.example.com', 0], [U3, 0]] as const) {
      const r = resolveTarget({ host, port }, nodes, opts);
      expect({ host, port, r }).toEqual({ host, port, r: { kind: 'node', node: natNode, addr: undefined } });
    }
    // An IP never names it: it has none.
    expect(resolveTarget({ host: '10.0.0.3', port: 0 }, nodes, opts)).toEqual({ kind: 'direct', addr: { host: '10.0.0.3', port: 3022 } });
  });
});

describe('lookupIPs', () => {
  it('GIVEN localhost THEN its loopback address; GIVEN an IP or a name that does not resolve THEN nothing', async () => {
    expect(await lookupIPs('localhost', 5000)).toContain('127.0.0.1');
    expect(await lookupIPs('10.0.0.1', 5000)).toEqual([]);
    expect(await lookupIPs('no-such-host.invalid', 5000)).toEqual([]);
  });
});

describe('NodeCache', () => {
  it('GIVEN calls within the TTL THEN one fetch serves them; GIVEN a failing refresh THEN the last list is reused', async () => {
    const fetched: string[] = [];
    let fail = false;
    const cache = new NodeCache(
      async (ns) => {
        fetched.push(ns);
        if (fail) throw new ConnectionProblemError('auth is down');
        return NODES;
      },
      60_000,
      logger('test'),
    );
    const [a, b] = await Promise.all([cache.list('default'), cache.list('default')]);
    expect(a).toBe(NODES);
    expect(b).toBe(NODES);
    expect(await cache.list('default')).toBe(NODES);
    expect(fetched).toEqual(['default']);

    const expired = new NodeCache(
      async (ns) => {
        fetched.push(ns);
        if (fail) throw new ConnectionProblemError('auth is down');
        return NODES;
      },
      0,
      logger('test'),
    );
    expect(await expired.list('prod')).toBe(NODES);
    fail = true;
    expect(await expired.list('prod')).toBe(NODES);
    expect(fetched).toEqual(['default', 'prod', 'prod']);
    await expect(expired.list('never-fetched')).rejects.toThrow('auth is down');
  });

  it('GIVEN a list younger than the TTL WHEN asked for one at most 0 ms old (a target was not in it) THEN it is fetched again', async () => {
    // GIVEN a cached list without the node that joined since
    let current: Server[] = [];
    const cache = new NodeCache(async () => current, 60_000, logger('test'));
    expect(await cache.list('default')).toEqual([]);
    current = NODES;
    // WHEN / THEN within the TTL the cached list stands, and a fresher one is fetched on demand
    expect(await cache.list('default')).toEqual([]);
    expect(await cache.list('default', 0)).toBe(NODES);
  });
});
