/**
 * The cluster's TLS front doors, the proxy's web listener (3080) and the auth
 * API (3025), as sslscan and openssl s_client see them: TLS 1.2 and 1.3 only,
 * ECDHE + AEAD suites only, and `teleport.ciphersuites` narrowing them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createAuth, startAuth, TestAuth } from '../helpers/cluster';
import { run, runCli } from '../helpers/proc';

interface Scan {
  protocols: Record<string, boolean>;
  /** sslversion → accepted cipher names. */
  ciphers: Record<string, string[]>;
  groups: string[];
}

/** `sslscan --xml` of 127.0.0.1:port, reduced to protocols, accepted ciphers and key exchange groups. */
async function sslscan(port: number): Promise<Scan> {
  const r = await run('sslscan', ['--no-colour', '--xml=-', '--no-heartbleed', `127.0.0.1:${port}`]);
  if (r.code !== 0) throw new Error(`sslscan exited ${r.code}: ${r.stderr}`);
  const attrs = (tag: string) =>
    [...r.stdout.matchAll(new RegExp(`<${tag} ([^>]*)/>`, 'g'))].map((m) => Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((a) => [a[1], a[2]])));
  const scan: Scan = { protocols: {}, ciphers: {}, groups: [] };
  for (const p of attrs('protocol')) scan.protocols[`${p.type}${p.version}`] = p.enabled === '1';
  for (const c of attrs('cipher')) (scan.ciphers[c.sslversion] ??= []).push(c.cipher);
  scan.groups = attrs('group').map((g) => g.name);
  if (Object.keys(scan.protocols).length === 0) throw new Error(`sslscan said nothing about protocols:\n${r.stdout}`);
  return scan;
}

/** Whether an `openssl s_client` handshake with these options succeeds. */
async function handshake(port: number, ...opts: string[]): Promise<boolean> {
  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...opts], { input: '' });
  return r.code === 0 && /Cipher is (?!\(NONE\))/.test(r.stdout);
}

const WEAK = /CBC|CCM|-SHA$|RC4|DES|NULL/;

describe('TLS front doors with the default policy', () => {
  let auth: TestAuth;
  beforeAll(async () => {
    auth = await startAuth({ proxy: {} });
  });
  afterAll(async () => {
    await auth?.cleanup();
  });

  for (const door of ['web', 'auth'] as const) {
    it(`GIVEN the ${door} listener WHEN sslscan probes it THEN only TLS 1.2/1.3 with ECDHE + AEAD suites and elliptic-curve groups are accepted`, async () => {
      const port = door === 'web' ? auth.proxyPorts!.web : auth.port;
      const scan = await sslscan(port);
      expect(scan.protocols).toEqual({ ssl2: false, ssl3: false, 'tls1.0': false, 'tls1.1': false, 'tls1.2': true, 'tls1.3': true });
      expect(Object.keys(scan.ciphers).sort()).toEqual(['TLSv1.2', 'TLSv1.3']);
      expect(scan.ciphers['TLSv1.2'].sort()).toEqual(['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305']);
      expect(scan.ciphers['TLSv1.3'].sort()).toEqual(['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']);
      for (const c of Object.values(scan.ciphers).flat()) expect(c).not.toMatch(WEAK);
      expect(scan.groups.filter((g) => /ffdhe|x448/.test(g))).toEqual([]);

      // AND a client that offers only a CBC/SHA-1 suite, or only TLS 1.1, gets no handshake
      expect(await handshake(port, '-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384@SECLEVEL=0')).toBe(false);
      expect(await handshake(port, '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0')).toBe(false);
      expect(await handshake(port, '-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256')).toBe(true);
    });
  }
});

describe('TLS front doors narrowed by teleport.ciphersuites', () => {
  let auth: TestAuth;
  beforeAll(async () => {
    auth = await startAuth({
      proxy: {},
      teleportExtra: ['ciphersuites:', '  - tls-ecdhe-ecdsa-with-aes-256-gcm-sha384', '  - tls-ecdhe-ecdsa-with-chacha20-poly1305', '  - tls-aes-256-gcm-sha384'],
    });
  });
  afterAll(async () => {
    await auth?.cleanup();
  });

  for (const door of ['web', 'auth'] as const) {
    it(`GIVEN two TLS 1.2 suites and one TLS 1.3 suite WHEN the ${door} listener is probed THEN it accepts exactly those`, async () => {
      const port = door === 'web' ? auth.proxyPorts!.web : auth.port;
      const scan = await sslscan(port);
      expect(scan.ciphers['TLSv1.2'].sort()).toEqual(['ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305']);
      expect(scan.ciphers['TLSv1.3']).toEqual(['TLS_AES_256_GCM_SHA384']);
      expect(await handshake(port, '-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256')).toBe(false);
      expect(await handshake(port, '-tls1_3', '-ciphersuites', 'TLS_AES_128_GCM_SHA256')).toBe(false);
      expect(await handshake(port, '-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-GCM-SHA384')).toBe(true);
    });
  }

  it('GIVEN the narrowed suites THEN tctl and the proxy still talk to the auth API', async () => {
    expect(await auth.tctlOk('status')).toMatch(/Cluster\s+example\.com/);
    const r = await run('curl', ['-sk', `https://127.0.0.1:${auth.proxyPorts!.web}/webapi/ping`]);
    expect(JSON.parse(r.stdout)).toMatchObject({ auth: { type: 'local' } });
  });
});

describe('teleport.ciphersuites with a weak suite', () => {
  it('GIVEN a CBC suite in teleport.yaml WHEN teleport starts THEN it exits non-zero naming file:line and the reason', async () => {
    const auth = await createAuth({ proxy: {}, teleportExtra: ['ciphersuites:', '  - tls-ecdhe-ecdsa-with-aes-128-cbc-sha'] });
    try {
      const line = fs.readFileSync(auth.configPath, 'utf8').split('\n').indexOf('    - tls-ecdhe-ecdsa-with-aes-128-cbc-sha') + 1;
      const r = await runCli('teleport', ['start', '-c', auth.configPath]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`${auth.configPath}:${line}:`);
      expect(r.stderr).toMatch(/weak TLS cipher suite \(CBC mode, SHA-1 MAC\)/);
      expect(fs.existsSync(path.join(auth.dataDir, 'backend'))).toBe(false);
    } finally {
      await auth.cleanup();
    }
  });
});
