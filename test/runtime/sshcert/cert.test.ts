import { randomBytes } from 'node:crypto';
import {
  Certificate,
  CertificateFields,
  certKeyType,
  formatAuthorizedKey,
  isCertificateType,
  MAX_VALID_BEFORE,
  parseCertificate,
  publicKeyBlob,
  signCertificate,
  SshReader,
  SshWriter,
  verifyCertificate,
  VerifyOptions,
} from '../../../runtime/sshcert';
import { AccessDeniedError, BadParameterError } from '../../../runtime/utils/errors';
import { ALGORITHMS, keyPair } from './fixtures';

const NOW = new Date('2030-01-01T12:00:00Z');
const NOW_S = BigInt(NOW.getTime() / 1000);

function userFields(over: Partial<CertificateFields> = {}): CertificateFields {
  return {
    certType: 'user',
    publicKey: publicKeyBlob(keyPair('ed25519', 'subject').publicKey),
    serial: 7n,
    keyId: 'alice',
    principals: ['alice', 'admin'],
    validAfter: NOW_S - 60n,
    validBefore: NOW_S + 3600n,
    criticalOptions: {},
    extensions: { 'permit-pty': '' },
    ...over,
  };
}

const ca = () => keyPair('ed25519');
const caBlob = () => publicKeyBlob(ca().publicKey);
const verifyOpts = (over: Partial<VerifyOptions> = {}): VerifyOptions => ({
  trustedCAs: [caBlob()],
  certType: 'user',
  principal: 'alice',
  now: NOW,
  ...over,
});

/** Re-encodes a certificate's signed part with one raw field replaced (no valid signature). */
function rebuild(mutate: { criticalOptions?: Buffer; extensions?: Buffer; certType?: number; principals?: Buffer }): Buffer {
  const c = parseCertificate(signCertificate(userFields(), ca().privateKey));
  const r = new SshReader(c.blob);
  const w = new SshWriter();
  w.string(r.bytes()).string(r.bytes()).string(r.bytes()); // type, nonce, ed25519 key
  w.uint64(r.uint64());
  const certType = r.uint32();
  w.uint32(mutate.certType ?? certType);
  w.string(r.bytes());
  const principals = r.bytes();
  w.string(mutate.principals ?? principals);
  w.uint64(r.uint64()).uint64(r.uint64());
  const crit = r.bytes();
  const ext = r.bytes();
  w.string(mutate.criticalOptions ?? crit).string(mutate.extensions ?? ext);
  w.string(r.bytes()).string(r.bytes()).string(r.bytes()); // reserved, signature key, signature
  return w.toBuffer();
}

