/**
 * tsh and tctl load the code a command runs when it runs it (runtime/utils/lazy.ts): a command that
 * prints help, a version or the saved login does not load X.509, the SSH transport, the storage backends
 * or the AWS SDK. Asserted on the modules the process really loaded (its require cache at exit), so a
 * static import that brings one back fails here. The cost is measured in bench/start.ts.
 */
import { generateKeyPairSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { saveProfile } from '../../../runtime/client/profile';
import { saveKeys } from '../../../runtime/client/keystore';
import { formatAuthorizedKey, publicKeyBlob, signUserCert } from '../../../runtime/sshcert';
import { cliPath, run, tempDir } from '../../helpers/proc';

/** Packages no simple command needs. */
const HEAVY = ['@peculiar/x509', 'ssh2', '@noble/post-quantum', 'better-sqlite3', '@aws-sdk', '@simplewebauthn/server', 'etcd3', 'node-pty', 'prom-client', 'qrcode', 'acme-client', 'ws'];
/** Read a saved login: the profile is YAML checked by its zod schema. */
const PROFILE_READERS = ['yaml', 'zod'];

const packagesIn = (files: string[]) =>
  new Set(files.map((f) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(f)?.[1]).filter((p): p is string => !!p));

let dir: string;
let preload: string;
beforeAll(() => {
  dir = tempDir('startup-modules-');
  preload = path.join(dir, 'loaded.js');
  // At exit, the files in the require cache: every CommonJS module the command loaded.
  fs.writeFileSync(preload, "process.on('exit', () => require('fs').writeFileSync(process.env.LOADED_OUT, JSON.stringify(Object.keys(require.cache))));\n");
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs a CLI command; its exit status, output and the files it loaded. */
async function loaded(cli: 'tsh' | 'tctl', args: string[], env: NodeJS.ProcessEnv = {}) {
  const out = path.join(dir, `loaded-${cli}-${args.join('_').replace(/[^\w-]/g, '')}.json`);
  const r = await run(process.execPath, ['--require', preload, cliPath(cli), ...args], { env: { TELEPORT_HOME: path.join(dir, 'no-login'), ...env, LOADED_OUT: out } });
  const files = JSON.parse(fs.readFileSync(out, 'utf8')) as string[];
  return { ...r, files, packages: packagesIn(files) };
}

describe.each([
  ['tsh', ['version']],
  ['tsh', ['--help']],
  ['tctl', ['--help']],
  ['tctl', ['--version']],
  ['tctl', ['users', '--help']],
] as const)('%s %s', (cli, args) => {
  test('loads commander and nothing heavy', async () => {
    // WHEN the command runs
    const r = await loaded(cli, [...args]);
    // THEN it succeeds, having loaded commander (the hook saw the packages) but none of the heavy ones
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.packages).toContain('commander');
    expect([...r.packages].filter((p) => HEAVY.includes(p) || PROFILE_READERS.includes(p))).toEqual([]);
  });
});

test('tsh status of a saved login reads the profile and the key without loading X.509 or the SSH transport', async () => {
  // GIVEN a saved login: a profile (the current one) and a key with a user certificate from some CA
  const home = path.join(dir, 'login');
  const ca = generateKeyPairSync('ed25519');
  const user = generateKeyPairSync('ed25519');
  const cert = signUserCert({
    caPrivateKey: ca.privateKey,
    publicKey: publicKeyBlob(user.publicKey),
    username: 'alice',
    logins: ['alice'],
    permit: { pty: true, portForwarding: true, agentForwarding: false, x11Forwarding: false },
    roles: ['access'],
  });
  saveProfile({ web_proxy_scheme: 'https', web_proxy_addr: 'proxy.example.com:3080', ssh_proxy_addr: 'proxy.example.com:3023', user: 'alice', cluster: 'example.com' }, home);
  saveKeys('proxy.example.com', 'alice', { privateKey: user.privateKey, sshCert: formatAuthorizedKey(cert), tlsCAs: [] }, home);
  // WHEN tsh status runs
  const r = await loaded('tsh', ['status'], { TELEPORT_HOME: home });
  // THEN it prints the login, having read the profile (YAML, zod) and the certificate, and loaded nothing heavy
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
  expect(r.stdout).toContain('alice');
  for (const p of PROFILE_READERS) expect(r.packages).toContain(p);
  expect([...r.packages].filter((p) => HEAVY.includes(p))).toEqual([]);
  expect(r.files.some((f) => f.endsWith(path.join('runtime', 'sshcert', 'cert.js')))).toBe(true);
  // AND of zod's locales only English, the one its messages use (patches/zod+4.6.7.patch)
  expect(r.files.filter((f) => f.includes(`${path.sep}zod${path.sep}v4${path.sep}locales${path.sep}`)).map((f) => path.basename(f))).toEqual(['en.cjs']);
});

test("zod's other locales load at their first use, and work (patches/zod+4.6.7.patch)", async () => {
  // WHEN a program loads zod and then asks for a locale
  const r = await run(process.execPath, [
    '-e',
    `const { z } = require('zod');
     const before = Object.keys(require.cache).filter((f) => f.includes('/locales/')).length;
     z.config(z.locales.de());
     const message = z.string().safeParse(1).error.issues[0].message;
     console.log(JSON.stringify({ before, after: Object.keys(require.cache).filter((f) => f.includes('/locales/')).length, message }));`,
  ]);
  // THEN only English was loaded before, every locale after, and the German one speaks German
  expect(r.code).toBe(0);
  const out = JSON.parse(r.stdout) as { before: number; after: number; message: string };
  expect(out.before).toBe(1);
  expect(out.after).toBeGreaterThan(10);
  expect(out.message).toMatch(/Ungültige Eingabe/);
});
