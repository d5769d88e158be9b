import { SshReader, SshWriter } from '../../../runtime/sshcert';
import { BadParameterError } from '../../../runtime/utils/errors';

describe('SshWriter', () => {
  test('GIVEN the RFC 4251 §5 mpint examples WHEN encoded from bigints THEN the bytes match the RFC', () => {
    // GIVEN / WHEN
    const enc = (v: bigint) => new SshWriter().mpint(v).toBuffer().toString('hex');

    // THEN
    expect(enc(0n)).toBe('00000000');
    expect(enc(0x9a378f9b2e332a7n)).toBe('0000000809a378f9b2e332a7');
    expect(enc(0x80n)).toBe('000000020080');
    expect(enc(-0x1234n)).toBe('00000002edcc');
    expect(enc(-0xdeadbeefn)).toBe('00000005ff21524111');
  });

  test('GIVEN unsigned magnitudes WHEN encoded as mpints THEN leading zeros are dropped and a sign byte added when the top bit is set', () => {
    // GIVEN / WHEN
    const enc = (hex: string) => new SshWriter().mpint(Buffer.from(hex, 'hex')).toBuffer().toString('hex');

    // THEN
    expect(enc('')).toBe('00000000');
    expect(enc('000000')).toBe('00000000');
    expect(enc('0001ff')).toBe('0000000201ff');
    expect(enc('ff01')).toBe('0000000300ff01');
  });

  test('GIVEN every field kind WHEN written and read back THEN the values round-trip and the reader ends exactly', () => {
    // GIVEN
    const w = new SshWriter()
      .uint32(0xdeadbeef)
      .uint64(0xffffffffffffffffn)
      .boolean(true)
      .boolean(false)
      .string('héllo')
      .string(Buffer.from([1, 2, 3]))
      .mpint(-5n)
      .mpint(Buffer.from('80', 'hex'));

    // WHEN
    const r = new SshReader(w.toBuffer());

    // THEN
    expect(r.uint32()).toBe(0xdeadbeef);
    expect(r.uint64()).toBe(0xffffffffffffffffn);
    expect(r.boolean()).toBe(true);
    expect(r.boolean()).toBe(false);
    expect(r.string()).toBe('héllo');
    expect([...r.bytes()]).toEqual([1, 2, 3]);
    expect(r.mpintBigInt()).toBe(-5n);
    expect(r.mpint().toString('hex')).toBe('80');
    expect(r.remaining).toBe(0);
    expect(r.atEnd()).toBe(true);
  });

  test('GIVEN out-of-range numbers WHEN written THEN BadParameterError', () => {
    expect(() => new SshWriter().uint32(-1)).toThrow(BadParameterError);
    expect(() => new SshWriter().uint32(2 ** 32)).toThrow(BadParameterError);
    expect(() => new SshWriter().uint64(1n << 64n)).toThrow(BadParameterError);
    expect(() => new SshWriter().uint64(-1n)).toThrow(BadParameterError);
  });
});

describe('SshReader', () => {
  test('GIVEN a string whose length runs past the end WHEN read THEN BadParameterError names the field', () => {
    // GIVEN
    const data = Buffer.from('0000000a6162', 'hex');

    // WHEN / THEN
    expect(() => new SshReader(data, 'certificate').bytes('key id')).toThrow(
      new BadParameterError('certificate: truncated reading key id at byte 4 (need 10 bytes, have 2)'),
    );
  });

  test('GIVEN fewer than 4 or 8 bytes WHEN reading uint32 / uint64 THEN BadParameterError names the field', () => {
    expect(() => new SshReader(Buffer.alloc(3)).uint32('serial')).toThrow(/truncated reading serial/);
    expect(() => new SshReader(Buffer.alloc(7)).uint64('valid after')).toThrow(/truncated reading valid after/);
    expect(() => new SshReader(Buffer.alloc(0)).boolean('flag')).toThrow(BadParameterError);
  });

  test('GIVEN a negative mpint WHEN read as an unsigned magnitude THEN BadParameterError', () => {
    const data = new SshWriter().mpint(-1n).toBuffer();
    expect(() => new SshReader(data).mpint('RSA n')).toThrow(/RSA n is negative/);
  });

  test('GIVEN invalid UTF-8 WHEN read as a string THEN BadParameterError', () => {
    const data = new SshWriter().string(Buffer.from([0xff, 0xfe])).toBuffer();
    expect(() => new SshReader(data, 'cert').string('key id')).toThrow(new BadParameterError('cert: key id is not valid UTF-8'));
  });

  test('GIVEN bytes left over WHEN expectEnd THEN BadParameterError counts them', () => {
    const r = new SshReader(Buffer.from('0000000100ffff', 'hex'), 'blob');
    r.bytes();
    expect(r.remaining).toBe(2);
    expect(() => r.expectEnd()).toThrow(new BadParameterError('blob: 2 unexpected trailing bytes'));
  });
});