describe('signCertificate / parseCertificate', () => {
  test.each(ALGORITHMS.flatMap((c) => ALGORITHMS.map((s) => [c, s] as const)))(
    'GIVEN a %s CA and a %s subject WHEN a cert is signed and parsed THEN every field round-trips and it verifies',
    (caAlg, subjectAlg) => {
      // GIVEN
      const fields = userFields({
        publicKey: publicKeyBlob(keyPair(subjectAlg).publicKey),
        criticalOptions: { 'source-address': '127.0.0.1/32' },
        extensions: { 'permit-pty': '', 'teleport-roles': '{"version":"v1","roles":["ü"]}' },
        nonce: Buffer.alloc(32, 9),
      });

      // WHEN
      const blob = signCertificate(fields, keyPair(caAlg).privateKey);
      const cert = parseCertificate(blob);

      // THEN
      expect(cert).toMatchObject({ ...fields, blob, reserved: Buffer.alloc(0) });
      expect(cert.type).toBe(certKeyType(blob));
      expect(isCertificateType(cert.type)).toBe(true);
      expect(cert.signatureKey.equals(publicKeyBlob(keyPair(caAlg).publicKey))).toBe(true);
      expect(blob.subarray(0, cert.signedData.length).equals(cert.signedData)).toBe(true);
      expect(() =>
        verifyCertificate(cert, {
          ...verifyOpts({ trustedCAs: [publicKeyBlob(keyPair(caAlg).publicKey)] }),
          allowedCriticalOptions: ['source-address'],
        }),
      ).not.toThrow();
    },
  );

  test('GIVEN options given out of order WHEN signed THEN they are encoded sorted by name with OpenSSH value encoding', () => {
    // GIVEN
    const fields = userFields({ extensions: { zeta: 'z', 'permit-pty': '', 'permit-X11-forwarding': '', alpha: '' } });

    // WHEN
    const cert = parseCertificate(signCertificate(fields, ca().privateKey));
    const r = new SshReader(cert.signedData);
    [r.bytes(), r.bytes(), r.bytes(), r.uint64(), r.uint32(), r.bytes(), r.bytes(), r.uint64(), r.uint64(), r.bytes()];
    const ext = new SshReader(r.bytes());
    const entries: Array<[string, string]> = [];
    while (!ext.atEnd()) entries.push([ext.string(), ext.bytes().toString('hex')]);

    // THEN
    expect(Object.keys(cert.extensions)).toEqual(['alpha', 'permit-X11-forwarding', 'permit-pty', 'zeta']);
    expect(entries).toEqual([
      ['alpha', ''],
      ['permit-X11-forwarding', ''],
      ['permit-pty', ''],
      ['zeta', '000000017a'],
    ]);
  });

  test('GIVEN a line "<cert type> <base64> comment" WHEN parsed THEN it is the same as parsing the blob', () => {
    const blob = signCertificate(userFields(), ca().privateKey);
    expect(parseCertificate(formatAuthorizedKey(blob, 'alice@laptop') + '\n').blob.equals(blob)).toBe(true);
  });

  test('GIVEN bad fields WHEN signing THEN BadParameterError before anything is signed', () => {
    const sign = (over: Partial<CertificateFields>) => () => signCertificate(userFields(over), ca().privateKey);
    expect(sign({ certType: 'robot' as never })).toThrow(/must be "user" or "host"/);
    expect(sign({ serial: -1n })).toThrow(/serial must be a bigint/);
    expect(sign({ validBefore: 1n << 64n })).toThrow(/validBefore must be a bigint/);
    expect(sign({ validAfter: 10n, validBefore: 10n })).toThrow(/validAfter must be before validBefore/);
    expect(sign({ publicKey: Buffer.from('junk') })).toThrow(BadParameterError);
    expect(sign({ publicKey: signCertificate(userFields(), ca().privateKey) })).toThrow(/got a certificate/);
    expect(sign({ extensions: { '': 'x' } })).toThrow(/option name must not be empty/);
  });
});

