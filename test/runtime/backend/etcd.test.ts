/**
 * The etcd backend against a real etcd 3.4 server (Debian's etcd-server): the shared suite, two
 * instances sharing one etcd, lease-based expiry as etcd stores it, watches across etcd restarts
 * and compaction, TLS with client certificates, and option checks.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Etcd3 } from 'etcd3';
import { openBackend } from '../../../runtime/backend';
import { EtcdBackend } from '../../../runtime/backend/etcd';
import { Item, OpType } from '../../../runtime/backend/types';
import { generateCA, generateTlsKey, issueCert, publicKeyPem } from '../../../runtime/tlsca/ca';
import { AlreadyExistsError, BadParameterError, ConnectionProblemError, NotFoundError } from '../../../runtime/utils/errors';
import { EtcdServer } from '../../helpers/etcd';
import { freePort } from '../../helpers/proc';
import { describeEvent, FakeClock, removeDir, tempDir, watchUntil, within } from './helpers';
import { runBackendSuite } from './suite';

const val = (s: string) => Buffer.from(s);
/** etcd takes a few seconds to come back and the client backs off between reconnects. */
const RECONNECT_WAIT_MS = 20_000;

let etcd: EtcdServer;

beforeAll(async () => {
  etcd = await EtcdServer.start();
});

afterAll(async () => {
  await etcd?.stop();
});

runBackendSuite('etcd', async () => {
  const backend = await EtcdBackend.open({ peers: [etcd.url] });
  return { backend, cleanup: () => backend.close() };
});

/** The raw etcd record of a backend key (default prefix), or undefined. */
async function raw(client: Etcd3, key: string) {
  const res = await client.kv.range({ key: Buffer.from(`/teleport${key}`) });
  return res.kvs[0];
}

