/**
 * Session details on the node: the OS account a login runs as, the
 * environment (SendEnv and ~/.tsh/environment), window changes, the idle
 * timeout, and an expired certificate.
 */
import * as fs from 'node:fs';
import { Client } from 'ssh2';
import { CLIENT_HOST_KEY_ALGORITHMS, clientCertIdentity, hostCertVerifier, loadPrivateKey, parseAuthorizedKey } from '../../runtime/sshcert';
import { startCluster, TestAuth, TestNode, writeExpiredUserCert } from '../helpers/cluster';
import { SshUser, sshTo } from '../helpers/openssh';
import { findProcesses } from '../helpers/leftovers';
import { testOsAccount } from '../helpers/osusers';
import { run, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';

const NODE = 'test-auth';
/** A real unprivileged account to log in as (the tests run as root, as CI does). */
const osUser = testOsAccount('session');

describe('node sessions', () => {
  let cluster: TestAuth;
  let work: string;
  let alice: SshUser;

  beforeAll(async () => {
    work = tempDir('node-session-');
    cluster = await startCluster({ authExtra: ['client_idle_timeout: 3s', 'keep_alive_interval: 500ms'], tokens: ['node:session-node-token'] });
    await cluster.tctlOk('users', 'add', 'alice', `${LOGIN},${osUser.name}`);
    alice = await SshUser.create(cluster, work, 'alice', osUser.name);
    fs.mkdirSync(`${osUser.home}/.tsh`, { recursive: true });
    fs.writeFileSync(`${osUser.home}/.tsh/environment`, 'FROM_TSH_ENV=yes\n# a comment\n');
  });
  afterAll(async () => {
    await cluster?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('GIVEN a login as an unprivileged account THEN the session runs as that account with its own groups only', async () => {
    const r = await sshTo(alice, cluster.nodePort!, NODE, ['id -un; id -u; id -G; pwd; echo $HOME $USER $SHELL']);
    const [name, uid, groups, pwd, env] = r.stdout.trim().split('\n');
    expect(name).toBe(osUser.name);
    expect(uid).not.toBe('0');
    expect(groups.split(' ')).not.toContain('0');
    expect(pwd).toBe(osUser.home);
    expect(env).toBe(`${osUser.home} ${osUser.name} /bin/bash`);
    expect(await sshTo(alice, cluster.nodePort!, NODE, ['cat /root/.profile >/dev/null 2>&1 || echo denied'])).toMatchObject({ stdout: 'denied\n' });
  });

  it('GIVEN SendEnv and ~/.tsh/environment THEN LANG/LC_* pass, other names do not, and the file is read only when permitted', async () => {
    const r = await run('ssh', [...alice.options(NODE), '-p', String(cluster.nodePort), '-o', 'SendEnv=LC_PAPER SECRET_THING', `${osUser.name}@127.0.0.1`, 'echo "$LC_PAPER|$SECRET_THING|$FROM_TSH_ENV|$SSH_CONNECTION"'], {
      env: { LC_PAPER: 'de_DE.UTF-8', SECRET_THING: 'nope' },
    });
    const [lc, secret, fromFile, conn] = r.stdout.trim().split('|');
    expect([lc, secret, fromFile]).toEqual(['de_DE.UTF-8', '', '']);
    expect(conn).toMatch(/^127\.0\.0\.1 \d+ 127\.0\.0\.1 \d+$/);

    // THEN a node started with --permit-user-env reads the file.
    const node = await TestNode.create(cluster, { token: 'session-node-token', caPin: await cluster.caPin(), nodeName: 'env-node', extraArgs: ['--permit-user-env'] });
    try {
      node.start();
      await node.ready();
      const withEnv = await sshTo(alice, node.port, 'env-node', ['echo "$FROM_TSH_ENV"']);
      expect(withEnv.stdout).toBe('yes\n');
    } finally {
      await node.cleanup();
    }
  });

  it('GIVEN a pty WHEN the window changes THEN the program sees the new size and a resize event is audited', async () => {
    const key = loadPrivateKey(fs.readFileSync(alice.key, 'utf8'));
    const cert = fs.readFileSync(alice.key + '-cert.pub', 'utf8');
    const hostCA = parseAuthorizedKey((await cluster.tctlOk('auth', 'export', '--type=host')).trim().split(' ').slice(2, 4).join(' ')).blob;
    const client = new Client();
    const output = await new Promise<string>((resolve, reject) => {
      client
        .on('ready', () => {
          client.shell({ rows: 24, cols: 80, term: 'xterm' }, (err, stream) => {
            if (err) return reject(err);
            let out = '';
            stream.on('data', (d: Buffer) => {
              out += d;
              if (out.includes('SIZE-BEFORE 24 80') && !out.includes('resized')) {
                stream.setWindow(50, 132, 0, 0);
                stream.write('echo resized; echo SIZE-AFTER $(stty size)\n');
              }
              if (/SIZE-AFTER \d+ \d+\r?\n/.test(out)) stream.end('exit\n');
            });
            stream.on('close', () => resolve(out));
            stream.write('echo SIZE-BEFORE $(stty size)\n');
          });
        })
        .on('error', reject)
        .connect({
          host: '127.0.0.1',
          port: cluster.nodePort,
          username: osUser.name,
          agent: clientCertIdentity(key, cert),
          algorithms: { serverHostKey: CLIENT_HOST_KEY_ALGORITHMS },
          hostVerifier: hostCertVerifier({ trustedCAs: [hostCA], hostname: NODE }),
        } as never);
    });
    client.end();
    expect(output).toContain('SIZE-AFTER 50 132');
    await waitFor('the resize event', async () => (await cluster.events(['resize'])).some((e) => e.size === '132:50' && e.login === osUser.name));
  });

  it('GIVEN keep_alive_interval THEN the node sends keepalive@openssh.com requests the client answers', async () => {
    const opts = alice.options(NODE).map((o) => (o === 'LogLevel=ERROR' ? 'LogLevel=DEBUG1' : o));
    const r = await run('ssh', [...opts, '-p', String(cluster.nodePort), `${osUser.name}@127.0.0.1`, 'sleep 2; echo awake']);
    expect(r.stdout).toBe('awake\n');
    expect(r.stderr).toMatch(/client_input_global_request: rtype keepalive@openssh\.com want_reply 1/);
  });

  it('GIVEN a session idle longer than client_idle_timeout THEN the node disconnects it, audits why and ends the command the session ran', async () => {
    // GIVEN a command that would outlive the test
    const command = 'sleep 300';

    // WHEN it runs through a session that goes idle
    const r = await sshTo(alice, cluster.nodePort!, NODE, [command]);

    // THEN the client is disconnected, the audit log says why, and the command does not keep running as the account
    expect(r.code).toBe(255);
    await waitFor('the client.disconnect event', async () => (await cluster.events(['client.disconnect'])).some((e) => /idle/.test(e.reason)));
    await waitFor(`"${command}" to end`, () => findProcesses((p) => p.uid === osUser.uid && p.command === command).length === 0);
  });

  it('GIVEN a terminal session idle longer than client_idle_timeout THEN the node disconnects it, ends its program and audits session.end', async () => {
    // GIVEN a program in a terminal that would outlive the test
    const command = 'sleep 301';
    const endsBefore = (await cluster.events(['session.end'])).length;

    // WHEN its session goes idle
    const r = await sshTo(alice, cluster.nodePort!, NODE, [command], ['-tt']);

    // THEN the client is disconnected, the program ends on the hangup, and the session's end is in the audit log
    expect(r.code).toBe(255);
    await waitFor(`"${command}" to end`, () => findProcesses((p) => p.uid === osUser.uid && p.command === command).length === 0);
    await waitFor('the exec and session.end events', async () => {
      const execs = await cluster.events(['exec']);
      const ends = await cluster.events(['session.end']);
      return execs.some((e) => e.command === command && e.exitError === 'signal HUP') && ends.length === endsBefore + 1;
    });
  });

  it('GIVEN an expired certificate from the cluster CA THEN the node refuses it', async () => {
    const key = await writeExpiredUserCert(cluster, work, 'expired', 'alice', [osUser.name]);
    const opts = alice.options(NODE).map((o) => o.replace(alice.key, key));
    const r = await run('ssh', [...opts, '-p', String(cluster.nodePort), `${osUser.name}@127.0.0.1`, 'true']);
    expect(r.code).toBe(255);
    await waitFor('the expired-cert auth event', async () => (await cluster.events(['auth'])).some((e) => /has expired/.test(e.error)));
  });
});
