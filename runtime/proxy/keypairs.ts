/**
 * The web proxy's configured certificates (`https_keypairs`, or
 * `https_cert_file` + `https_key_file`): the first is served by default; the
 * others to clients whose TLS server name (SNI) one of their DNS names
 * matches, an exact name before a wildcard, the first pair listed winning a
 * tie. The switch keeps the server's protocol versions and cipher suites.
 */
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as tls from 'node:tls';
import { BadParameterError } from '../utils/errors';

export interface KeyPairFiles {
  keyFile: string;
  certFile: string;
}

export interface ServedKeyPairs {
  key: string;
  cert: string;
  /** Present when there is more than one pair. */
  SNICallback?: (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) => void;
}

function read(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new BadParameterError(`https_keypairs: cannot read the ${what} ${JSON.stringify(file)}: ${(err as Error).message}`);
  }
}

/** Reads and checks every pair (a key that does not match its certificate is an error naming both files). */
export function loadKeyPairs(pairs: readonly KeyPairFiles[]): ServedKeyPairs {
  if (pairs.length === 0) throw new BadParameterError('https_keypairs: no key pair to serve');
  const loaded = pairs.map((p) => {
    const key = read(p.keyFile, 'key_file');
    const cert = read(p.certFile, 'cert_file');
    let context: tls.SecureContext;
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(cert);
      context = tls.createSecureContext({ key, cert });
    } catch (err) {
      throw new BadParameterError(
        `https_keypairs: key_file ${JSON.stringify(p.keyFile)} and cert_file ${JSON.stringify(p.certFile)} are not a usable pair: ${(err as Error).message}`,
      );
    }
    return { key, cert, context, x509 };
  });
  const [first] = loaded;
  if (loaded.length === 1) return { key: first.key, cert: first.cert };
  // The certificate's DNS names only (not its subject CN), `*.` covering one label, as browsers match them.
  const matches = (p: (typeof loaded)[number], name: string, wildcards: boolean) =>
    p.x509.checkHost(name, { subject: 'never', wildcards, partialWildcards: false }) !== undefined;
  const pick = (name: string) => loaded.find((p) => matches(p, name, false)) ?? loaded.find((p) => matches(p, name, true));
  return {
    key: first.key,
    cert: first.cert,
    // No match (or no SNI): the default, first, pair.
    SNICallback: (servername, cb) => cb(null, servername ? pick(servername)?.context : undefined),
  };
}