describe('EtcdBackend: two instances on one etcd', () => {
  let a: EtcdBackend;
  let b: EtcdBackend;
  let client: Etcd3;

  beforeEach(async () => {
    a = await EtcdBackend.open({ peers: [etcd.url] });
    b = await EtcdBackend.open({ peers: [etcd.url] });
    client = etcd.client();
  });

  afterEach(async () => {
    await a.close();
    await b.close();
    client.close();
  });

  it("delivers a write made through A to B's watcher and B's reads", async () => {
    // GIVEN a watcher on B
    const w = await b.newWatcher({ prefixes: ['/nodes/'] });
    // WHEN A writes an item with an expiry
    const expires = new Date(Date.now() + 3_600_000);
    await a.put({ key: '/nodes/default/n1', value: val('node one'), expires });
    // THEN B's watcher gets the Put with value, expiry and revision, and B reads the same
    const seen = await watchUntil(w, (e) => e.type === OpType.Put, "the Put on B's watcher");
    expect(seen.map(describeEvent)).toEqual(['Init ', 'Put /nodes/default/n1']);
    const fromB = await b.get('/nodes/default/n1');
    expect(seen[1].item.value.toString()).toBe('node one');
    expect(seen[1].item.expires?.getTime()).toBe(expires.getTime());
    expect(seen[1].item.id).toBe(fromB.id);
    expect(fromB.value.toString()).toBe('node one');
    // AND the id is etcd's mod revision of the key
    expect(fromB.id).toBe(Number((await raw(client, '/nodes/default/n1'))!.mod_revision));
    w.close();
  });

  it("starts a new watcher after every write that returned before it, though etcd's stream lags", async () => {
    // GIVEN a burst of writes by A that have all returned (their events may still be in flight to B)
    await Promise.all(Array.from({ length: 300 }, (_, i) => a.put({ key: `/burst/${i}`, value: val('x'.repeat(2_000)) })));
    // WHEN B opens a watcher at once, and A writes once more
    const w = await b.newWatcher({ prefixes: ['/burst/'], queueSize: 1_000 });
    await a.put({ key: '/burst/after', value: val('v') });
    // THEN the watcher reports only the later write
    const seen = await watchUntil(w, (e) => e.type !== OpType.Init, 'the first change');
    expect(seen.map(describeEvent)).toEqual(['Init ', 'Put /burst/after']);
    w.close();
    await a.deleteRange('/burst/', '/burst/\uffff');
  });

  it('lets exactly one of 20 concurrent creates of a key win', async () => {
    // WHEN 20 creates of one key are started, alternating between A and B
    const attempts = Array.from({ length: 20 }, (_, i) =>
      (i % 2 ? a : b).create({ key: '/authorities/host/race', value: val(`candidate ${i}`) }),
    );
    const results = await Promise.allSettled(attempts);
    // THEN one succeeds, the other 19 fail with AlreadyExistsError, and the stored value is the winner's
    const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    const losers = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(winners).toHaveLength(1);
    expect(losers.every((r) => r.reason instanceof AlreadyExistsError)).toBe(true);
    expect((await b.get('/authorities/host/race')).value.toString()).toBe(`candidate ${winners[0]}`);
    await a.delete('/authorities/host/race');
  });

  it('stores an expiry as an etcd lease shared by items expiring together, which deletes them', async () => {
    // GIVEN two items written through different instances with the same expiry, and a watcher on B
    const w = await b.newWatcher({ prefixes: ['/lease/'] });
    const expires = new Date(Date.now() + 1_500);
    await a.put({ key: '/lease/one', value: val('1'), expires });
    await b.put({ key: '/lease/two', value: val('2'), expires });
    // WHEN etcd is asked about them
    const [one, two] = [await raw(client, '/lease/one'), await raw(client, '/lease/two')];
    // THEN both are attached to one lease, named by the expiry instant
    expect(one!.lease).toBe(String(expires.getTime()));
    expect(two!.lease).toBe(one!.lease);
    const ttl = await client.leaseClient.leaseTimeToLive({ ID: one!.lease, keys: true });
    expect(ttl.keys.map((k) => k.toString()).sort()).toEqual(['/teleport/lease/one', '/teleport/lease/two']);
    // AND when the lease runs out, etcd itself removes both keys and B's watcher sees the Deletes
    const seen = await watchUntil(w, (e) => e.item.key === '/lease/two' && e.type === OpType.Delete, 'both Deletes');
    expect(seen.filter((e) => e.type === OpType.Delete).map(describeEvent).sort()).toEqual([
      'Delete /lease/one',
      'Delete /lease/two',
    ]);
    expect(await raw(client, '/lease/one')).toBeUndefined();
    expect(await raw(client, '/lease/two')).toBeUndefined();
    w.close();
  });

  it('treats an item whose expiry has passed as missing even while etcd still holds it', async () => {
    // GIVEN an instance whose clock is an hour ahead, and items that expire in ten minutes
    const later = await EtcdBackend.open({ peers: [etcd.url], clock: new FakeClock(Date.now() + 3_600_000) });
    try {
      const expires = new Date(Date.now() + 600_000);
      for (const k of ['a', 'b', 'c']) await a.put({ key: `/guard/${k}`, value: val(k), expires: k === 'b' ? undefined : expires });
      await a.put({ key: '/guard/d', value: val('d') });
      // WHEN that instance reads and writes them
      // THEN to it they are gone, although etcd still has them
      expect(await raw(client, '/guard/a')).toBeDefined();
      await expect(later.get('/guard/a')).rejects.toBeInstanceOf(NotFoundError);
      expect((await later.getRange('/guard/', '/guard/\uffff')).map((i) => i.key)).toEqual(['/guard/b', '/guard/d']);
      expect((await later.getRange('/guard/', '/guard/\uffff', 2)).map((i) => i.key)).toEqual(['/guard/b', '/guard/d']);
      await expect(later.update({ key: '/guard/a', value: val('x') })).rejects.toBeInstanceOf(NotFoundError);
      await expect(later.delete('/guard/a')).rejects.toBeInstanceOf(NotFoundError);
      await expect(later.keepAlive({ key: '/guard/a' }, new Date(Date.now() + 7_200_000))).rejects.toBeInstanceOf(NotFoundError);
      // AND it may create over one, replacing the value and the lease
      await later.create({ key: '/guard/c', value: val('new c') });
      const c: Item = await a.get('/guard/c');
      expect(c.value.toString()).toBe('new c');
      expect(c.expires).toBeUndefined();
      // while the instance with the right clock still sees the others
      expect((await a.get('/guard/a')).value.toString()).toBe('a');
    } finally {
      await later.close();
      await a.deleteRange('/guard/', '/guard/\uffff');
    }
  });
});

