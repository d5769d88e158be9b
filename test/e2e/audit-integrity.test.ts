/**
 * What cluster members may write to the audit log and the recordings: a node
 * or proxy writes its own connections' and sessions' events, stamped with the
 * host ID its certificate names; another server's events, events only the
 * auth service writes (`user.login`), and another host's recording upload are
 * refused with 403, and each refusal is itself audited (`audit.rejected`).
 */
import { createHash, randomUUID } from 'node:crypto';
import { AuthClient } from '../../runtime/auth/client';
import { register } from '../../runtime/auth/register';
import { SystemRole } from '../../runtime/auth/resources';
import { logger, setLogLevel } from '../../runtime/utils/logger';
import { startAuth, TestAuth } from '../helpers/cluster';

describe('audit integrity: members write only as themselves', () => {
  let auth: TestAuth;
  const clients: AuthClient[] = [];
  const nodeA = randomUUID();
  const nodeB = randomUUID();
  const proxyP = randomUUID();
  let a: AuthClient;
  let b: AuthClient;
  let p: AuthClient;
  /** A node whose host ID starts with node A's and a dot. */
  let lookalike: AuthClient;

  const join = async (hostUUID: string, role: SystemRole): Promise<AuthClient> => {
    const id = await register({
      servers: [{ host: '127.0.0.1', port: auth.port }],
      token: role === 'Node' ? 'node-token-for-audit' : 'proxy-token-for-audit',
      caPins: [await auth.caPin()],
      role,
      hostUUID,
      nodeName: `host-${hostUUID.slice(0, 8)}`,
      additionalPrincipals: [],
      dnsNames: [],
      log: logger('test'),
    });
    const client = new AuthClient({ servers: [{ host: '127.0.0.1', port: auth.port }], credentials: { key: id.tlsKey, cert: id.tlsCert, ca: id.tlsCACerts } });
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    setLogLevel('error');
    auth = await startAuth({ tokens: ['node:node-token-for-audit', 'proxy:proxy-token-for-audit'] });
    a = await join(nodeA, 'Node');
    b = await join(nodeB, 'Node');
    p = await join(proxyP, 'Proxy');
    lookalike = await join(`${nodeA}.x`, 'Node');
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await auth?.cleanup();
  });

  /** The events carrying `marker`. */
  const withMarker = async (marker: string) => (await auth.events()).filter((e) => e.marker === marker);
  /** The `audit.rejected` events that name `what` (an attempted event or session). */
  const rejections = async (what: string) =>
    (await auth.events(['audit.rejected'])).filter((e) => e.attempted_event === what || e.sid === what || e.attempted_server_id === what);

  it('GIVEN a node WHEN it writes its own events, with or without server_id THEN they are recorded with its host ID', async () => {
    // WHEN
    const marker = randomUUID();
    await a.post('/v1/events', { event: 'exec', command: 'ls', marker, n: 1 });
    await a.post('/v1/events', { event: 'exec', command: 'ls', marker, n: 2, server_id: nodeA });
    await a.post('/v1/events/batch', { events: [{ event: 'session.start', sid: randomUUID(), marker, n: 3 }] });
    await p.post('/v1/events', { event: 'auth', user: 'mallory', success: false, error: 'bad key', marker, n: 4 });
    // THEN
    const got = (await withMarker(marker)).sort((x, y) => x.n - y.n);
    expect(got.map((e) => [e.n, e.event, e.server_id])).toEqual([
      [1, 'exec', nodeA],
      [2, 'exec', nodeA],
      [3, 'session.start', nodeA],
      [4, 'auth', proxyP],
    ]);
    expect(got[3].code).toBe('T3007W');
  });

  it("GIVEN a node WHEN it writes an event for another server THEN 403, nothing is recorded, and the refusal is audited", async () => {
    // WHEN a node, and a proxy, write an event naming node B
    const marker = randomUUID();
    const single = a.post('/v1/events', { event: 'exec', command: 'rm -rf /', server_id: nodeB, marker });
    await expect(single).rejects.toMatchObject({ reason: 'access_denied', message: `host ${nodeA} may not write events for server ${nodeB}` });
    const viaProxy = p.post('/v1/events', { event: 'auth', user: 'x', success: false, server_id: nodeB, marker });
    await expect(viaProxy).rejects.toMatchObject({ reason: 'access_denied' });
    // THEN
    expect(await withMarker(marker)).toEqual([]);
    const refused = await rejections(nodeB);
    expect(refused).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ code: 'TA001W', server_id: nodeA, role: 'Node', attempted_event: 'exec', attempted_server_id: nodeB }),
        expect.objectContaining({ code: 'TA001W', server_id: proxyP, role: 'Proxy', attempted_event: 'auth', attempted_server_id: nodeB }),
      ]),
    );
  });

  it('GIVEN a node WHEN it writes events only the auth service writes, or a code not of its event THEN 403 and audited', async () => {
    // WHEN a node writes a login, an upload, and its own kind of event with a login's code
    const marker = randomUUID();
    const login = a.post('/v1/events', { event: 'user.login', user: 'alice', method: 'local', success: true, marker });
    await expect(login).rejects.toMatchObject({ reason: 'access_denied', message: expect.stringMatching(/may not write "user\.login" events: only the auth service/) });
    const upload = a.post('/v1/events', { event: 'session.upload', sid: randomUUID(), marker });
    await expect(upload).rejects.toMatchObject({ reason: 'access_denied' });
    const dressedUp = a.post('/v1/events', { event: 'auth', user: 'alice', code: 'T1000I', marker });
    await expect(dressedUp).rejects.toMatchObject({ reason: 'access_denied', message: expect.stringMatching(/code T1000I/) });
    // THEN
    expect(await withMarker(marker)).toEqual([]);
    expect(await rejections('user.login')).toContainEqual(expect.objectContaining({ server_id: nodeA, attempted_event: 'user.login', error: expect.stringMatching(/only the auth service/) }));
    expect(await rejections('session.upload')).toContainEqual(expect.objectContaining({ server_id: nodeA, attempted_event: 'session.upload' }));
  });

  it('GIVEN a batch with one forged event THEN the whole batch is refused; uids are remembered per host', async () => {
    // WHEN a batch holds a good event and one for another server
    const marker = randomUUID();
    const batch = a.post('/v1/events/batch', { events: [{ event: 'exec', marker }, { event: 'exec', server_id: nodeB, marker }] });
    // THEN none of it is written
    await expect(batch).rejects.toMatchObject({ reason: 'access_denied' });
    expect(await withMarker(marker)).toEqual([]);
    // WHEN node A delivers an event, and node B then sends its own event with the same uid
    const uid = randomUUID();
    expect(await a.post('/v1/events/batch', { events: [{ event: 'exec', uid, marker }] })).toEqual({ accepted: 1, duplicates: 0 });
    expect(await a.post('/v1/events/batch', { events: [{ event: 'exec', uid, marker }] })).toEqual({ accepted: 0, duplicates: 1 });
    expect(await b.post('/v1/events/batch', { events: [{ event: 'exec', uid, marker }] })).toEqual({ accepted: 1, duplicates: 0 });
    // THEN A's copy did not suppress B's event
    expect((await withMarker(marker)).map((e) => e.server_id).sort()).toEqual([nodeA, nodeB].sort());
  });

  it("GIVEN a host whose ID is another's followed by a dot THEN it is not taken for that host", async () => {
    const marker = randomUUID();
    await expect(lookalike.post('/v1/events', { event: 'exec', server_id: nodeA, marker })).rejects.toMatchObject({ reason: 'access_denied' });
    await expect(
      lookalike.post('/v1/namespaces/default/nodes', { kind: 'node', version: 'v2', metadata: { name: nodeA, namespace: 'default' }, spec: { addr: '10.0.0.9:3022', hostname: 'evil' } }),
    ).rejects.toMatchObject({ reason: 'access_denied' });
    await lookalike.post('/v1/events', { event: 'exec', marker });
    expect((await withMarker(marker)).map((e) => e.server_id)).toEqual([`${nodeA}.x`]);
  });

  it("GIVEN node A uploading a recording WHEN node B sends parts for it or completes it THEN 403 and audited, and A's recording is the one kept", async () => {
    // GIVEN
    const sid = randomUUID();
    const base = `/v1/namespaces/default/sessions/${sid}/recording`;
    const log = Buffer.from(JSON.stringify({ event: 'session.start', sid, server_id: nodeA, ei: 0 }) + '\n');
    const forged = Buffer.from(JSON.stringify({ event: 'session.start', sid, server_id: nodeA, user: 'forged', ei: 0 }) + '\n');
    const ref = (data: Buffer) => [{ part: 1, file: 'log', size: data.length, sha256: createHash('sha256').update(data).digest('hex') }];
    await a.callRaw('PUT', `${base}/parts/1`, log);
    // WHEN node B sends its own part 1, and completes with it
    const part = b.callRaw('PUT', `${base}/parts/1`, forged);
    await expect(part).rejects.toMatchObject({ reason: 'access_denied', message: `host ${nodeB} may not upload the recording of session ${sid}: host ${nodeA} is uploading it` });
    const complete = b.post(`${base}/complete`, { parts: ref(forged) });
    await expect(complete).rejects.toMatchObject({ reason: 'access_denied' });
    // THEN both refusals are audited
    expect((await rejections(sid)).map((e) => [e.server_id, e.attempted_event])).toEqual([
      [nodeB, 'session.upload'],
      [nodeB, 'session.upload'],
    ]);
    // AND A completes its own recording, which is what plays back
    expect(await a.post(`${base}/complete`, { parts: ref(log) })).toMatchObject({ created: true });
    const admin = await auth.adminClient();
    try {
      expect(await admin.get(`/v1/namespaces/default/sessions/${sid}/events`)).toEqual([expect.objectContaining({ event: 'session.start', server_id: nodeA })]);
      expect((await admin.get<Record<string, unknown>[]>('/v1/events?event=session.upload')).filter((e) => e.sid === sid)).toEqual([
        expect.objectContaining({ server_id: nodeA }),
      ]);
    } finally {
      admin.close();
    }
    await expect(b.post(`${base}/complete`, { parts: ref(log) })).rejects.toMatchObject({ reason: 'access_denied' });
  });
});
