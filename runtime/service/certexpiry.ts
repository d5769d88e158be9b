/**
 * `disconnect_expired_cert` on the SSH listeners (node and proxy): a
 * connection ends when the certificate it authenticated with expires, at its
 * `valid_before` (as OpenSSH, a certificate is expired from that second on).
 */
import type { Certificate } from '../sshcert';

/** The `reason` of the `client.disconnect` audit event. */
export const CERT_EXPIRED = 'client certificate has expired';
/** The longest delay setTimeout takes; longer waits are made of several. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** `valid_before` of a certificate that never expires. */
const FOREVER = 0xffffffffffffffffn;

/** Calls `onExpired` once `cert` has expired (at once if it already has); returns a function that cancels it. */
export function whenCertExpires(cert: Certificate, onExpired: () => void, now: () => number = Date.now): () => void {
  if (cert.validBefore >= FOREVER) return () => undefined;
  const at = Number(cert.validBefore) * 1000;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    const ms = at - now();
    if (ms <= 0) return onExpired();
    timer = setTimeout(arm, Math.min(ms, MAX_TIMER_MS));
  };
  arm();
  return () => clearTimeout(timer);
}
