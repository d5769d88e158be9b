/**
 * Nothing is lost, end to end against a real auth server: a large recording
 * uploads in parts and plays back byte-exact; a recording cut short by a
 * killed node process is uploaded by the next uploader with everything it
 * wrote; audit events spooled while the auth server is down arrive once it
 * is back, each exactly once.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openBackend } from '../../runtime/backend';
import { AuthClient } from '../../runtime/auth/client';
import { Identity, IdentityStore } from '../../runtime/auth/identity';
import { register } from '../../runtime/auth/register';
import { EventFields } from '../../runtime/events/filelog';
import { auditEventSender, EventSpool } from '../../runtime/events/spool';
import { MAX_PART_BYTES } from '../../runtime/recordings/limits';
import { fetchRecording, replay } from '../../runtime/recordings/playback';
import { SessionRecorder } from '../../runtime/recordings/recorder';
import { RecordingUploader } from '../../runtime/recordings/uploader';
import { procStoragePath } from '../../runtime/service/datadir';
import { AccessDeniedError, TeleportError } from '../../runtime/utils/errors';
import { logger, setLogLevel } from '../../runtime/utils/logger';
import { startAuth, TestAuth } from '../helpers/cluster';
import { Daemon, ROOT, tempDir, waitFor } from '../helpers/proc';

const RECORDER_JS = path.join(ROOT, 'dist', 'runtime', 'recordings', 'recorder.js');

async function adminClient(auth: TestAuth): Promise<AuthClient> {
  const proc = await openBackend({ type: 'sqlite', path: procStoragePath(auth.dataDir) });
  try {
    const id = await new IdentityStore(proc).load('Admin');
    return new AuthClient({ servers: [{ host: '127.0.0.1', port: auth.port }], credentials: { key: id.tlsKey, cert: id.tlsCert, ca: id.tlsCACerts } });
  } finally {
    await proc.close();
  }
}

/** What the node process in the crash test writes: chunk i of its session. */
const crashChunk = (i: number) => Buffer.from(`line ${i}: ${'x'.repeat(i * 7)}\r\n`);

