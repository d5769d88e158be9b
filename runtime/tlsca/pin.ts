/**
 * The CA pin: `sha256:` + lower-case hex of the SHA-256 of the TLS CA
 * certificate's DER SubjectPublicKeyInfo (formats.md §2). A joining node
 * checks the auth server's CA against it before it sends its token.
 */
import { createHash, timingSafeEqual, X509Certificate } from 'node:crypto';
import { BadParameterError } from '../utils/errors';

const PIN_RE = /^sha256:[0-9a-f]{64}$/;

export function caPin(caCertPem: string | Buffer): string {
  const spki = new X509Certificate(caCertPem).publicKey.export({ format: 'der', type: 'spki' });
  return 'sha256:' + createHash('sha256').update(spki).digest('hex');
}

/**
 * The pins of every TLS certificate of a CA, comma-separated (as `--ca-pin` and the SSM parameter
 * take a list): two during a rotation, so that a member joining then trusts the auth server
 * whichever of the two it serves from.
 */
export function caPins(caCertPems: readonly string[]): string {
  return caCertPems.map((pem) => caPin(pem)).join(',');
}

export function validatePin(pin: string): void {
  if (!PIN_RE.test(pin)) throw new BadParameterError(`invalid CA pin "${pin}": expected sha256:<64 lower-case hex digits>`);
}

/** True when the CA certificate matches any of the pins; compared in constant time. */
export function matchesPin(caCertPem: string | Buffer, pins: readonly string[]): boolean {
  const actual = Buffer.from(caPin(caCertPem));
  let ok = false;
  for (const pin of pins) {
    validatePin(pin);
    const expected = Buffer.from(pin);
    if (expected.length === actual.length && timingSafeEqual(expected, actual)) ok = true;
  }
  return ok;
}
