/**
 * S3's `aws-chunked` request bodies (`Content-Encoding: aws-chunked`, `x-amz-content-sha256:
 * STREAMING-...`): `<hex size>[;chunk-signature=...]\r\n<data>\r\n` repeated, a last chunk of
 * size 0, then trailer lines (`x-amz-checksum-crc32:<base64>`) and an empty line. The SDK sends
 * streamed uploads this way with its default flexible checksums; S3 stores the data alone.
 */
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { AwsError } from './protocol';

export interface Dechunked {
  readonly data: Buffer;
  /** Trailer headers, lower-case names (`x-amz-checksum-crc32`, ...). */
  readonly trailers: Readonly<Record<string, string>>;
}

const CRLF = Buffer.from('\r\n');
const incomplete = (why: string) => new AwsError(400, 'IncompleteBody', `The aws-chunked request body is malformed: ${why}.`);

/** The data and trailers of an aws-chunked body; `IncompleteBody` when the framing is broken. */
export function decodeAwsChunked(body: Buffer): Dechunked {
  const chunks: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const eol = body.indexOf(CRLF, pos);
    if (eol < 0) throw incomplete('a chunk header has no end');
    const header = body.subarray(pos, eol).toString('latin1');
    const size = /^[0-9a-fA-F]+$/.test(header.split(';')[0]) ? parseInt(header.split(';')[0], 16) : NaN;
    if (Number.isNaN(size)) throw incomplete('a chunk size is not hexadecimal');
    pos = eol + 2;
    if (size === 0) break;
    if (pos + size + 2 > body.length || !body.subarray(pos + size, pos + size + 2).equals(CRLF)) throw incomplete('a chunk is shorter than its size');
    chunks.push(body.subarray(pos, pos + size));
    pos += size + 2;
  }
  const trailers: Record<string, string> = {};
  for (const line of body.subarray(pos).toString('latin1').split('\r\n')) {
    if (!line) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw incomplete('a trailer is not "name:value"');
    trailers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { data: Buffer.concat(chunks), trailers };
}

/** The base64 checksums S3 checks, by the trailer (or header) that carries them; CRC32C and CRC64NVME are not checked here. */
const CHECKSUMS: Readonly<Record<string, [name: string, digest: (data: Buffer) => string]>> = {
  'x-amz-checksum-crc32': ['CRC32', (data) => u32(crc32(data))],
  'x-amz-checksum-sha1': ['SHA1', (data) => createHash('sha1').update(data).digest('base64')],
  'x-amz-checksum-sha256': ['SHA256', (data) => createHash('sha256').update(data).digest('base64')],
};

function u32(n: number): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b.toString('base64');
}

/** Refuses `data` with S3's `BadDigest` when a checksum in `fields` does not match it. */
export function checkChecksums(data: Buffer, fields: Readonly<Record<string, string | string[] | undefined>>): void {
  for (const [field, [name, digest]] of Object.entries(CHECKSUMS)) {
    const claimed = fields[field];
    if (typeof claimed === 'string' && claimed !== digest(data)) throw new AwsError(400, 'BadDigest', `The ${name} you specified did not match the calculated checksum.`);
  }
}