describe('EtcdBackend: when etcd goes away and comes back', () => {
  let server: EtcdServer;
  let first: EtcdServer;
  let backend: EtcdBackend;

  beforeEach(async () => {
    first = server = await EtcdServer.start();
    backend = await EtcdBackend.open({ peers: [server.url] });
  });

  afterEach(async () => {
    await backend.close();
    await server.kill();
    await first.stop();
  });

  /**
   * Stops etcd, runs `meanwhile` against the same data on other ports (out of the backend's
   * reach), and starts etcd again where the backend expects it.
   */
  async function outage(meanwhile: (client: Etcd3) => Promise<void>): Promise<void> {
    await server.kill();
    const elsewhere = await EtcdServer.start({ dataDir: first.dataDir });
    const client = elsewhere.client();
    try {
      await meanwhile(client);
    } finally {
      client.close();
      await elsewhere.kill();
    }
    server = await EtcdServer.start({ dataDir: first.dataDir, clientPort: first.clientPort, peerPort: first.peerPort });
  }

  it('resumes its watch after a restart and delivers the writes it missed', async () => {
    // GIVEN a watcher that has seen one write
    const w = await backend.newWatcher({ prefixes: ['/r/'] });
    await backend.put({ key: '/r/before', value: val('before') });
    await watchUntil(w, (e) => e.item.key === '/r/before', 'the first write');
    // WHEN etcd goes away, another writer changes a key, and etcd comes back
    await outage(async (client) => {
      await client.kv.put({ key: Buffer.from('/teleport/r/meanwhile'), value: val('meanwhile') });
    });
    // THEN the same watcher reports that write, and later ones, without being closed
    const seen = await watchUntil(w, (e) => e.item.key === '/r/meanwhile', 'the write made during the outage', RECONNECT_WAIT_MS);
    expect(seen.map(describeEvent)).toEqual(['Put /r/meanwhile']);
    expect(seen[0].item.value.toString()).toBe('meanwhile');
    await backend.put({ key: '/r/after', value: val('after') });
    expect((await watchUntil(w, (e) => e.item.key === '/r/after', 'a write after the outage')).map(describeEvent)).toEqual([
      'Put /r/after',
    ]);
  });

  it('closes its watchers when the history it missed was compacted, and serves new ones', async () => {
    // GIVEN a watcher
    const w = await backend.newWatcher({ prefixes: ['/r/'] });
    await within(w.next(), 'Init');
    // WHEN etcd goes away, keys change and etcd compacts its history, and etcd comes back
    await outage(async (client) => {
      await client.kv.put({ key: Buffer.from('/teleport/r/one'), value: val('1') });
      const res = await client.kv.put({ key: Buffer.from('/teleport/r/two'), value: val('2') });
      await client.kv.compact({ revision: res.header.revision, physical: true });
    });
    // THEN the watcher is closed, so that its consumer re-reads the state
    await within(w.done, 'the watcher to be closed', RECONNECT_WAIT_MS);
    expect(await w.next()).toBeUndefined();
    expect((await backend.getRange('/r/', '/r/\uffff')).map((i) => i.value.toString())).toEqual(['1', '2']);
    // AND a new watcher reports the writes after it
    const again = await backend.newWatcher({ prefixes: ['/r/'] });
    await backend.put({ key: '/r/three', value: val('3') });
    const seen = await watchUntil(again, (e) => e.item.key === '/r/three', 'a write after the compaction');
    expect(seen.map(describeEvent)).toEqual(['Init ', 'Put /r/three']);
  });
});

