/**
 * PAM on the node (ssh_service.pam): the account check and the PAM session
 * wrap every session, and PAM's environment reaches the user's program.
 * The test writes its own services to /etc/pam.d (CI runs as root).
 */
import * as fs from 'node:fs';
import { findPamLauncher } from '../../runtime/node/pam';
import { startAuth, TestAuth, TestNode } from '../helpers/cluster';
import { SshUser, sshTo } from '../helpers/openssh';
import { tempDir } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';

const ALLOW = 'teleport-test-pam-allow';
const DENY = 'teleport-test-pam-deny';

describe('PAM on the node', () => {
  let auth: TestAuth;
  let work: string;
  let alice: SshUser;
  const nodes: TestNode[] = [];

  const startNode = async (service: string, name: string) => {
    const node = await TestNode.create(auth, {
      token: 'pam-token-1',
      caPin: await auth.caPin(),
      nodeName: name,
      sshExtra: ['pam:', '  enabled: yes', `  service_name: ${service}`],
    });
    nodes.push(node);
    node.start();
    await node.ready();
    return node;
  };

  beforeAll(async () => {
    work = tempDir('pam-');
    fs.writeFileSync(`${work}/pam_env.conf`, 'TELEPORT_PAM_TEST DEFAULT=set-by-pam\n');
    fs.writeFileSync(`/etc/pam.d/${ALLOW}`, `account required pam_permit.so\nsession required pam_env.so readenv=0 conffile=${work}/pam_env.conf\n`);
    fs.writeFileSync(`/etc/pam.d/${DENY}`, 'account required pam_deny.so\nsession required pam_permit.so\n');
    auth = await startAuth({ tokens: ['node:pam-token-1'] });
    await auth.tctlOk('users', 'add', 'alice', LOGIN);
    alice = await SshUser.create(auth, work, 'alice', LOGIN);
  });
  afterAll(async () => {
    for (const n of nodes) await n.cleanup();
    await auth?.cleanup();
    fs.rmSync(`/etc/pam.d/${ALLOW}`, { force: true });
    fs.rmSync(`/etc/pam.d/${DENY}`, { force: true });
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('GIVEN this host has PAM THEN the launcher was built at install', () => {
    expect(findPamLauncher()).toMatch(/build\/pam-launch$/);
  });

  it('GIVEN a PAM service that sets the environment THEN commands and shells see it', async () => {
    const node = await startNode(ALLOW, 'pam-node');
    const exec = await sshTo(alice, node.port, 'pam-node', ['echo "$TELEPORT_PAM_TEST"; exit 4']);
    expect(exec.stdout).toBe('set-by-pam\n');
    expect(exec.code).toBe(4);
    const shell = await sshTo(alice, node.port, 'pam-node', [], ['-tt'], 'echo "pam:$TELEPORT_PAM_TEST"\nexit\n');
    expect(shell.stdout).toContain('pam:set-by-pam');
  });

  it('GIVEN a PAM service whose account check denies THEN the session does not start', async () => {
    const node = await startNode(DENY, 'deny-node');
    const r = await sshTo(alice, node.port, 'deny-node', ['echo should-not-run']);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/account refused/);
    expect(r.code).toBe(1);
  });
});
