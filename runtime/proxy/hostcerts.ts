/**
 * Host certificates of a proxy in recording mode. The proxy terminates the
 * user's SSH connection to a target (forward.ts), so it must present a host
 * certificate from the cluster's host CA for the name the user dialled, as
 * the target itself would: the auth server signs one (`POST /v1/hosts/certs`,
 * allowed to a proxy only while `session_recording: proxy`) for a key this
 * process made and keeps in memory. Certificates are reused until shortly
 * before they expire, and while they come from the host CA's signing key (a
 * host CA rotation moves it: a new one is signed then).
 */
import type { ParsedKey } from 'ssh2';
import type { AuthClient } from '../auth/client';
import { formatAuthorizedKey, generateKeyPair, hostKeyWithCertificate, parseCertificate, publicKeyBlob } from '../sshcert';

const CERT_TTL_MS = 3600_000;
/** A certificate is renewed once less than this is left of it. */
const RENEW_BEFORE_MS = 600_000;
const NS_PER_MS = 1_000_000;
const MAX_CACHED = 1000;

export class ForwardingHostKeys {
  private readonly key = generateKeyPair('ed25519').privateKey;
  private readonly certs = new Map<string, Promise<{ hostKey: ParsedKey; expires: number; ca: Buffer }>>();

  /** `signingKey`: the host CA's signing key now (unknown: certificates are reused whatever signed them). */
  constructor(
    private readonly client: Pick<AuthClient, 'post'>,
    private readonly signingKey: () => Buffer | undefined = () => undefined,
  ) {}

  /** A host key presenting a host certificate that lists `names`. */
  async forNames(names: string[]): Promise<ParsedKey> {
    const unique = [...new Set(names)].sort();
    const id = unique.join('\n');
    const cached = this.certs.get(id);
    if (cached) {
      const c = await cached.catch(() => undefined);
      const signing = this.signingKey();
      if (c && c.expires - Date.now() > RENEW_BEFORE_MS && (!signing || signing.equals(c.ca))) return c.hostKey;
      if (this.certs.get(id) === cached) this.certs.delete(id);
    }
    if (this.certs.size >= MAX_CACHED) this.certs.clear();
    const issued = this.issue(unique);
    this.certs.set(id, issued);
    issued.catch(() => this.certs.get(id) === issued && this.certs.delete(id));
    return (await issued).hostKey;
  }

  private async issue(names: string[]): Promise<{ hostKey: ParsedKey; expires: number; ca: Buffer }> {
    const res = await this.client.post<{ cert: string }>('/v1/hosts/certs', {
      public_key: Buffer.from(formatAuthorizedKey(publicKeyBlob(this.key))).toString('base64'),
      host_names: names,
      ttl: CERT_TTL_MS * NS_PER_MS,
    });
    const line = Buffer.from(res.cert, 'base64').toString();
    const cert = parseCertificate(line);
    return { hostKey: hostKeyWithCertificate(this.key, line), expires: Number(cert.validBefore) * 1000, ca: cert.signatureKey };
  }
}
