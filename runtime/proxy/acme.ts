/**
 * ACME certificates for the proxy's web listener (`proxy_service.acme`):
 * one certificate for the proxy's public names, ordered from the ACME
 * server (Let's Encrypt by default) with the TLS-ALPN-01 challenge, which
 * the web listener itself answers (web.ts: a ClientHello offering
 * `acme-tls/1` gets `challengeContext`). The account key, the certificate
 * and its key live in `<data_dir>/acme/` (0700, files 0600) and are reused
 * across restarts. The certificate is renewed when less than `renewBefore`
 * of it is left (default: a third of its lifetime), or at once when an
 * operator asks (`teleport acme renew` creates the `renew` file there); each
 * new one is handed to `install` (a context swap: open connections stay).
 * A failure is logged with its reason and retried with backoff; it never
 * stops the proxy, which keeps serving the certificate it has.
 */
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import * as tls from 'node:tls';
import type { AcmeSettings } from '../config';
import { formatDuration } from '../config/duration';
import { BadParameterError } from '../utils/errors';
import { writeFileAtomic } from '../utils/files';
import { Logger } from '../utils/logger';
import { loadKeyPair } from './keypairs';

/** RFC 8737: the ALPN protocol of a TLS-ALPN-01 validation. */
export const ACME_TLS_ALPN = 'acme-tls/1';

/** The first retry after a failure; each next one waits twice as long, up to RETRY_MAX_MS. */
const RETRY_FIRST_MS = 30_000;
const RETRY_MAX_MS = 60 * 60_000;
/** Timers longer than this are split (setTimeout holds at most ~24.8 days). */
const MAX_TIMER_MS = 24 * 60 * 60_000;
/** A renewal due at once after the previous one (renew_before longer than the lifetime) waits this long. */
const MIN_RENEW_INTERVAL_MS = 60 * 60_000;

export interface AcmeOptions extends AcmeSettings {
  /** The DNS names the certificate is for (the proxy's public_addr hosts). */
  domains: string[];
  dataDir: string;
  log: Logger;
}

type AcmeClientModule = typeof import('acme-client');

/**
 * When a certificate valid from `notBefore` to `notAfter` (ms) is to be renewed: `renewBeforeMs`
 * before it expires (default a third of its lifetime: day 60 of Let's Encrypt's 90), but not
 * sooner than MIN_RENEW_INTERVAL_MS after this process last got one (`issuedAt`, 0 for none).
 */
export function renewalDue(notBefore: number, notAfter: number, renewBeforeMs: number | undefined, issuedAt = 0): number {
  const renewBefore = renewBeforeMs ?? (notAfter - notBefore) / 3;
  return Math.max(notAfter - renewBefore, issuedAt + MIN_RENEW_INTERVAL_MS);
}

/** A certificate chain and its key, as PEM. */
export interface PemPair {
  key: string;
  cert: string;
}

/** The files under `<data_dir>/acme/`. */
export function acmeFiles(dataDir: string) {
  const dir = path.join(dataDir, 'acme');
  return {
    dir,
    accountKey: path.join(dir, 'account_key.pem'),
    key: path.join(dir, 'key.pem'),
    cert: path.join(dir, 'cert.pem'),
    /** Present while an operator's renewal request is pending. */
    renewRequest: path.join(dir, 'renew'),
  };
}

