/**
 * `tsh config`'s facts: the paths it writes into ssh_config and into the
 * ProxyCommand (a shell command whose `%` tokens OpenSSH expands and whose
 * options it splits on spaces) must be plain, or it refuses; the real
 * configuration against stock OpenSSH is tested end to end in
 * test/e2e/tsh-config.test.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CurrentLogin } from '../../../runtime/client/cluster';
import { saveHostCAs } from '../../../runtime/client/keystore';
import { formatSshConfig, sshConfigFacts } from '../../../runtime/client/sshconfig';
import { formatAuthorizedKey, generateKeyPair, publicKeyBlob } from '../../../runtime/sshcert';
import { tempDir } from '../../helpers/proc';

const profile = {
  web_proxy_scheme: 'https' as const,
  web_proxy_addr: 'localhost:3080',
  ssh_proxy_addr: 'localhost:3023',
  user: 'joe',
  cluster: 'box',
};

describe('tsh config facts', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir('sshconfig-');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A login whose state lives in `home`, with the cluster's known_hosts line naming the proxy. */
  const loginIn = (home: string): CurrentLogin => {
    saveHostCAs([{ cluster: 'box', key: publicKeyBlob(generateKeyPair('ed25519').publicKey) }], 'localhost', home);
    return { profile, key: undefined as unknown as CurrentLogin['key'], home, cluster: profile.cluster };
  };

  it('GIVEN a plain state directory THEN the block names its files and reaches nodes through the proxy', () => {
    const home = path.join(dir, 'tsh');
    const text = formatSshConfig(sshConfigFacts(loginIn(home)));
    expect(text.split('\n').slice(2)).toEqual([
      'Host *.box !localhost',
      '    Port 3022',
      `    IdentityFile ${home}/keys/localhost/joe`,
      `    CertificateFile ${home}/keys/localhost/joe-cert.pub`,
      '    IdentitiesOnly yes',
      `    UserKnownHostsFile ${home}/known_hosts`,
      '    StrictHostKeyChecking yes',
      `    ProxyCommand ssh -p 3023 -o IdentityFile=${home}/keys/localhost/joe -o CertificateFile=${home}/keys/localhost/joe-cert.pub ` +
        `-o IdentitiesOnly=yes -o UserKnownHostsFile=${home}/known_hosts -o StrictHostKeyChecking=yes %r@localhost -s proxy:%h:%p@box`,
      '',
    ]);
  });

  it.each([
    ['a space', 'my tsh'],
    ['a % (an OpenSSH token)', 'tsh%h'],
    ['a quote', "tsh'x"],
  ])('GIVEN a state directory with %s THEN tsh config refuses, naming the path and the way out', (_what, name) => {
    const home = path.join(dir, name);
    expect(() => sshConfigFacts(loginIn(home))).toThrow(
      `tsh config: the path ${JSON.stringify(path.join(home, 'keys', 'localhost', 'joe'))} has characters ssh_config cannot take here (only letters, digits and _ . / @ + = , : -); set TELEPORT_HOME to a directory without them`,
    );
  });

  it('GIVEN known_hosts lines that do not name the proxy THEN tsh config says to log in again', () => {
    const home = path.join(dir, 'tsh');
    const login = loginIn(home);
    const kh = path.join(home, 'known_hosts');
    fs.writeFileSync(kh, `@cert-authority box,*.box ${formatAuthorizedKey(publicKeyBlob(generateKeyPair('ed25519').publicKey))} type=host\n`);
    expect(() => sshConfigFacts(login)).toThrow(`${kh} does not name the proxy localhost as a host of cluster box (it was written by an older tsh login): run tsh login again`);
  });
});
