/**
 * The ssh2 patches are carried by patch-package: the patch file exists, is
 * applied on `npm install`/`npm ci` (postinstall), and the installed ssh2 is
 * the patched one (the patch reverses cleanly and the patched entry points
 * are there).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../../helpers/proc';

const PATCH = join(ROOT, 'patches', 'ssh2+1.17.0.patch');

test('GIVEN the repository WHEN installing THEN patch-package applies patches/ssh2+1.17.0.patch on postinstall for the pinned ssh2', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'));

  expect(existsSync(PATCH)).toBe(true);
  expect(pkg.scripts.postinstall).toMatch(/^patch-package( && |$)/);
  // A production dependency: the AMI installs the package with --omit=dev and the postinstall still runs.
  expect(pkg.dependencies['patch-package']).toBeDefined();
  expect(pkg.dependencies.ssh2).toBe('1.17.0');
  expect(lock.packages['node_modules/ssh2'].version).toBe('1.17.0');
  const patched = [...readFileSync(PATCH, 'utf8').matchAll(/^diff --git a\/(\S+)/gm)].map((m) => m[1]);
  expect(patched.sort()).toEqual(
    [
      'node_modules/ssh2/lib/client.js',
      'node_modules/ssh2/lib/protocol/Protocol.js',
      'node_modules/ssh2/lib/protocol/constants.js',
      'node_modules/ssh2/lib/protocol/kex.js',
      'node_modules/ssh2/lib/protocol/utils.js',
      'node_modules/ssh2/lib/server.js',
    ].sort(),
  );
});

test('GIVEN the installed ssh2 WHEN the patch is checked in reverse THEN it applies, so every patched hunk is installed', () => {
  const r = spawnSync('git', ['apply', '--check', '--reverse', PATCH], { cwd: ROOT, encoding: 'utf8' });

  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
});

test('GIVEN the installed ssh2 WHEN loading it THEN the patched behaviours are present', () => {
  const IncomingClient = require('ssh2/lib/server.js').IncomingClient;
  const { certBaseAlgo } = require('ssh2/lib/protocol/utils.js');
  const { SUPPORTED_SERVER_HOST_KEY, DEFAULT_SERVER_HOST_KEY } = require('ssh2/lib/protocol/constants.js');
  const protocolSource = readFileSync(require.resolve('ssh2/lib/protocol/Protocol.js'), 'utf8');

  expect(typeof IncomingClient.prototype.openssh_authAgent).toBe('function');
  expect(certBaseAlgo('rsa-sha2-512-cert-v01@openssh.com')).toBe('rsa-sha2-512');
  expect(certBaseAlgo('ssh-ed25519')).toBe('ssh-ed25519');
  expect(SUPPORTED_SERVER_HOST_KEY).toEqual(expect.arrayContaining(['ssh-ed25519-cert-v01@openssh.com', 'rsa-sha2-512-cert-v01@openssh.com']));
  expect(DEFAULT_SERVER_HOST_KEY.filter((a: string) => a.includes('-cert-'))).toEqual([]);
  expect(protocolSource).toContain("'ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,'");
});
