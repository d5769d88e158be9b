/**
 * `tsh config` against a real cluster (auth, node and proxy with its
 * self-signed HTTPS certificate): after `tsh login --proxy=localhost:...`,
 * the configuration it prints is all stock OpenSSH needs to reach the node
 * as `<login>@<node>.<cluster>` through the proxy with `ssh` and `scp`, both
 * hops' host certificates checked strictly against the cluster's host CA.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatAuthorizedKey, generateKeyPair, publicKeyBlob } from '../../runtime/sshcert';
import { startCluster, TestAuth } from '../helpers/cluster';
import { run, RunResult, tempDir } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';

const NODE = 'test-auth';
const CLUSTER = 'example.com';

describe('tsh config with the OpenSSH client', () => {
  let c: TestAuth;
  let alice: TshUser;
  let work: string;
  let config: string;

  /** Stock ssh/scp with only the generated file as configuration (`-F`), never prompting; the node port given as a user of another port would. */
  const ssh = (file: string, remote: string[]): Promise<RunResult> =>
    run('ssh', ['-F', file, '-o', 'BatchMode=yes', '-p', String(c.nodePort), `${LOGIN}@${NODE}.${CLUSTER}`, ...remote]);
  const scp = (file: string, args: string[]): Promise<RunResult> => run('scp', ['-F', file, '-o', 'BatchMode=yes', '-P', String(c.nodePort), ...args]);

  beforeAll(async () => {
    work = tempDir('tsh-config-');
    // GIVEN a cluster whose proxy serves HTTPS with its self-signed certificate, and a user logged in
    // through "localhost", as the quickstart's next steps have it.
    c = await startCluster({ proxy: {} });
    alice = await TshUser.signUp(c, 'alice', [LOGIN]);
    const p = c.proxyPorts!;
    const login = await alice.tsh(['login', `--proxy=localhost:${p.web},${p.ssh}`, '--insecure', '--user=alice'], `${alice.password}\n${alice.nextCode()}\n`);
    expect(login.code).toBe(0);
    // AND the OpenSSH configuration tsh config prints, in a file of its own.
    const printed = await alice.tsh(['config']);
    expect({ code: printed.code, stderr: printed.stderr }).toEqual({ code: 0, stderr: '' });
    config = path.join(work, 'ssh_config');
    fs.writeFileSync(config, printed.stdout);
  });
  afterAll(async () => {
    alice?.cleanup();
    await c?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('GIVEN the login WHEN tsh config runs THEN it prints one Host block for the cluster with strict host checking through the proxy', async () => {
    const printed = fs.readFileSync(config, 'utf8');
    const tsh = path.join(alice.home, '.tsh');
    const key = path.join(tsh, 'keys', 'localhost', 'alice');
    expect(printed).toContain(
      [
        `Host *.${CLUSTER} !localhost`,
        '    Port 3022',
        `    IdentityFile ${key}`,
        `    CertificateFile ${key}-cert.pub`,
        '    IdentitiesOnly yes',
        `    UserKnownHostsFile ${tsh}/known_hosts`,
        '    StrictHostKeyChecking yes',
        `    ProxyCommand ssh -p ${c.proxyPorts!.ssh} -o IdentityFile=${key} -o CertificateFile=${key}-cert.pub -o IdentitiesOnly=yes ` +
          `-o UserKnownHostsFile=${tsh}/known_hosts -o StrictHostKeyChecking=yes %r@localhost -s proxy:%h:%p@${CLUSTER}`,
        '',
      ].join('\n'),
    );
    // THEN the login's known_hosts line names the proxy host beside the cluster's hosts.
    expect(fs.readFileSync(path.join(tsh, 'known_hosts'), 'utf8')).toMatch(/^@cert-authority example\.com,\*\.example\.com,localhost ssh-ed25519 \S+ type=host$/m);
  });

  it('GIVEN the generated config WHEN stock ssh runs a command on <node>.<cluster> THEN it reaches the node through the proxy', async () => {
    const r = await ssh(config, ['echo "openssh via tsh config: $(id -un)"; exit 3']);
    expect({ stdout: r.stdout, stderr: r.stderr, code: r.code }).toEqual({ stdout: `openssh via tsh config: ${LOGIN}\n`, stderr: '', code: 3 });
  });

  it('GIVEN the generated config WHEN stock scp copies a file to the node and back THEN it arrives unchanged', async () => {
    const src = path.join(work, 'upload.bin');
    const content = randomBytes(48 * 1024);
    fs.writeFileSync(src, content);
    const remote = path.join(work, 'on-node.bin');
    const up = await scp(config, [src, `${LOGIN}@${NODE}.${CLUSTER}:${remote}`]);
    expect({ code: up.code, stderr: up.stderr }).toEqual({ code: 0, stderr: '' });
    const back = path.join(work, 'download.bin');
    const down = await scp(config, [`${LOGIN}@${NODE}.${CLUSTER}:${remote}`, back]);
    expect({ code: down.code, stderr: down.stderr }).toEqual({ code: 0, stderr: '' });
    expect(fs.readFileSync(back).equals(content)).toBe(true);
  });

  it('GIVEN known_hosts trusting another host CA WHEN ssh uses the config THEN host verification fails (the checks are real)', async () => {
    // GIVEN the same config, pointing at a known_hosts whose CA line has another key.
    const other = path.join(work, 'other_known_hosts');
    const wrongCA = formatAuthorizedKey(publicKeyBlob(generateKeyPair('ed25519').publicKey));
    fs.writeFileSync(other, `@cert-authority ${CLUSTER},*.${CLUSTER},localhost ${wrongCA} type=host\n`);
    const otherConfig = path.join(work, 'ssh_config_other_ca');
    fs.writeFileSync(otherConfig, fs.readFileSync(config, 'utf8').split(path.join(alice.home, '.tsh', 'known_hosts')).join(other));
    // WHEN ssh connects THEN OpenSSH refuses the proxy's certificate.
    const r = await ssh(otherConfig, ['echo', 'should-not-run']);
    expect(r.code).toBe(255);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/Host key verification failed/);
  });

  it('GIVEN known_hosts from an older login (no proxy host on the CA line) WHEN tsh config runs THEN it says to log in again', async () => {
    const kh = path.join(alice.home, '.tsh', 'known_hosts');
    const saved = fs.readFileSync(kh, 'utf8');
    try {
      fs.writeFileSync(kh, saved.replace(`,*.${CLUSTER},localhost `, `,*.${CLUSTER} `));
      const r = await alice.tsh(['config']);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(`ERROR: ${kh} does not name the proxy localhost as a host of cluster ${CLUSTER} (it was written by an older tsh login): run tsh login again\n`);
    } finally {
      fs.writeFileSync(kh, saved);
    }
  });
});