/** Resolves when the ACME directory answers with a 200 (its TLS certificate verified), else rejects saying why. */
function reachable(url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { timeout: 30_000 }, (res) => {
      res.resume();
      if (res.statusCode === 200) resolve();
      else reject(new Error(`the ACME directory ${url} answered HTTP ${res.statusCode}`));
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 30s')));
    req.on('error', (err) => reject(new Error(`cannot reach the ACME directory ${url}: ${err.message}`)));
  });
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class AcmeCertificates {
  private readonly files: ReturnType<typeof acmeFiles>;
  /** TLS-ALPN-01 answers being validated, by DNS name. */
  private readonly challenges = new Map<string, tls.SecureContext>();
  private current?: { pair: PemPair; x509: X509Certificate; issuedAt: number };
  private timer?: NodeJS.Timeout;
  private watcher?: fs.FSWatcher;
  private renewing?: Promise<void>;
  private failures = 0;
  private closed = false;
  private install: (pair: PemPair) => void = () => undefined;

  constructor(private readonly opts: AcmeOptions) {
    this.files = acmeFiles(opts.dataDir);
    fs.mkdirSync(this.files.dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(this.files.dir, 0o700);
    this.current = this.loadStored();
  }

  /** The stored certificate when it is still good for the configured names (served at start), else undefined. */
  get certificate(): PemPair | undefined {
    return this.current?.pair;
  }

  /** The context that answers a TLS-ALPN-01 validation for `serverName`, while one is pending. */
  challengeContext(serverName: string | undefined): tls.SecureContext | undefined {
    return serverName === undefined ? undefined : this.challenges.get(serverName.toLowerCase());
  }

  /** Starts obtaining/renewing; `install` gets every new certificate. */
  start(install: (pair: PemPair) => void): void {
    this.install = install;
    try {
      // An operator's `teleport acme renew` creates the request file; the event brings it here at once.
      this.watcher = fs.watch(this.files.dir, (_event, name) => {
        if (name === path.basename(this.files.renewRequest) && fs.existsSync(this.files.renewRequest)) this.renew('an operator asked for it');
      });
      this.watcher.on('error', (err) => this.opts.log.warn('cannot watch for renewal requests', { dir: this.files.dir, error: errorText(err) }));
    } catch (err) {
      this.opts.log.warn('cannot watch for renewal requests', { dir: this.files.dir, error: errorText(err) });
    }
    if (fs.existsSync(this.files.renewRequest)) this.renew('an operator asked for it');
    else this.schedule();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.watcher?.close();
  }

  /** The stored pair if it parses, matches, covers every name and has not expired. */
  private loadStored(): AcmeCertificates['current'] {
    const { key, cert } = this.files;
    if (!fs.existsSync(key) || !fs.existsSync(cert)) return undefined;
    try {
      const loaded = loadKeyPair({ keyFile: key, certFile: cert });
      const x509 = loaded.x509;
      const missing = this.opts.domains.filter((d) => x509.checkHost(d, { subject: 'never', wildcards: false }) === undefined);
      if (missing.length > 0) {
        this.opts.log.info('the stored ACME certificate is not for every public name; ordering a new one', { missing });
        return undefined;
      }
      if (Date.parse(x509.validTo) <= Date.now()) {
        this.opts.log.info('the stored ACME certificate has expired; ordering a new one', { not_after: x509.validTo });
        return undefined;
      }
      return { pair: { key: loaded.key, cert: loaded.cert }, x509, issuedAt: 0 };
    } catch (err) {
      this.opts.log.warn('the stored ACME certificate cannot be used; ordering a new one', { error: errorText(err) });
      return undefined;
    }
  }

  /** When the current certificate is due for renewal (now when there is none). */
  private dueAt(): number {
    if (!this.current) return Date.now();
    const { x509, issuedAt } = this.current;
    return renewalDue(Date.parse(x509.validFrom), Date.parse(x509.validTo), this.opts.renewBeforeMs, issuedAt);
  }

  private schedule(delayMs = this.dueAt() - Date.now()): void {
    clearTimeout(this.timer);
    if (this.closed) return;
    if (delayMs <= 0) {
      this.renew(this.current ? 'the certificate is inside its renewal window' : 'there is no certificate yet');
      return;
    }
    this.timer = setTimeout(() => this.schedule(), Math.min(delayMs, MAX_TIMER_MS));
    this.timer.unref();
  }

  /** Orders a new certificate (one order at a time); on failure, retries with backoff. */
  private renew(why: string): void {
    if (this.renewing || this.closed) return;
    clearTimeout(this.timer);
    const { log } = this.opts;
    log.info('ordering a certificate from the ACME server', { reason: why, domains: this.opts.domains, directory: this.opts.directoryUrl });
    this.renewing = this.order()
      .then((pair) => {
        this.failures = 0;
        if (this.closed) return;
        this.install(pair);
        fs.rmSync(this.files.renewRequest, { force: true });
        log.info('obtained a certificate from the ACME server', {
          serial: this.current!.x509.serialNumber,
          not_after: this.current!.x509.validTo,
          renew_at: new Date(this.dueAt()).toISOString(),
        });
      })
      .catch((err) => {
        const retryMs = Math.min(RETRY_FIRST_MS * 2 ** this.failures, RETRY_MAX_MS);
        this.failures++;
        log.error('cannot obtain a certificate from the ACME server; still serving the previous one', {
          error: errorText(err),
          retry_in: formatDuration(retryMs),
        });
        if (!this.closed) {
          this.timer = setTimeout(() => this.renew('retrying after a failure'), retryMs);
          this.timer.unref();
        }
      })
      .finally(() => {
        this.renewing = undefined;
        if (!this.closed && this.failures === 0) {
          // A request that came while this order ran is served by a new one.
          if (fs.existsSync(this.files.renewRequest)) this.renew('an operator asked for it');
          else this.schedule();
        }
      });
  }

  /** The account key, made and stored the first time (the account is the key's: the CA finds it again by it). */
  private async accountKey(acme: AcmeClientModule): Promise<Buffer> {
    try {
      return fs.readFileSync(this.files.accountKey);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    this.opts.log.info('creating an ACME account key', { file: this.files.accountKey });
    const key = await acme.crypto.createPrivateEcdsaKey('P-256');
    writeFileAtomic(this.files.accountKey, key);
    return key;
  }

  /** One order: account (made once, its key kept), CSR for a new key, TLS-ALPN-01 for each name, then the chain stored and returned. */
  private async order(): Promise<PemPair> {
    // Answered at once when the server is down (the library retries a refused connection for over a minute).
    await reachable(this.opts.directoryUrl);
    // Loaded when first needed: it takes a noticeable part of a second, which no other command should pay.
    const acme = await import('acme-client');
    let lastTrouble = '';
    acme.setLogger((m) => {
      if (/^Caught /.test(m)) lastTrouble = m;
      this.opts.log.debug('acme-client', { msg: m });
    });
    try {
      return await this.orderWith(acme);
    } catch (err) {
      // acme-client 5.4.0 ends its retries of a request that got no response with this TypeError; say what happened.
      if (err instanceof TypeError && /reading 'config'/.test(err.message)) throw new Error(`the ACME server did not answer: ${lastTrouble || 'no response'}`);
      throw err;
    }
  }

  private async orderWith(acme: AcmeClientModule): Promise<PemPair> {
    const client = new acme.Client({ directoryUrl: this.opts.directoryUrl, accountKey: await this.accountKey(acme) });
    const [key, csr] = await acme.crypto.createCsr({ commonName: this.opts.domains[0], altNames: this.opts.domains }, await acme.crypto.createPrivateRsaKey(2048));
    const chain = await client.auto({
      csr,
      ...(this.opts.email ? { email: this.opts.email } : {}),
      // Enabling ACME is agreeing to the CA's terms (README says so), as Teleport does.
      termsOfServiceAgreed: true,
      challengePriority: ['tls-alpn-01'],
      // The CA's own validation is the check; dialing ourselves on 443 is not possible behind NAT or in tests.
      skipChallengeVerification: true,
      challengeCreateFn: async (authz, _challenge, keyAuthorization) => {
        const [challengeKey, challengeCert] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization);
        this.challenges.set(authz.identifier.value.toLowerCase(), tls.createSecureContext({ key: challengeKey, cert: challengeCert }));
      },
      challengeRemoveFn: async (authz) => {
        this.challenges.delete(authz.identifier.value.toLowerCase());
      },
    });
    const pair = { key: key.toString(), cert: chain };
    const x509 = new X509Certificate(chain);
    // The key first: a crash between the two renames leaves a pair that does not match, which loadStored refuses.
    writeFileAtomic(this.files.key, pair.key);
    writeFileAtomic(this.files.cert, pair.cert);
    this.current = { pair, x509, issuedAt: Date.now() };
    return pair;
  }
}

/**
 * `teleport acme renew`: asks the running proxy (same data_dir) to renew its certificate now
 * and waits until it has (the proxy removes the request when the new certificate is in place).
 * Resolves with the new certificate; rejects after `timeoutMs`, the request left in place
 * for the proxy, which retries failures with backoff.
 */
export async function requestRenewal(dataDir: string, timeoutMs: number): Promise<X509Certificate> {
  const files = acmeFiles(dataDir);
  if (!fs.existsSync(files.dir)) {
    throw new BadParameterError(`${files.dir} does not exist: has a proxy with proxy_service.acme enabled run with this data_dir?`);
  }
  fs.writeFileSync(files.renewRequest, `${new Date().toISOString()}\n`, { mode: 0o600 });
  const deadline = Date.now() + timeoutMs;
  while (fs.existsSync(files.renewRequest)) {
    if (Date.now() > deadline) {
      throw new BadParameterError(
        `the proxy has not renewed its certificate within ${formatDuration(timeoutMs)}; the request stays in ${files.renewRequest} and the proxy's log says why`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return new X509Certificate(fs.readFileSync(files.cert));
}
