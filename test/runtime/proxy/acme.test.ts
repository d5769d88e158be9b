/**
 * The ACME certificate store and renewal time (runtime/proxy/acme.ts), without an ACME server
 * (test/e2e/proxy-acme.test.ts runs it against Pebble): a stored certificate is served at start
 * only when it parses, matches its key, names every public host and has not expired; anything
 * else (a crash between the two writes included) means a new order, never a broken pair; the
 * directory is made 0700; and renewal falls due a third of the lifetime before expiry, or
 * renew_before, never within the hour after the last one.
 */
import * as fs from 'node:fs';
import { acmeFiles, AcmeCertificates, renewalDue } from '../../../runtime/proxy/acme';
import { selfSignedServerCert } from '../../../runtime/tlsca';
import { logger } from '../../../runtime/utils/logger';
import { scratchDir } from '../../helpers/scratch';

const DAY = 86_400_000;

describe('renewalDue', () => {
  const t0 = Date.parse('2026-01-01T00:00:00Z');
  it("GIVEN Let's Encrypt's 90 days WHEN no renew_before is set THEN it is due on day 60 (a third left)", () => {
    expect(renewalDue(t0, t0 + 90 * DAY, undefined)).toBe(t0 + 60 * DAY);
  });
  it('GIVEN renew_before WHEN set THEN it is due that long before expiry', () => {
    expect(renewalDue(t0, t0 + 90 * DAY, 10 * DAY)).toBe(t0 + 80 * DAY);
  });
  it('GIVEN renew_before longer than the lifetime WHEN the certificate was just issued THEN it is due an hour later, not at once', () => {
    const issuedAt = t0 + 1000;
    expect(renewalDue(t0, t0 + 90 * DAY, 365 * DAY, issuedAt)).toBe(issuedAt + 3600_000);
  });
});

describe('AcmeCertificates: the stored certificate', () => {
  const log = logger('acme-test');
  let dataDir: string;
  beforeEach(() => {
    dataDir = scratchDir('acme-store-');
  });

  /** Stores a pair for `names` valid for `ttlMs` from `from`; `key` overrides the key file (another pair's). */
  async function store(names: string[], ttlMs = 90 * DAY, from = new Date(), key?: string): Promise<string> {
    const pair = await selfSignedServerCert(names, ttlMs, from);
    const f = acmeFiles(dataDir);
    fs.mkdirSync(f.dir, { recursive: true });
    fs.writeFileSync(f.key, key ?? pair.key);
    fs.writeFileSync(f.cert, pair.cert);
    return pair.cert;
  }
  const open = (domains: string[]) => new AcmeCertificates({ directoryUrl: 'https://acme.invalid/dir', domains, dataDir, log });

  it('GIVEN a stored pair for every public name WHEN opened THEN it is served, and the directory is 0700', async () => {
    const cert = await store(['proxy.example.com', 'alt.example.com']);
    fs.chmodSync(acmeFiles(dataDir).dir, 0o755);
    const acme = open(['proxy.example.com', 'alt.example.com']);
    expect(acme.certificate?.cert).toBe(cert);
    expect(fs.statSync(acmeFiles(dataDir).dir).mode & 0o777).toBe(0o700);
  });

  it.each<[string, () => Promise<unknown>, string[]]>([
    ['nothing is stored', async () => undefined, ['proxy.example.com']],
    ['the certificate lacks a public name', () => store(['proxy.example.com']), ['proxy.example.com', 'new.example.com']],
    ['the certificate has expired', () => store(['proxy.example.com'], DAY, new Date(Date.now() - 2 * DAY)), ['proxy.example.com']],
    [
      'the key is another certificate’s (a crash between the two writes)',
      async () => store(['proxy.example.com'], 90 * DAY, new Date(), (await selfSignedServerCert(['proxy.example.com'])).key),
      ['proxy.example.com'],
    ],
  ])('GIVEN %s WHEN opened THEN nothing stored is served (a new order follows)', async (_what, given, domains) => {
    await given();
    expect(open(domains).certificate).toBeUndefined();
  });
});
