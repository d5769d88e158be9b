/**
 * The cluster's name on a real auth server (memory backend): a new cluster
 * without `auth_service.cluster_name` is named after the auth server's host
 * (its nodename), as Teleport does; a cluster keeps the name it has in
 * storage (an older one named by a UUID stays so); a cluster_name that
 * differs from the stored one is refused.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Keys } from '../../../runtime/contract/keys';
import { AuthServer } from '../../../runtime/auth/server';
import { MemoryBackend } from '../../../runtime/backend/memory';
import { FileAuditLog } from '../../../runtime/events/filelog';
import { initTestAuthServer } from '../../helpers/authserver';

const OLD_UUID_NAME = '27a0fed0-3c3e-43cd-8574-3acb870bf0ca';

describe('cluster name', () => {
  let dir: string;
  let backend: MemoryBackend;
  let audit: FileAuditLog;
  const started: AuthServer[] = [];

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cluster-name-'));
    backend = new MemoryBackend({ sweepPeriodMs: 0 });
    audit = new FileAuditLog(dir);
  });
  afterEach(async () => {
    await Promise.all(started.splice(0).map((a) => a.close()));
    await backend.close();
    await audit.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const init = async (nodeName: string, clusterName?: string): Promise<AuthServer> => {
    const auth = await initTestAuthServer({ backend, audit, nodeName, ...(clusterName ? { clusterName } : {}) });
    started.push(auth);
    return auth;
  };

  it('GIVEN a new cluster without cluster_name WHEN the auth server starts THEN the cluster is named after its host, and keeps that name', async () => {
    // WHEN a new cluster starts on host "box".
    const auth = await init('box');
    // THEN it is named "box", and its CAs are that cluster's.
    expect(auth.clusterName).toBe('box');
    expect(JSON.parse((await backend.get(Keys.certAuthority('host', 'box'))).value.toString()).spec.cluster_name).toBe('box');
    // WHEN it starts again with another nodename THEN the stored name stays.
    await auth.close();
    started.pop();
    expect((await init('renamed-host')).clusterName).toBe('box');
  });

  it('GIVEN a cluster created with a UUID name WHEN it starts without cluster_name THEN the stored name wins over the host name', async () => {
    // GIVEN storage written by a version that named new clusters by a UUID.
    const value = { kind: 'cluster_name', version: 'v2', metadata: { name: 'cluster-name' }, spec: { cluster_name: OLD_UUID_NAME } };
    await backend.create({ key: Keys.clusterName(), value: Buffer.from(JSON.stringify(value)) });
    // WHEN the auth server starts on host "box" THEN the cluster keeps its name.
    expect((await init('box')).clusterName).toBe(OLD_UUID_NAME);
  });

  it('GIVEN cluster_name WHEN a new cluster starts THEN it is used, and another cluster_name later is refused', async () => {
    expect((await init('box', 'example.com')).clusterName).toBe('example.com');
    await expect(init('box', 'other.example.com')).rejects.toThrow(
      /the cluster name in storage is "example\.com" but auth_service\.cluster_name is "other\.example\.com"/,
    );
  });
});
