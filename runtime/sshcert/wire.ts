/**
 * SSH wire encoding (RFC 4251 §5): the uint32/uint64/string/mpint/boolean
 * building blocks of key blobs, signatures, certificates and private key files.
 * The reader fails with a BadParameterError that names the field it was reading.
 */
import { BadParameterError } from '../utils/errors';

const UINT64_MAX = 0xffffffffffffffffn;

export class SshWriter {
  private readonly chunks: Buffer[] = [];
  private length = 0;

  private push(chunk: Buffer): this {
    this.chunks.push(chunk);
    this.length += chunk.length;
    return this;
  }

  uint32(value: number): this {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
      throw new BadParameterError(`uint32 out of range: ${value}`);
    }
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(value, 0);
    return this.push(b);
  }

  uint64(value: bigint): this {
    if (value < 0n || value > UINT64_MAX) {
      throw new BadParameterError(`uint64 out of range: ${value}`);
    }
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64BE(value, 0);
    return this.push(b);
  }

  boolean(value: boolean): this {
    return this.push(Buffer.from([value ? 1 : 0]));
  }

  /** A length-prefixed byte string; a JS string is written as UTF-8. */
  string(value: Buffer | string): this {
    const data = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    this.uint32(data.length);
    return this.push(data);
  }

  /** Raw bytes, no length prefix. */
  raw(data: Buffer): this {
    return this.push(data);
  }

  /**
   * A multiple-precision integer. A Buffer is an unsigned big-endian magnitude;
   * a bigint may be negative (two's complement).
   */
  mpint(value: Buffer | bigint): this {
    return this.string(typeof value === 'bigint' ? bigintToMpintBytes(value) : magnitudeToMpintBytes(value));
  }

  get size(): number {
    return this.length;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.chunks, this.length);
  }
}

export class SshReader {
  private offset = 0;

  constructor(
    private readonly buf: Buffer,
    /** Names the structure being read in error messages, e.g. "certificate". */
    private readonly context = 'SSH data',
  ) {}

  get remaining(): number {
    return this.buf.length - this.offset;
  }

  get position(): number {
    return this.offset;
  }

  atEnd(): boolean {
    return this.offset >= this.buf.length;
  }

  private take(n: number, field: string): Buffer {
    if (n > this.remaining) {
      throw new BadParameterError(
        `${this.context}: truncated reading ${field} at byte ${this.offset} (need ${n} bytes, have ${this.remaining})`,
      );
    }
    const out = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }

  uint32(field = 'uint32'): number {
    return this.take(4, field).readUInt32BE(0);
  }

  uint64(field = 'uint64'): bigint {
    return this.take(8, field).readBigUInt64BE(0);
  }

  boolean(field = 'boolean'): boolean {
    return this.take(1, field)[0] !== 0;
  }

  /** A length-prefixed byte string (a view into the input, not a copy). */
  bytes(field = 'string'): Buffer {
    const len = this.uint32(`${field} length`);
    return this.take(len, field);
  }

  /** A length-prefixed string that must be valid UTF-8. */
  string(field = 'string'): string {
    return decodeUtf8(this.bytes(field), `${this.context}: ${field}`);
  }

  raw(n: number, field = 'bytes'): Buffer {
    return this.take(n, field);
  }

  /** A non-negative mpint as its unsigned big-endian magnitude (no leading zero bytes). */
  mpint(field = 'mpint'): Buffer {
    const data = this.bytes(field);
    if (data.length > 0 && data[0] & 0x80) {
      throw new BadParameterError(`${this.context}: ${field} is negative`);
    }
    let i = 0;
    while (i < data.length && data[i] === 0) i++;
    return data.subarray(i);
  }

  /** An mpint of any sign. */
  mpintBigInt(field = 'mpint'): bigint {
    const data = this.bytes(field);
    if (data.length === 0) return 0n;
    let v = BigInt('0x' + data.toString('hex'));
    if (data[0] & 0x80) v -= 1n << BigInt(data.length * 8);
    return v;
  }

  /** Fails when bytes are left over after the last field. */
  expectEnd(what = this.context): void {
    if (!this.atEnd()) {
      throw new BadParameterError(`${what}: ${this.remaining} unexpected trailing bytes`);
    }
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function decodeUtf8(data: Buffer, what: string): string {
  try {
    return utf8.decode(data);
  } catch {
    throw new BadParameterError(`${what} is not valid UTF-8`);
  }
}

function magnitudeToMpintBytes(mag: Buffer): Buffer {
  let i = 0;
  while (i < mag.length && mag[i] === 0) i++;
  const trimmed = mag.subarray(i);
  if (trimmed.length === 0) return Buffer.alloc(0);
  if (trimmed[0] & 0x80) return Buffer.concat([Buffer.from([0]), trimmed]);
  return trimmed;
}

function bigintToMpintBytes(value: bigint): Buffer {
  if (value === 0n) return Buffer.alloc(0);
  if (value > 0n) return magnitudeToMpintBytes(bigintToBytes(value));
  // Smallest two's complement width whose sign bit is set for this value.
  let bytes = 1;
  while (-(1n << BigInt(bytes * 8 - 1)) > value) bytes++;
  const twos = (1n << BigInt(bytes * 8)) + value;
  return Buffer.from(twos.toString(16).padStart(bytes * 2, '0'), 'hex');
}

/** Unsigned big-endian bytes of a non-negative bigint (minimal, empty for 0). */
export function bigintToBytes(value: bigint): Buffer {
  if (value < 0n) throw new BadParameterError('negative value where an unsigned integer is required');
  if (value === 0n) return Buffer.alloc(0);
  const hex = value.toString(16);
  return Buffer.from(hex.length % 2 ? '0' + hex : hex, 'hex');
}

export function bytesToBigint(data: Buffer): bigint {
  return data.length === 0 ? 0n : BigInt('0x' + data.toString('hex'));
}

/** Left-pads an unsigned magnitude to `size` bytes; fails if it does not fit. */
export function padStart(data: Buffer, size: number, what: string): Buffer {
  let i = 0;
  while (i < data.length && data[i] === 0 && data.length - i > size) i++;
  const trimmed = data.subarray(i);
  if (trimmed.length > size) {
    throw new BadParameterError(`${what} is ${trimmed.length} bytes, more than ${size}`);
  }
  if (trimmed.length === size) return trimmed;
  return Buffer.concat([Buffer.alloc(size - trimmed.length), trimmed]);
}