describe('recordings and audit events end to end', () => {
  const secret = randomBytes(12).toString('hex');
  let auth: TestAuth;
  let work: string;
  let uploadDir: string;
  let nodeId: Identity;
  let hostUUID: string;
  let node: AuthClient;
  let admin: AuthClient;

  beforeAll(async () => {
    setLogLevel('error');
    if (!fs.existsSync(RECORDER_JS)) throw new Error(`${RECORDER_JS} is missing: run "npx tsc -p ." (npm test does it)`);
    auth = await startAuth({ tokens: [`node:${secret}`] });
    work = tempDir('rec-e2e-');
    uploadDir = path.join(work, 'log', 'upload', 'sessions', 'default');
    hostUUID = randomUUID();
    nodeId = await register({
      servers: [{ host: '127.0.0.1', port: auth.port }],
      token: secret,
      caPins: [],
      role: 'Node',
      hostUUID,
      nodeName: 'node-1',
      additionalPrincipals: [],
      dnsNames: [],
      log: logger('test'),
    });
    node = new AuthClient({ servers: [{ host: '127.0.0.1', port: auth.port }], credentials: { key: nodeId.tlsKey, cert: nodeId.tlsCert, ca: nodeId.tlsCACerts } });
    admin = await adminClient(auth);
  });

  afterAll(async () => {
    node?.close();
    admin?.close();
    await auth?.cleanup();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  async function uploadAll(): Promise<void> {
    const uploader = new RecordingUploader({ dir: uploadDir, client: node, scanPeriodMs: 60_000 });
    await uploader.start();
    try {
      await uploader.flush();
    } finally {
      await uploader.close();
    }
  }

  it('GIVEN a 20 MiB recording WHEN the node uploads it THEN it goes in parts under the body limit and plays back byte-exact', async () => {
    const sid = randomUUID();
    const rec = new SessionRecorder({ dir: uploadDir, sid, serverId: hostUUID });
    rec.event({ event: 'session.start', user: 'alice', login: 'root', size: '80:25' });
    const chunks: Buffer[] = [];
    for (let i = 0; i < 320; i++) {
      const c = randomBytes(64 * 1024);
      chunks.push(c);
      rec.output(c);
    }
    rec.event({ event: 'session.end', user: 'alice' });
    await rec.close();
    const recorded = Buffer.concat(chunks);
    expect(recorded.length).toBe(20 * 1024 * 1024);

    await uploadAll();

    expect(fs.readdirSync(uploadDir)).toEqual([]);
    const got = await fetchRecording(admin, sid);
    expect(got.bytes.length).toBe(recorded.length);
    expect(got.bytes.equals(recorded)).toBe(true);
    expect(got.events.map((e) => e.event)).toEqual(['session.start', ...chunks.map(() => 'print'), 'session.end']);
    const replayed: Buffer[] = [];
    await replay(got.events, got.bytes, (b) => replayed.push(b));
    expect(Buffer.concat(replayed).equals(recorded)).toBe(true);

    const uploads = (await admin.get<EventFields[]>('/v1/events?event=session.upload')).filter((e) => e.sid === sid);
    expect(uploads).toEqual([expect.objectContaining({ code: 'T2005I', ei: 2 ** 31 - 1, server_id: hostUUID, url: expect.stringContaining(sid) })]);

    // A body over the part limit is refused, and a node cannot read recordings back.
    await expect(node.callRaw('PUT', `/v1/namespaces/default/sessions/${randomUUID()}/recording/parts/1`, Buffer.alloc(MAX_PART_BYTES + 1))).rejects.toBeInstanceOf(TeleportError);
    await expect(fetchRecording(node, sid)).rejects.toBeInstanceOf(AccessDeniedError);
    await expect(node.callRaw('PUT', '/v1/namespaces/default/sessions/..%2f..%2fpasswd/recording/parts/1', Buffer.from('x'))).rejects.toThrow(/not a UUID/);
    await expect(admin.get('/v1/namespaces/..%2f..%2f/sessions/' + sid + '/events')).rejects.toThrow(/namespace .* is invalid/);
  });

  it('GIVEN a node process killed mid-session WHEN a new uploader runs THEN everything it wrote is uploaded and plays back', async () => {
    const sid = randomUUID();
    const count = 60;
    const script = `
      const { SessionRecorder } = require(${JSON.stringify(RECORDER_JS)});
      const rec = new SessionRecorder({ dir: ${JSON.stringify(uploadDir)}, sid: ${JSON.stringify(sid)}, serverId: ${JSON.stringify(hostUUID)} });
      rec.event({ event: 'session.start', user: 'alice' });
      for (let i = 0; i < ${count}; i++) rec.output(Buffer.from('line ' + i + ': ' + 'x'.repeat(i * 7) + '\\r\\n'));
      process.stdout.write('written\\n');
      setInterval(() => undefined, 1000);
    `;
    const child = Daemon.spawn(process.execPath, ['-e', script]);
    await child.waitForOutput(/written/);
    await child.stop('SIGKILL');
    expect(fs.existsSync(path.join(uploadDir, `${sid}.completed`))).toBe(false);

    await uploadAll();

    const expected = Buffer.concat(Array.from({ length: count }, (_, i) => crashChunk(i)));
    const got = await fetchRecording(admin, sid);
    expect(got.bytes.equals(expected)).toBe(true);
    expect(got.events.map((e) => e.event)).toEqual(['session.start', ...Array.from({ length: count }, () => 'print')]);
    expect(fs.readdirSync(uploadDir)).toEqual([]);
  });

  it('GIVEN the auth server is down WHEN events are spooled THEN they are delivered after it restarts, none lost and none duplicated', async () => {
    await auth.stop();
    const failures: unknown[] = [];
    const spool = new EventSpool({
      dir: path.join(work, 'log', 'upload', 'events'),
      send: auditEventSender(node),
      batchSize: 16,
      backoff: { initialMs: 50, maxMs: 400 },
      onRetry: ({ error }) => void failures.push(error),
    });
    await spool.start();
    try {
      const marker = randomUUID();
      const emitted: EventFields[] = [];
      for (let n = 0; n < 40; n++) emitted.push(await spool.emit({ event: 'exec', command: `echo ${n}`, marker, n }));
      await waitFor('a failed delivery while the auth server is down', () => failures.length > 0);

      auth.start();
      await auth.ready();
      await spool.flush();

      admin.close();
      admin = await adminClient(auth);
      const delivered = async () => (await admin.get<EventFields[]>('/v1/events?event=exec')).filter((e) => e.marker === marker);
      expect((await delivered()).map((e) => e.uid)).toEqual(emitted.map((e) => e.uid));
      expect((await delivered())[0]).toMatchObject({ code: 'T3002I', time: emitted[0].time, command: 'echo 0' });

      // A batch sent again (its acknowledgement lost) is recognised by uid.
      expect(await node.post('/v1/events/batch', { events: emitted.slice(0, 10) })).toEqual({ accepted: 0, duplicates: 10 });
      expect(await delivered()).toHaveLength(40);
    } finally {
      await spool.close();
    }
  });
});
