/**
 * `auth_certificate_issue_failures_total` on a real auth server (memory backend, file audit log):
 * a certificate request the server accepted but could not serve counts; a request refused for
 * what it asks (an unknown user, a malformed key) does not.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AuthServer } from '../../../runtime/auth/server';
import { MemoryBackend } from '../../../runtime/backend/memory';
import { FileAuditLog } from '../../../runtime/events/filelog';
import { certificateIssueFailures } from '../../../runtime/service/metrics';
import { formatAuthorizedKey, generateKeyPair, publicKeyBlob } from '../../../runtime/sshcert';
import { initTestAuthServer } from '../../helpers/authserver';

const failures = async (type: 'user' | 'host') => (await certificateIssueFailures.get()).values.find((v) => v.labels.type === type)?.value ?? 0;

describe('certificate issuance failures', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'issue-failures-'));
  const backend = new MemoryBackend({ sweepPeriodMs: 0 });
  const audit = new FileAuditLog(dir);
  let auth: AuthServer | undefined;
  const sshPublicKey = formatAuthorizedKey(publicKeyBlob(generateKeyPair('ed25519').publicKey));

  beforeAll(async () => {
    auth = await initTestAuthServer({ backend, audit, clusterName: 'example.com' });
    await auth.addUser('kim', ['kim'], ['admin'], 'test');
  });
  afterAll(async () => {
    await auth?.close();
    await backend.close();
    await audit.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('GIVEN a working auth server WHEN a certificate is issued, and requests for an unknown user and with a malformed key are refused THEN no failure counts', async () => {
    // GIVEN
    const before = await failures('user');
    // WHEN
    await expect(auth!.generateUserCerts({ username: 'kim', sshPublicKey })).resolves.toMatchObject({ logins: ['kim'] });
    await expect(auth!.generateUserCerts({ username: 'nobody', sshPublicKey })).rejects.toThrow(/nobody/);
    await expect(auth!.generateUserCerts({ username: 'kim', sshPublicKey: 'ssh-ed25519 AAAA' })).rejects.toThrow();
    await expect(auth!.generateHostCertForNames(sshPublicKey, [], 0)).rejects.toThrow(/at least one host name/);
    // THEN
    expect(await failures('user')).toBe(before);
    expect(await failures('host')).toBe(0);
  });

  test('GIVEN the backend has stopped WHEN a user certificate is asked for THEN the request fails and the failure counts once', async () => {
    // GIVEN
    const before = await failures('user');
    await backend.close();
    // WHEN
    await expect(auth!.generateUserCerts({ username: 'kim', sshPublicKey })).rejects.toThrow(/closed/);
    // THEN
    expect(await failures('user')).toBe(before + 1);
  });
});
