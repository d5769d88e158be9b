/**
 * Patch 4 (server.js Client#openssh_authAgent): after `ssh -A` asks for agent
 * forwarding, the ssh2 server opens an `auth-agent@openssh.com` channel back
 * to the OpenSSH client and talks to the user's ssh-agent through it: it
 * lists the identities and has the agent sign a challenge.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { AgentProtocol, Connection, ParsedKey, ServerChannel } from 'ssh2';
import {
  fingerprintSHA256,
  hostKeyWithCertificate,
  publicKeyBlob,
  SshWriter,
  sshVerify,
} from '../../../runtime/sshcert';
import { Daemon, run, tempDir, waitFor } from '../../helpers/proc';
import { LOGIN, ssh } from '../../helpers/sshd';
import {
  CertServer,
  caBlob,
  certLine,
  hostCert,
  identityOptions,
  keyPair,
  startCertServer,
  strictHostOptions,
  userCert,
  writeIdentity,
  writeKnownHosts,
} from './fixtures';

const dir = tempDir('ssh2-agent-');
const hostCA = keyPair('ed25519', 'host-ca');
const userCA = keyPair('ed25519', 'user-ca');
const agentKey = keyPair('ed25519', 'in-agent');
let agentSock: string;
let agent: Daemon;
let knownHosts: string;
let userKey: string;
let server: CertServer;

/** Opens the agent channel and reports, line by line, what the forwarded agent answered. */
function probeAgent(client: Connection, channel: ServerChannel, _command: string, agentRequested: boolean): void {
  const finish = (lines: string[], code: number) => {
    channel.write(lines.join('\n') + '\n');
    channel.exit(code);
    channel.end();
  };
  client.openssh_authAgent((err, agentChannel) => {
    if (err) return finish([`agent requested: ${agentRequested}`, `agent channel refused: ${err.message}`], 2);
    const proto = new AgentProtocol(true);
    proto.pipe(agentChannel).pipe(proto);
    proto.getIdentities((idErr?: Error, keys?: ParsedKey[]) => {
      if (idErr || !keys || keys.length === 0) return finish([`identities failed: ${idErr?.message ?? 'none'}`], 3);
      const lines = [`agent requested: ${agentRequested}`, ...keys.map((k) => `identity ${fingerprintSHA256(k.getPublicSSH())}`)];
      const challenge = randomBytes(32);
      proto.sign(keys[0], challenge, (signErr?: Error | null, sig?: Buffer) => {
        if (signErr || !sig) return finish([...lines, `sign failed: ${signErr?.message}`], 4);
        const blob = new SshWriter().string(keys[0].type).string(sig).toBuffer();
        lines.push(`challenge signature valid: ${sshVerify(keys[0].getPublicSSH(), challenge, blob)}`);
        agentChannel.end();
        finish(lines, 0);
      });
    });
  });
}

beforeAll(async () => {
  agentSock = join(dir, 'agent.sock');
  agent = Daemon.spawn('ssh-agent', ['-D', '-a', agentSock]);
  await waitFor('ssh-agent socket', () => existsSync(agentSock));
  const agentKeyPath = writeIdentity(dir, 'in-agent', agentKey);
  const added = await run('ssh-add', [agentKeyPath], { env: { SSH_AUTH_SOCK: agentSock } });
  expect(added.code).toBe(0);

  knownHosts = writeKnownHosts(dir, 'known_hosts', [hostCA]);
  const user = keyPair('ed25519', 'user');
  userKey = writeIdentity(dir, 'user', user, userCert(user, userCA, { agent: true }));
  const host = keyPair('ed25519', 'host');
  server = await startCertServer({
    hostKeys: [hostKeyWithCertificate(host.privateKey, certLine(hostCert(host, hostCA)))],
    trustedUserCAs: [caBlob(userCA)],
    onExec: probeAgent,
  });
});
afterAll(async () => {
  await server?.close();
  await agent?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('GIVEN ssh -A with an agent holding a key WHEN the server opens an agent channel THEN it lists the key and the agent signs its challenge', async () => {
  const r = await ssh(server.port, [`${LOGIN}@127.0.0.1`, 'probe-agent'], [
    '-A',
    '-o', `IdentityAgent=${agentSock}`,
    ...strictHostOptions(knownHosts),
    ...identityOptions(userKey),
  ]);

  expect(r.stdout.split('\n').filter(Boolean)).toEqual([
    'agent requested: true',
    `identity ${fingerprintSHA256(publicKeyBlob(agentKey.publicKey))}`,
    'challenge signature valid: true',
  ]);
  expect(r.code).toBe(0);
});

test('GIVEN ssh without agent forwarding WHEN the server asks for an agent channel THEN the client refuses it and the callback gets the error', async () => {
  const r = await ssh(server.port, [`${LOGIN}@127.0.0.1`, 'probe-agent'], [
    '-o', 'ForwardAgent=no',
    '-o', `IdentityAgent=${agentSock}`,
    ...strictHostOptions(knownHosts),
    ...identityOptions(userKey),
  ]);

  const lines = r.stdout.split('\n').filter(Boolean);
  expect(lines[0]).toBe('agent requested: false');
  expect(lines[1]).toMatch(/^agent channel refused: /);
  expect(r.code).toBe(2);
});
