/** disconnect_expired_cert's timer: fires at the certificate's valid_before, not before, however far off. */
import { whenCertExpires } from '../../../runtime/service/certexpiry';
import type { Certificate } from '../../../runtime/sshcert';

const certUntil = (validBefore: bigint) => ({ validBefore }) as Certificate;

describe('whenCertExpires', () => {
  beforeEach(() => jest.useFakeTimers({ now: Date.UTC(2026, 0, 1) }));
  afterEach(() => jest.useRealTimers());

  it('GIVEN a certificate valid for 30 days THEN it fires at valid_before, not when a single timer would overflow', () => {
    // GIVEN a certificate that expires in 30 days (longer than one setTimeout can wait)
    const expiresMs = Date.now() + 30 * 86_400_000;
    const expired = jest.fn();
    whenCertExpires(certUntil(BigInt(expiresMs / 1000)), expired);
    // WHEN the clock reaches 1 ms before valid_before THEN it has not fired
    jest.advanceTimersByTime(expiresMs - Date.now() - 1);
    expect(expired).not.toHaveBeenCalled();
    // WHEN it reaches valid_before THEN it fires, once
    jest.advanceTimersByTime(1);
    expect(expired).toHaveBeenCalledTimes(1);
  });

  it('GIVEN an already expired certificate THEN it fires at once; GIVEN one valid forever THEN never', () => {
    const expired = jest.fn();
    whenCertExpires(certUntil(BigInt(Math.floor(Date.now() / 1000))), expired);
    expect(expired).toHaveBeenCalledTimes(1);
    const forever = jest.fn();
    whenCertExpires(certUntil(0xffffffffffffffffn), forever);
    jest.advanceTimersByTime(400 * 86_400_000);
    expect(forever).not.toHaveBeenCalled();
  });

  it('GIVEN the returned cancel is called THEN it never fires', () => {
    const expired = jest.fn();
    const cancel = whenCertExpires(certUntil(BigInt(Date.now() / 1000 + 60)), expired);
    cancel();
    jest.advanceTimersByTime(120_000);
    expect(expired).not.toHaveBeenCalled();
  });
});