describe('EtcdBackend over TLS with client certificates', () => {
  let dir: string;
  let server: EtcdServer;
  const files = (name: string) => path.join(dir, name);

  beforeAll(async () => {
    // GIVEN a CA, a server certificate for 127.0.0.1 and a client certificate, and etcd requiring them
    dir = tempDir('etcd-tls');
    const ca = await generateCA('etcd-test-ca');
    const issue = async (name: string) => {
      const key = generateTlsKey();
      const cert = await issueCert({
        ca,
        publicKey: publicKeyPem(key),
        identity: { username: name, groups: [], principals: [] },
        dnsNames: ['127.0.0.1', 'localhost'],
        ttlMs: 3_600_000,
      });
      fs.writeFileSync(files(`${name}-key.pem`), key, { mode: 0o600 });
      fs.writeFileSync(files(`${name}-cert.pem`), cert);
    };
    fs.writeFileSync(files('ca.pem'), ca.cert);
    await issue('server');
    await issue('client');
    server = await EtcdServer.start({
      tls: { certFile: files('server-cert.pem'), keyFile: files('server-key.pem'), caFile: files('ca.pem') },
      clientCredentials: {
        rootCertificate: fs.readFileSync(files('ca.pem')),
        privateKey: fs.readFileSync(files('client-key.pem')),
        certChain: fs.readFileSync(files('client-cert.pem')),
      },
    });
  });

  afterAll(async () => {
    await server?.stop();
    removeDir(dir);
  });

  it('works with tls_ca_file, tls_cert_file and tls_key_file through openBackend', async () => {
    expect(server.url).toMatch(/^https:/);
    // WHEN the backend is opened as the configuration would open it
    const backend = await openBackend({
      type: 'etcd',
      peers: [server.url],
      prefix: '/tls-test',
      tlsCaFile: files('ca.pem'),
      tlsCertFile: files('client-cert.pem'),
      tlsKeyFile: files('client-key.pem'),
    });
    try {
      // THEN reads, writes and watches work over TLS
      const w = await backend.newWatcher({ prefixes: ['/k'] });
      await backend.put({ key: '/k', value: val('secret') });
      expect((await backend.get('/k')).value.toString()).toBe('secret');
      expect((await watchUntil(w, (e) => e.type === OpType.Put, 'the Put')).map(describeEvent)).toEqual(['Init ', 'Put /k']);
    } finally {
      await backend.close();
    }
  });

  it('fails to open without a client certificate, with ConnectionProblemError', async () => {
    const attempt = EtcdBackend.open({ peers: [server.url], tlsCaFile: files('ca.pem'), requestTimeoutMs: 3_000 });
    await expect(attempt).rejects.toBeInstanceOf(ConnectionProblemError);
  });
});

describe('EtcdBackend options', () => {
  it('rejects bad peers, TLS settings and prefix with BadParameterError', async () => {
    const bad = [
      { peers: [] },
      { peers: ['127.0.0.1:2379'] },
      { peers: ['ftp://127.0.0.1:2379'] },
      { peers: ['http://127.0.0.1:2379', 'https://127.0.0.1:2380'] },
      { peers: ['http://127.0.0.1:2379'], tlsCaFile: '/etc/ssl/certs/ca-certificates.crt' },
      { peers: ['https://127.0.0.1:2379'], tlsCertFile: '/nonexistent/cert.pem' },
      { peers: ['https://127.0.0.1:2379'], tlsCertFile: '/nonexistent/cert.pem', tlsKeyFile: '/nonexistent/key.pem' },
      { peers: ['https://127.0.0.1:2379'], insecure: true },
      { peers: ['http://127.0.0.1:2379'], prefix: '' },
    ];
    for (const opts of bad) {
      await expect(EtcdBackend.open(opts)).rejects.toBeInstanceOf(BadParameterError);
    }
  });

  it('fails with ConnectionProblemError naming the peer when nothing listens there', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const attempt = EtcdBackend.open({ peers: [url], requestTimeoutMs: 3_000 });
    await expect(attempt).rejects.toBeInstanceOf(ConnectionProblemError);
    await expect(attempt).rejects.toThrow('127.0.0.1');
  });

  it('keeps keys under its prefix, apart from other prefixes', async () => {
    // GIVEN two backends with different prefixes on one etcd
    const one = await EtcdBackend.open({ peers: [etcd.url], prefix: '/cluster-one' });
    const two = (await openBackend({ type: 'etcd', peers: [etcd.url], prefix: '/cluster-two' })) as EtcdBackend;
    const client = etcd.client();
    try {
      // WHEN each writes the same key
      await one.put({ key: '/k', value: val('one') });
      await two.put({ key: '/k', value: val('two') });
      // THEN each reads its own, and etcd holds them under the prefixes
      expect((await one.get('/k')).value.toString()).toBe('one');
      expect((await two.get('/k')).value.toString()).toBe('two');
      const res = await client.kv.range({ key: Buffer.from('/cluster-one/k') });
      expect(res.kvs[0].value.toString()).toBe('one');
    } finally {
      await one.close();
      await two.close();
      client.close();
    }
  });
});
