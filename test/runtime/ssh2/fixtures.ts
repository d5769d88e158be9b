/**
 * Shared setup for the ssh2 patch tests: CAs and identities of each key type,
 * key/certificate files for the OpenSSH client, and an ssh2 Server that
 * presents host certificates and admits users through verifyUserCertAuth.
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { AuthContext, Connection, ParsedKey, Server, ServerChannel } from 'ssh2';
import {
  Certificate,
  encodeOpenSSHPrivateKey,
  formatAuthorizedKey,
  generateKeyPair,
  KeyAlgorithm,
  KeyPair,
  publicKeyBlob,
  signHostCert,
  signUserCert,
  verifyUserCertAuth,
} from '../../../runtime/sshcert';
import { LOGIN } from '../../helpers/sshd';

export const KEY_TYPES: KeyAlgorithm[] = ['ed25519', 'ecdsa-p256', 'rsa'];
export const CLUSTER = 'ssh2-test.example';
export const HOST_UUID = 'a1b2c3d4-0000-4000-8000-00000000c0de';
export const NODE_NAME = 'node-one';
/** A principal of every host certificate made here. */
export const HOST_PRINCIPAL = `${NODE_NAME}.${CLUSTER}`;
export const EXEC_REPLY = 'exec ran on the ssh2 server';

const pairs = new Map<string, KeyPair>();

/** One key pair per (algorithm, role), made once per test file; RSA at 2048 bits to stay quick. */
export function keyPair(alg: KeyAlgorithm, role: string): KeyPair {
  const id = `${alg}/${role}`;
  let pair = pairs.get(id);
  if (!pair) {
    pair = generateKeyPair(alg, { rsaBits: 2048 });
    pairs.set(id, pair);
  }
  return pair;
}

export function caBlob(pair: KeyPair): Buffer {
  return publicKeyBlob(pair.publicKey);
}

export function certLine(blob: Buffer): string {
  return formatAuthorizedKey(blob);
}

export function hostCert(subject: KeyPair, ca: KeyPair): Buffer {
  return signHostCert({
    caPrivateKey: ca.privateKey,
    publicKey: publicKeyBlob(subject.publicKey),
    hostUUID: HOST_UUID,
    nodeName: NODE_NAME,
    clusterName: CLUSTER,
    role: 'Node',
  });
}

export function userCert(subject: KeyPair, ca: KeyPair, opts: { logins?: string[]; now?: Date; agent?: boolean } = {}): Buffer {
  return signUserCert({
    caPrivateKey: ca.privateKey,
    publicKey: publicKeyBlob(subject.publicKey),
    username: 'alice@example.com',
    logins: opts.logins ?? [LOGIN],
    ttlMs: 60 * 60_000,
    now: opts.now,
    permit: { pty: true, portForwarding: false, agentForwarding: opts.agent ?? false, x11Forwarding: false },
    roles: ['access'],
  });
}

/** Writes an OpenSSH private key (0600) and, when given, its certificate as `<name>-cert.pub`; returns the key path. */
export function writeIdentity(dir: string, name: string, pair: KeyPair, cert?: Buffer): string {
  const keyPath = join(dir, name);
  writeFileSync(keyPath, encodeOpenSSHPrivateKey(pair.privateKey, name), { mode: 0o600 });
  chmodSync(keyPath, 0o600);
  writeFileSync(`${keyPath}.pub`, formatAuthorizedKey(publicKeyBlob(pair.publicKey), name) + '\n');
  if (cert) writeFileSync(`${keyPath}-cert.pub`, formatAuthorizedKey(cert, name) + '\n');
  return keyPath;
}

/** A known_hosts file trusting `cas` as host CAs for every host. */
export function writeKnownHosts(dir: string, name: string, cas: KeyPair[]): string {
  const path = join(dir, name);
  writeFileSync(path, cas.map((ca) => `@cert-authority * ${formatAuthorizedKey(caBlob(ca))}`).join('\n') + '\n');
  return path;
}

/** OpenSSH client options: strict host checking against `knownHosts`, the host named by a certificate principal. */
export function strictHostOptions(knownHosts: string, hostKeyAlgorithms?: string): string[] {
  const opts = [
    '-o', 'StrictHostKeyChecking=yes',
    '-o', `UserKnownHostsFile=${knownHosts}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', `HostKeyAlias=${HOST_PRINCIPAL}`,
  ];
  if (hostKeyAlgorithms) opts.push('-o', `HostKeyAlgorithms=${hostKeyAlgorithms}`);
  return opts;
}

export function identityOptions(keyPath: string, withCert = true): string[] {
  return ['-i', keyPath, ...(withCert ? ['-o', `CertificateFile=${keyPath}-cert.pub`] : ['-o', 'CertificateFile=/dev/null'])];
}

export interface AuthRecord {
  username: string;
  algo: string;
  signed: boolean;
  signatureAlgo?: string;
  accepted: boolean;
  reason?: string;
  cert?: Certificate;
}

export interface CertServer {
  port: number;
  auths: AuthRecord[];
  close(): Promise<void>;
}

export interface CertServerOptions {
  hostKeys: ParsedKey[];
  trustedUserCAs: Buffer[];
  /** Runs an exec request; the default writes EXEC_REPLY and exits 0. */
  onExec?: (client: Connection, channel: ServerChannel, command: string, agentRequested: boolean) => void;
}

function recordAuth(ctx: AuthContext, trustedUserCAs: Buffer[], auths: AuthRecord[]): void {
  if (ctx.method !== 'publickey') {
    ctx.reject(['publickey']);
    return;
  }
  const rec: AuthRecord = {
    username: ctx.username,
    algo: ctx.key.algo,
    signed: ctx.signature !== undefined,
    signatureAlgo: ctx.signature ? ctx.signature.subarray(4, 4 + ctx.signature.readUInt32BE(0)).toString() : undefined,
    accepted: false,
  };
  auths.push(rec);
  try {
    rec.cert = verifyUserCertAuth(ctx, { trustedCAs: trustedUserCAs });
    rec.accepted = true;
    ctx.accept();
  } catch (err) {
    rec.reason = `${(err as Error).name}: ${(err as Error).message}`;
    ctx.reject(['publickey']);
  }
}

export async function startCertServer(opts: CertServerOptions): Promise<CertServer> {
  const auths: AuthRecord[] = [];
  const clients = new Set<Connection>();
  const server = new Server({ hostKeys: opts.hostKeys }, (client) => {
    clients.add(client);
    client.on('close', () => clients.delete(client));
    client.on('error', () => undefined);
    client.on('authentication', (ctx) => recordAuth(ctx, opts.trustedUserCAs, auths));
    client.on('session', (accept) => {
      const session = accept();
      let agentRequested = false;
      session.on('auth-agent', (acceptAgent) => {
        agentRequested = true;
        acceptAgent?.();
      });
      session.on('pty', (acceptPty) => acceptPty?.());
      session.on('exec', (acceptExec, _reject, info) => {
        const channel = acceptExec();
        if (opts.onExec) {
          opts.onExec(client, channel, info.command, agentRequested);
          return;
        }
        channel.write(`${EXEC_REPLY}: ${info.command}\n`);
        channel.exit(0);
        channel.end();
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    auths,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of clients) c.end();
        server.close(() => resolve());
      }),
  };
}
