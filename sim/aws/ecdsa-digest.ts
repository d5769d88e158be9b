/**
 * ECDSA P-256 signing of a digest the caller computed (what KMS Sign with
 * MessageType DIGEST does): node:crypto only signs messages it hashes itself.
 * Plain affine arithmetic on BigInt; slow (milliseconds) and not constant-time,
 * which is fine for the local deployment's endpoint and nothing else.
 */
import { KeyObject, randomBytes } from 'node:crypto';

const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const G = { x: 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n, y: 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n };

type Point = { x: bigint; y: bigint } | null;

const mod = (a: bigint, m: bigint) => ((a % m) + m) % m;
function inv(a: bigint, m: bigint): bigint {
  let [r0, r1, s0, s1] = [mod(a, m), m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return mod(s0, m);
}

function add(a: Point, b: Point): Point {
  if (!a) return b;
  if (!b) return a;
  if (a.x === b.x && mod(a.y + b.y, P) === 0n) return null;
  const l = a.x === b.x ? mod((3n * a.x * a.x - 3n) * inv(2n * a.y, P), P) : mod((b.y - a.y) * inv(b.x - a.x, P), P);
  const x = mod(l * l - a.x - b.x, P);
  return { x, y: mod(l * (a.x - x) - a.y, P) };
}

function multiply(k: bigint, p: Point): Point {
  let out: Point = null;
  for (let bit = BigInt(k.toString(2).length - 1); bit >= 0n; bit--) {
    out = add(out, out);
    if ((k >> bit) & 1n) out = add(out, p);
  }
  return out;
}

const big = (b: Buffer) => BigInt('0x' + (b.toString('hex') || '0'));
const bytes32 = (v: bigint) => Buffer.from(v.toString(16).padStart(64, '0'), 'hex');

/** The DER ECDSA signature (what KMS returns) of a SHA-256 `digest` by a P-256 private key. */
export function signP256Digest(privateKey: KeyObject, digest: Buffer): Buffer {
  const jwk = privateKey.export({ format: 'jwk' });
  if (jwk.crv !== 'P-256' || !jwk.d) throw new Error('signP256Digest needs a P-256 private key');
  const d = big(Buffer.from(jwk.d, 'base64url'));
  const z = big(digest.subarray(0, 32));
  for (;;) {
    const k = mod(big(randomBytes(40)), N - 1n) + 1n;
    const r = mod(multiply(k, G)!.x, N);
    const s = mod(inv(k, N) * (z + r * d), N);
    if (r !== 0n && s !== 0n) return derSignature(bytes32(r), bytes32(s));
  }
}

function derInteger(v: Buffer): Buffer {
  let i = 0;
  while (i < v.length - 1 && v[i] === 0) i++;
  const trimmed = v.subarray(i);
  const body = trimmed[0] & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed;
  return Buffer.concat([Buffer.from([0x02, body.length]), body]);
}

function derSignature(r: Buffer, s: Buffer): Buffer {
  const body = Buffer.concat([derInteger(r), derInteger(s)]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}
