/**
 * CA keys in AWS KMS, against the local AWS endpoint (sim/aws: real keys held
 * by the endpoint, the KMS JSON 1.1 wire protocol): the auth server creates
 * ECC_NIST_P256 SIGN_VERIFY keys, keeps only public keys and key ARNs in the
 * backend, and signs through KMS Sign (DIGEST). The runtime is unchanged: it
 * finds the endpoint through the SDK's standard AWS_ENDPOINT_URL.
 */
import * as fs from 'node:fs';
import { CredentialRegistry } from '../../sim/aws/credentials';
import { Gateway } from '../../sim/aws/gateway';
import { KmsKeys } from '../../sim/aws/kms-keys';
import { endpointTls } from '../../sim/tls';
import { ACCOUNT, arn, REGION, type AwsCall, type CallAuditor, type Caller, type IamDecision } from '../../sim/types';
import { caPrivateKeysUnder, caPublicKeys, storedCAs } from '../helpers/cakeys';
import { createAuth, startCluster, TestAuth } from '../helpers/cluster';
import { SshUser, sshTo } from '../helpers/openssh';
import { cliPath, Daemon, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';

const unb64 = (s: string) => Buffer.from(s, 'base64').toString();
const AUTH: Caller = { roleLogicalId: 'AuthRole', roleArn: arn.role('acme-AuthRole'), name: 'i-0auth' };
const NO_CREATE: Caller = { roleLogicalId: 'NoCreateRole', roleArn: arn.role('acme-NoCreateRole'), name: 'i-0nocreate' };

/** Records every call; the NoCreate role may not create keys. */
class Auditor implements CallAuditor {
  readonly calls: AwsCall[] = [];
  check(call: AwsCall): IamDecision {
    this.calls.push(call);
    return call.caller.roleLogicalId === 'NoCreateRole' && call.action === 'kms:CreateKey' ? { allowed: false, reason: 'the test denies it' } : { allowed: true };
  }
}

describe('CA keys in AWS KMS (local endpoint)', () => {
  let dir: string;
  let gateway: Gateway;
  let certFile: string;
  const kms = new KmsKeys();
  const registry = new CredentialRegistry();
  const auditor = new Auditor();
  let auth: TestAuth;
  let work: string;
  const kmsConfig = ['ca_key_params:', '  aws_kms:', `    account: "${ACCOUNT}"`, `    region: ${REGION}`];

  function awsEnv(caller: Caller): NodeJS.ProcessEnv {
    const creds = registry.issue(caller);
    return {
      AWS_ENDPOINT_URL: gateway.url,
      NODE_EXTRA_CA_CERTS: certFile,
      AWS_ACCESS_KEY_ID: creds.accessKeyId,
      AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
      AWS_SESSION_TOKEN: creds.sessionToken,
      AWS_REGION: REGION,
      AWS_EC2_METADATA_DISABLED: 'true',
    };
  }

  beforeAll(async () => {
    dir = tempDir('kms-e2e-');
    work = tempDir('kms-work-');
    const tls = await endpointTls(dir, ['127.0.0.1']);
    certFile = tls.certFile;
    gateway = await Gateway.start({ tls, registry, auditor, host: '127.0.0.1' });
    gateway.route('kms', kms.handler);
    auth = await startCluster({ authExtra: kmsConfig }, awsEnv(AUTH));
    await auth.tctlOk('users', 'add', 'alice', LOGIN);
  });

  afterAll(async () => {
    await auth?.cleanup();
    await gateway?.close();
    for (const d of [dir, work]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  it('GIVEN a cluster whose CAs are in KMS WHEN the backend is read THEN it holds the ARNs of four KMS keys and ECDSA P-256 public keys', async () => {
    // WHEN
    const cas = await storedCAs(auth);
    // THEN
    const refs = cas.flatMap((ca) => [unb64(ca.spec.signing_keys[0]), unb64(ca.spec.tls_key_pairs[0].key)]);
    for (const ref of refs) expect(ref).toMatch(new RegExp(`^awskms:arn:aws:kms:${REGION}:${ACCOUNT}:key/[0-9a-f-]{36}$`));
    expect(new Set(refs).size).toBe(4);
    expect(kms.count()).toBe(4);
    for (const ca of cas) expect(unb64(ca.spec.checking_keys[0])).toMatch(/^ecdsa-sha2-nistp256 /);
    // AND the auth server created them with its own credentials
    expect(auditor.calls.filter((c) => c.action === 'kms:CreateKey').map((c) => c.caller.name)).toEqual(['i-0auth', 'i-0auth', 'i-0auth', 'i-0auth']);
  });

  it('GIVEN a user certificate signed by KMS WHEN stock ssh logs in to the node THEN the node accepts it and ssh trusts the node by its KMS-signed host certificate', async () => {
    // GIVEN
    const signsBefore = auditor.calls.filter((c) => c.action === 'kms:Sign').length;
    const user = await SshUser.create(auth, work, 'alice', LOGIN);
    // WHEN
    const r = await sshTo(user, auth.nodePort!, 'test-auth', ['echo', 'signed-by-kms']);
    // THEN
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('signed-by-kms');
    expect(r.code).toBe(0);
    // AND the certificate was signed by a KMS Sign call
    expect(auditor.calls.filter((c) => c.action === 'kms:Sign').length).toBeGreaterThan(signsBefore);
  });

  it('GIVEN the cluster has issued certificates WHEN the data dir is scanned THEN no private key there belongs to a CA', async () => {
    const caKeys = caPublicKeys(await storedCAs(auth));
    expect(caKeys.size).toBe(4);
    expect(caPrivateKeysUnder(auth.dataDir, caKeys)).toEqual([]);
  });

  it('GIVEN credentials that may not create KMS keys WHEN a new cluster starts THEN teleport exits non-zero naming the call, the error and the setting', async () => {
    // GIVEN
    const a = await createAuth({ authExtra: kmsConfig });
    const d = Daemon.spawn(process.execPath, [cliPath('teleport'), 'start', '--roles=auth', '-c', a.configPath], awsEnv(NO_CREATE));
    try {
      // WHEN
      const code = await waitFor('teleport start to exit', () => d.child.exitCode ?? undefined, 30_000);
      // THEN
      expect(code).not.toBe(0);
      expect(d.stdout + d.stderr).toMatch(/teleport\.yaml:\d+:\d+: auth_service\.ca_key_params\.aws_kms: AWS KMS CreateKey failed: AccessDeniedException/);
      expect(d.stdout + d.stderr).not.toContain('AWS_SECRET_ACCESS_KEY');
    } finally {
      await d.stop('SIGKILL');
      await a.cleanup();
    }
  });
});