describe('verifyCertificate refusals', () => {
  const signed = (over: Partial<CertificateFields> = {}) => parseCertificate(signCertificate(userFields(over), ca().privateKey));

  test('GIVEN a valid cert WHEN every check passes THEN no error', () => {
    expect(() => verifyCertificate(signed(), verifyOpts())).not.toThrow();
  });

  test('GIVEN a cert from another CA WHEN verified THEN refused as untrusted CA', () => {
    const other = parseCertificate(signCertificate(userFields(), keyPair('ed25519', 'other').privateKey));
    expect(() => verifyCertificate(other, verifyOpts())).toThrow(AccessDeniedError);
    expect(() => verifyCertificate(other, verifyOpts())).toThrow(/signed by an untrusted CA \(SHA256:/);
  });

  test('GIVEN no trusted CAs WHEN verified THEN refused', () => {
    expect(() => verifyCertificate(signed(), verifyOpts({ trustedCAs: [] }))).toThrow(/untrusted CA/);
  });

  test('GIVEN an expired cert WHEN verified THEN refused as expired, including at exactly validBefore', () => {
    const cert = signed({ validAfter: NOW_S - 7200n, validBefore: NOW_S });
    expect(() => verifyCertificate(cert, verifyOpts())).toThrow(
      new AccessDeniedError('certificate "alice" has expired (valid before 2030-01-01T12:00:00.000Z)'),
    );
  });

  test('GIVEN a cert that starts in the future WHEN verified THEN refused as not yet valid', () => {
    const cert = signed({ validAfter: NOW_S + 1n, validBefore: NOW_S + 7200n });
    expect(() => verifyCertificate(cert, verifyOpts())).toThrow(
      new AccessDeniedError('certificate "alice" is not yet valid (valid after 2030-01-01T12:00:01.000Z)'),
    );
  });

  test('GIVEN a login that is not a principal WHEN verified THEN refused naming the principal', () => {
    expect(() => verifyCertificate(signed(), verifyOpts({ principal: 'root' }))).toThrow(
      new AccessDeniedError('certificate "alice": principal "root" is not listed (principals: alice, admin)'),
    );
    expect(() => verifyCertificate(signed({ principals: [] }), verifyOpts())).toThrow(/principal "alice" is not listed \(principals: none\)/);
  });

  test('GIVEN a host cert WHEN used as a user cert THEN refused as the wrong type', () => {
    const host = signed({ certType: 'host' });
    expect(() => verifyCertificate(host, verifyOpts())).toThrow(/is a host certificate, expected a user certificate/);
  });

  test('GIVEN a flipped byte in the signature WHEN verified THEN refused as a bad CA signature', () => {
    const blob = signCertificate(userFields(), ca().privateKey);
    blob[blob.length - 5] ^= 0x40;
    expect(() => verifyCertificate(parseCertificate(blob), verifyOpts())).toThrow(/CA signature is invalid \(algorithm ssh-ed25519\)/);
  });

  test('GIVEN a principal rewritten in the blob after signing WHEN verified THEN refused as a bad CA signature', () => {
    // GIVEN
    const blob = signCertificate(userFields({ principals: ['alice'] }), ca().privateKey);
    const encoded = new SshWriter().string(new SshWriter().string('alice').toBuffer()).toBuffer();
    const at = blob.indexOf(encoded);
    Buffer.from('admin').copy(blob, at + encoded.length - 5);

    // WHEN
    const cert = parseCertificate(blob);

    // THEN
    expect(cert.principals).toEqual(['admin']);
    expect(() => verifyCertificate(cert, verifyOpts({ principal: 'admin' }))).toThrow(/CA signature is invalid/);
  });

  test('GIVEN a parsed cert whose object fields were edited WHEN verified THEN the signed blob decides, not the edits', () => {
    // GIVEN
    const cert: Certificate = signed();
    cert.principals.push('root');
    cert.validBefore = MAX_VALID_BEFORE;
    cert.certType = 'host';

    // WHEN / THEN
    expect(() => verifyCertificate(cert, verifyOpts({ principal: 'root' }))).toThrow(/principal "root" is not listed/);
    expect(() => verifyCertificate(cert, verifyOpts({ certType: 'host' }))).toThrow(/is a user certificate/);
  });

  test('GIVEN a critical option WHEN verified without allowing it THEN refused; allowed THEN accepted', () => {
    const cert = signed({ criticalOptions: { 'verify-required': '' } });
    expect(() => verifyCertificate(cert, verifyOpts())).toThrow(/unsupported critical option "verify-required"/);
    expect(() => verifyCertificate(cert, verifyOpts({ allowedCriticalOptions: ['verify-required'] }))).not.toThrow();
  });

  test('GIVEN an RSA CA signature relabelled as ssh-rsa WHEN verified THEN refused as SHA-1', () => {
    // GIVEN
    const rsa = keyPair('rsa');
    const c = parseCertificate(signCertificate(userFields(), rsa.privateKey));
    const inner = new SshReader(c.signature);
    inner.string();
    const sig = new SshWriter().string('ssh-rsa').string(inner.bytes()).toBuffer();
    const blob = new SshWriter().raw(c.signedData).string(sig).toBuffer();

    // WHEN / THEN
    expect(() => verifyCertificate(parseCertificate(blob), verifyOpts({ trustedCAs: [publicKeyBlob(rsa.publicKey)] }))).toThrow(
      /ssh-rsa \(SHA-1\), which is refused/,
    );
  });
});

describe('parseCertificate on corrupt input', () => {
  const good = () => signCertificate(userFields({ criticalOptions: { 'force-command': 'x' } }), ca().privateKey);

  function expectBadParameter(input: Buffer | string, message?: RegExp): void {
    let thrown: unknown;
    try {
      parseCertificate(input);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(BadParameterError);
    if (message) expect((thrown as Error).message).toMatch(message);
  }

  test.each(ALGORITHMS)('GIVEN every truncation of a %s-signed cert WHEN parsed THEN BadParameterError', (alg) => {
    const blob = signCertificate(userFields({ publicKey: publicKeyBlob(keyPair(alg).publicKey) }), keyPair(alg).privateKey);
    for (let len = 0; len < blob.length; len++) expectBadParameter(blob.subarray(0, len));
  });

  test('GIVEN a truncated cert WHEN parsed THEN the message names the field', () => {
    expectBadParameter(good().subarray(0, 60), /SSH certificate: truncated reading/);
  });

  test('GIVEN trailing garbage WHEN parsed THEN BadParameterError counts the bytes', () => {
    expectBadParameter(Buffer.concat([good(), Buffer.from('xyz')]), /SSH certificate: 3 unexpected trailing bytes/);
  });

  test('GIVEN random bytes, and random bytes after a valid type name WHEN parsed THEN BadParameterError', () => {
    for (let i = 0; i < 300; i++) {
      expectBadParameter(randomBytes(i));
      expectBadParameter(Buffer.concat([new SshWriter().string('ssh-ed25519-cert-v01@openssh.com').toBuffer(), randomBytes(i)]));
    }
  });

  test('GIVEN a plain key or an unknown cert type WHEN parsed THEN BadParameterError names the type', () => {
    expectBadParameter(publicKeyBlob(ca().publicKey), /unknown certificate type "ssh-ed25519"/);
    expectBadParameter(new SshWriter().string('ssh-dss-cert-v01@openssh.com').toBuffer(), /unknown certificate type "ssh-dss-cert-v01@openssh.com"/);
    expectBadParameter(rebuild({ certType: 3 }), /unknown certificate type 3/);
  });

  test('GIVEN badly encoded options WHEN parsed THEN BadParameterError says which', () => {
    const opt = (name: string, data: Buffer) => new SshWriter().string(name).string(data).toBuffer();
    const str = (s: string) => new SshWriter().string(s).toBuffer();
    expectBadParameter(rebuild({ criticalOptions: opt('force-command', Buffer.from('/bin/sh')) }), /critical options "force-command"/);
    expectBadParameter(
      rebuild({ extensions: opt('x', Buffer.concat([str('v'), Buffer.from([0])])) }),
      /extensions "x": 1 unexpected trailing bytes/,
    );
    expectBadParameter(rebuild({ extensions: Buffer.concat([opt('b', Buffer.alloc(0)), opt('a', Buffer.alloc(0))]) }), /"a" is duplicated or out of lexical order/);
    expectBadParameter(rebuild({ extensions: Buffer.concat([opt('a', Buffer.alloc(0)), opt('a', Buffer.alloc(0))]) }), /duplicated/);
    expectBadParameter(rebuild({ extensions: Buffer.from([0, 0, 0, 5, 0x61]) }), /extensions: truncated reading option name/);
    expectBadParameter(rebuild({ principals: Buffer.from([0, 0, 0, 9]) }), /principals: truncated reading principal/);
  });

  test('GIVEN an option named __proto__ WHEN parsed THEN it is an ordinary own property', () => {
    const cert = parseCertificate(signCertificate(userFields({ extensions: JSON.parse('{"__proto__":"v"}') }), ca().privateKey));
    expect(Object.keys(cert.extensions)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(cert.extensions)).toBe(Object.prototype);
  });

  test('GIVEN bad authorized_keys lines WHEN parsed THEN BadParameterError', () => {
    const line = formatAuthorizedKey(good());
    expectBadParameter(line.replace('AAAA', 'AA!A'), /not valid base64/);
    expectBadParameter(line.slice(0, line.length - 8), /truncated reading/);
    expectBadParameter(formatAuthorizedKey(publicKeyBlob(ca().publicKey)), /not an SSH certificate: key type is "ssh-ed25519"/);
    expectBadParameter('', /must be "<type> <base64> \[comment\]"/);
    expectBadParameter(42 as never, /must be a Buffer or an authorized_keys line/);
  });
});
