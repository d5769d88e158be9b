/**
 * `audit_sessions_uri: s3://...` end to end: a `teleport` auth process keeps
 * recordings in S3 (s3rver in its own process). A node's upload survives a
 * SIGKILL of the auth server half-way (the restarted process completes it
 * from its journal and the parts already in S3), the recording plays back
 * byte-exact through the auth API, and `session.upload` names the object.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { AuthClient } from '../../runtime/auth/client';
import { register } from '../../runtime/auth/register';
import { EventFields } from '../../runtime/events/filelog';
import { MAX_PART_BYTES } from '../../runtime/recordings/limits';
import { fetchRecording } from '../../runtime/recordings/playback';
import { sha256Hex } from '../../runtime/recordings/store';
import { AuthRecordingTarget } from '../../runtime/recordings/uploader';
import { logger, setLogLevel } from '../../runtime/utils/logger';
import { createAuth, TestAuth } from '../helpers/cluster';
import { S3rverProcess, S3RVER_CREDENTIALS } from '../helpers/s3';
import { logOf, split } from '../runtime/recordings/suite';

jest.setTimeout(120_000);

describe('session recordings in S3 end to end', () => {
  const secret = randomBytes(12).toString('hex');
  const env = { AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey };
  let s3: S3rverProcess;
  let bucketClient: S3Client;
  let auth: TestAuth;
  let node: AuthClient;
  let hostUUID: string;

  beforeAll(async () => {
    setLogLevel('error');
    s3 = await S3rverProcess.start('recordings');
    bucketClient = s3.client();
    const uri = `s3://${s3.bucket}/records?endpoint=127.0.0.1:${s3.port}&insecure=true&sse=aws:kms`;
    auth = await createAuth({ tokens: [`node:${secret}`], teleportExtra: ['storage:', `  audit_sessions_uri: "${uri}"`] });
    auth.start(env);
    await auth.ready();
    hostUUID = randomUUID();
    const id = await register({
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
    node = new AuthClient({ servers: [{ host: '127.0.0.1', port: auth.port }], credentials: { key: id.tlsKey, cert: id.tlsCert, ca: id.tlsCACerts } });
  }, 90_000);

  afterAll(async () => {
    node?.close();
    await auth?.cleanup();
    bucketClient?.destroy();
    await s3?.stop();
  });

  it('GIVEN an upload in progress WHEN the auth server is killed and restarted THEN the node sends the remaining parts, the recording completes in S3 and plays back byte-exact', async () => {
    expect(auth.daemon!.stdout + auth.daemon!.stderr).toContain('session recordings are kept in S3');
    const sid = randomUUID();
    const bytes = randomBytes(4 * MAX_PART_BYTES + 777);
    const log = logOf(
      { event: 'session.start', ei: 0, user: 'alice', login: 'root', size: '80:25' },
      ...Array.from({ length: 21 }, (_, i) => ({ event: 'print', ei: i + 1, offset: i * 1024 * 1024, bytes: Math.min(1024 * 1024, bytes.length - i * 1024 * 1024), ms: i * 10 })),
      { event: 'session.end', ei: 22, user: 'alice' },
    );
    const parts = [...split(log, MAX_PART_BYTES, 1, 'log'), ...split(bytes, MAX_PART_BYTES, 2, 'bytes')];
    const target = new AuthRecordingTarget(node);

    // GIVEN half of the parts reached the auth server
    for (const p of parts.slice(0, 3)) await target.putPart(sid, p.part, p.data);
    // WHEN it dies without warning and comes back
    await auth.daemon!.stop('SIGKILL');
    auth.start(env);
    await auth.ready();

    // THEN the node goes on with the rest (re-sending the last one) and completes
    for (const p of parts.slice(2)) await target.putPart(sid, p.part, p.data);
    const res = await target.complete(sid, parts.map((p) => p.ref));
    expect(res).toEqual({ created: true, url: `s3://${s3.bucket}/records/default/${sid}.recording` });

    const listed = (await bucketClient.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'records/' }))).Contents!.map((o) => o.Key).sort();
    expect(listed).toEqual([`records/default/${sid}.index.json`, `records/default/${sid}.recording`]);
    expect(fs.readdirSync(path.join(auth.dataDir, 'log', 's3-staging', 'default'))).toEqual([]);
    expect(fs.existsSync(path.join(auth.dataDir, 'log', 'sessions', 'default', `${sid}.session.bytes`))).toBe(false);

    const admin = await auth.adminClient();
    try {
      const got = await fetchRecording(admin, sid);
      expect(got.bytes.length).toBe(bytes.length);
      expect(sha256Hex(got.bytes)).toBe(sha256Hex(bytes));
      expect(got.events.map((e) => e.event)).toEqual(['session.start', ...Array(21).fill('print'), 'session.end']);
      const uploads = (await admin.get<EventFields[]>('/v1/events?event=session.upload')).filter((e) => e.sid === sid);
      expect(uploads).toEqual([expect.objectContaining({ code: 'T2005I', server_id: hostUUID, url: res.url })]);
    } finally {
      admin.close();
    }
  });
});
