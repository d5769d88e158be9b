/**
 * The forwarded agent a recording proxy logs in to the target with
 * (runtime/proxy/forwardagent.ts), against the agent tsh forwards
 * (clientCertIdentity's agent stream): it lists and signs with the
 * certificate the user logged in with, and nothing else.
 */
import type { Duplex } from 'node:stream';
import type { ParsedKey } from 'ssh2';
import { ForwardedAgent, type AgentOpener } from '../../../runtime/proxy/forwardagent';
import { clientCertIdentity, formatAuthorizedKey, generateKeyPair, parseCertificate, publicKeyBlob, signUserCert, sshVerify } from '../../../runtime/sshcert';
import { SshWriter } from '../../../runtime/sshcert/wire';

const ca = generateKeyPair('ed25519');

function userCert(user: string) {
  const pair = generateKeyPair('ed25519');
  const blob = signUserCert({
    caPrivateKey: ca.privateKey,
    publicKey: publicKeyBlob(pair.publicKey),
    username: user,
    logins: ['root'],
    ttlMs: 3600_000,
    permit: { pty: true, portForwarding: true, agentForwarding: true, x11Forwarding: false },
    roles: ['admin'],
  });
  return { privateKey: pair.privateKey, line: formatAuthorizedKey(blob), cert: parseCertificate(formatAuthorizedKey(blob)) };
}

/** The agent `tsh ssh -A` forwards for `holder`, one fresh channel per open. */
function tshAgent(holder: ReturnType<typeof userCert>): { open: AgentOpener; opened: () => number } {
  const agent = clientCertIdentity(holder.privateKey, holder.line);
  let count = 0;
  return {
    open: (cb) => {
      count++;
      agent.getStream!((err, stream) => cb(err ?? undefined, stream as Duplex));
    },
    opened: () => count,
  };
}

const identities = (a: ForwardedAgent) => new Promise<ParsedKey[]>((resolve, reject) => a.getIdentities((err, keys) => (err ? reject(err) : resolve((keys ?? []) as ParsedKey[]))));
const sign = (a: ForwardedAgent, key: ParsedKey, data: Buffer) => new Promise<Buffer>((resolve, reject) => a.sign(key, data, {}, (err, sig) => (err ? reject(err) : resolve(sig!))));

describe('ForwardedAgent', () => {
  const alice = userCert('alice');

  it('GIVEN the agent holds the login certificate WHEN listed and asked to sign THEN it offers exactly that certificate and its signature verifies', async () => {
    // GIVEN
    const fwd = new ForwardedAgent(tshAgent(alice).open, alice.cert);
    // WHEN
    const keys = await identities(fwd);
    // THEN
    expect(keys.map((k) => k.getPublicSSH().toString('base64'))).toEqual([alice.cert.blob.toString('base64')]);
    const data = Buffer.from('session id and userauth request');
    const raw = await sign(fwd, keys[0], data);
    const blob = new SshWriter().string('ssh-ed25519').string(raw).toBuffer();
    expect(sshVerify(alice.cert.publicKey, data, blob)).toBe(true);
  });

  it('GIVEN the agent holds another certificate WHEN listed THEN it is refused, naming the certificate the user logged in with', async () => {
    // GIVEN an agent of bob's, on a connection alice logged in with
    const fwd = new ForwardedAgent(tshAgent(userCert('bob')).open, alice.cert);
    // WHEN / THEN
    await expect(identities(fwd)).rejects.toThrow('the forwarded agent does not hold the certificate "alice" used to log in to the proxy');
  });

  it('GIVEN a key other than the login certificate WHEN asked to sign with it THEN it refuses without asking the agent', async () => {
    // GIVEN
    const agent = tshAgent(alice);
    const fwd = new ForwardedAgent(agent.open, alice.cert);
    const [own] = await identities(fwd);
    const before = agent.opened();
    const foreign = Object.create(own, { getPublicSSH: { value: () => userCert('mallory').cert.blob } }) as ParsedKey;
    // WHEN / THEN
    await expect(sign(fwd, foreign, Buffer.from('x'))).rejects.toThrow('the proxy signs only with the certificate the user logged in with');
    expect(agent.opened()).toBe(before);
  });

  it('GIVEN no agent forwarding to the target was asked for WHEN the target asks for the agent THEN it gets none', async () => {
    const fwd = new ForwardedAgent(tshAgent(alice).open, alice.cert);
    await expect(new Promise((resolve, reject) => fwd.getStream((err, s) => (err ? reject(err) : resolve(s))))).rejects.toThrow('agent forwarding to the target was not asked for');
  });
});
