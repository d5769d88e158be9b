import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { derToP1363 } from '../../../runtime/keystore/awskms';

describe('derToP1363: KMS ECDSA signatures (DER) to the r||s Signer format', () => {
  test('GIVEN DER signatures from node:crypto WHEN converted THEN r||s verifies as IEEE P1363', () => {
    // GIVEN: enough signatures that some have r or s with a high bit (a leading 00) or shorter than 32 bytes
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    for (let i = 0; i < 50; i++) {
      const data = Buffer.from(`message ${i}`);
      const der = sign('sha256', data, privateKey);
      // WHEN
      const rs = derToP1363(der, 32);
      // THEN
      expect(rs.length).toBe(64);
      expect(verify('sha256', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, rs)).toBe(true);
    }
  });

  test.each([
    ['not a SEQUENCE', Buffer.from('3102020101', 'hex')],
    ['a length past the end', Buffer.from('30060201010201', 'hex')],
    ['trailing bytes', Buffer.from('3006020101020101ff', 'hex')],
    ['an integer longer than the curve', Buffer.concat([Buffer.from('3026022101', 'hex'), Buffer.alloc(32, 1), Buffer.from('020101', 'hex')])],
  ])('GIVEN %s WHEN converted THEN a clear error', (_what, der) => {
    expect(() => derToP1363(der, 32)).toThrow(/not DER/);
  });
});
