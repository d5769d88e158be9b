/**
 * Writes issued credentials to disk in the formats `tctl auth sign` offers:
 * `openssh` (key + `-cert.pub`), `file` (one identity file) and `tls`.
 * Private keys are written 0600 through a temporary file and a rename, so a
 * failure leaves nothing half-written.
 */
import * as fs from 'node:fs';
import { writeFileAtomic } from '../utils/files';
import { KeyObject } from 'node:crypto';
import { encodeOpenSSHPrivateKey } from '../sshcert';

export type SignFormat = 'openssh' | 'file' | 'tls';

export interface Credentials {
  sshKey: KeyObject;
  sshCert: string;
  tlsKey?: string;
  tlsCert?: string;
  tlsCACerts: string[];
  /** `@cert-authority` lines for known_hosts. */
  knownHosts: string[];
}

/** Writes the files and returns their paths. */
export function writeCredentials(out: string, format: SignFormat, c: Credentials): string[] {
  const line = (s: string) => (s.endsWith('\n') ? s : s + '\n');
  const files: [string, string][] = [];
  if (format === 'openssh') {
    files.push([out, encodeOpenSSHPrivateKey(c.sshKey)], [out + '-cert.pub', line(c.sshCert)]);
  } else if (format === 'file') {
    files.push([
      out,
      encodeOpenSSHPrivateKey(c.sshKey) + line(c.sshCert) + (c.tlsCert ?? '') + (c.tlsKey ?? '') + c.tlsCACerts.join('') + c.knownHosts.map(line).join(''),
    ]);
  } else {
    if (!c.tlsKey || !c.tlsCert) throw new Error('no TLS certificate was issued');
    files.push([out + '.key', c.tlsKey], [out + '.crt', c.tlsCert], [out + '.cas', c.tlsCACerts.join('')]);
  }
  const written: string[] = [];
  try {
    for (const [f, data] of files) {
      writeFileAtomic(f, data);
      written.push(f);
    }
  } catch (err) {
    for (const f of written) fs.rmSync(f, { force: true });
    throw err;
  }
  return written;
}
