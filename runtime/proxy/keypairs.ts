/**
 * The web proxy's configured certificates (`https_keypairs`, or
 * `https_cert_file` + `https_key_file`): the first is served by default; the
 * others to clients whose TLS server name (SNI) one of their DNS names
 * matches, an exact name before a wildcard, the first pair listed winning a
 * tie. The switch keeps the server's protocol versions and cipher suites.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as tls from 'node:tls';
import { BadParameterError } from '../utils/errors';
import { fileErrorText } from '../utils/files';

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

/** A pair that cannot be served: `field` is the setting it is about, `detail` says why (without the `https_keypairs:` prefix). */
export class KeyPairError extends BadParameterError {
  constructor(
    readonly field: 'key_file' | 'cert_file',
    readonly detail: string,
  ) {
    super(`https_keypairs: ${detail}`);
  }
}

function read(file: string, field: 'key_file' | 'cert_file'): string {
  try {
    if (!fs.statSync(file).isFile()) throw new KeyPairError(field, `the ${field} ${JSON.stringify(file)} is not a file`);
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof KeyPairError) throw err;
    throw new KeyPairError(field, `cannot read the ${field} ${JSON.stringify(file)}: ${fileErrorText(err)}`);
  }
}

interface LoadedPair {
  key: string;
  cert: string;
  context: tls.SecureContext;
  x509: X509Certificate;
}

/** Reads one pair and checks that the certificate parses, the key parses and the two belong together. */
export function loadKeyPair(p: KeyPairFiles): LoadedPair {
  const key = read(p.keyFile, 'key_file');
  const cert = read(p.certFile, 'cert_file');
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new KeyPairError('cert_file', `the cert_file ${JSON.stringify(p.certFile)} is not a PEM certificate: ${(err as Error).message}`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    // The parser's message may quote the input: say only what it is not.
    throw new KeyPairError('key_file', `the key_file ${JSON.stringify(p.keyFile)} is not a PEM private key (an unencrypted PKCS#8, PKCS#1 or SEC1 key)`);
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new KeyPairError('key_file', `the key_file ${JSON.stringify(p.keyFile)} does not match the cert_file ${JSON.stringify(p.certFile)} (the certificate is for another key)`);
  }
  let context: tls.SecureContext;
  try {
    context = tls.createSecureContext({ key, cert });
  } catch (err) {
    throw new KeyPairError(
      'key_file',
      `key_file ${JSON.stringify(p.keyFile)} and cert_file ${JSON.stringify(p.certFile)} are not a usable pair: ${(err as Error).message}`,
    );
  }
  return { key, cert, context, x509 };
}

/** Reads and checks every pair (a key that does not match its certificate is an error naming both files). */
export function loadKeyPairs(pairs: readonly KeyPairFiles[]): ServedKeyPairs {
  if (pairs.length === 0) throw new BadParameterError('https_keypairs: no key pair to serve');
  const loaded = pairs.map(loadKeyPair);
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
