/**
 * The frames a root and a leaf proxy exchange on a tunnel channel (runtime/proxy/clusterchannel.ts):
 * one frame read with what follows kept, and each malformed frame refused with its reason.
 */
import { Duplex, PassThrough } from 'node:stream';
import { clusterAnswerSchema, clusterRequestSchema, MAX_FRAME_BYTES, readFrame, writeFrame } from '../../../runtime/proxy/clusterchannel';

/** A duplex whose readable side gets what the test pushes. */
function channel(): { stream: Duplex; push(b: Buffer): void; end(): void } {
  const input = new PassThrough();
  const stream = Duplex.from({ readable: input, writable: new PassThrough() });
  return { stream, push: (b) => input.write(b), end: () => input.end() };
}

function frame(body: string | Buffer): Buffer {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

describe('cluster channel frames', () => {
  it('GIVEN a frame split over several chunks and followed by pipe bytes THEN the frame is read and the rest kept', async () => {
    const c = channel();
    const read = readFrame(c.stream, clusterAnswerSchema, 'test');
    const bytes = Buffer.concat([frame('{"ok":true}'), Buffer.from('SSH-2.0-x\r\n')]);
    c.push(bytes.subarray(0, 3));
    c.push(bytes.subarray(3, 9));
    c.push(bytes.subarray(9));
    await expect(read).resolves.toEqual({ value: { ok: true }, rest: Buffer.from('SSH-2.0-x\r\n') });
  });

  it('GIVEN what writeFrame writes THEN readFrame reads it back', async () => {
    const pipe = new PassThrough();
    const stream = Duplex.from({ readable: pipe, writable: pipe });
    const req = { type: 'node' as const, host: 'db1', port: 0, namespace: 'default', cert: 'AAAA', login: 'root', client: { host: '192.0.2.1', port: 5000 } };
    writeFrame(stream, req);
    await expect(readFrame(stream, clusterRequestSchema, 'test')).resolves.toEqual({ value: req, rest: Buffer.alloc(0) });
  });

  it.each([
    ['an oversized length', frame(Buffer.alloc(0)).fill(0xff, 0, 4), `a frame of 4294967295 bytes is larger than ${MAX_FRAME_BYTES}`],
    ['a body that is not JSON', frame('{nope'), 'the frame is not JSON'],
    ['an unknown request type', frame('{"type":"shell"}'), 'test: type:'],
    ['a node request with an extra field', frame('{"type":"auth","x":1}'), 'test: '],
  ])('GIVEN %s THEN it is refused with the reason', async (_what, bytes, reason) => {
    const c = channel();
    const read = readFrame(c.stream, clusterRequestSchema, 'test');
    c.push(bytes);
    await expect(read).rejects.toThrow(reason);
  });

  it('GIVEN a channel that ends before its frame, or stays silent THEN the read fails', async () => {
    const c = channel();
    const read = readFrame(c.stream, clusterRequestSchema, 'test');
    c.push(Buffer.from([0, 0]));
    c.end();
    c.stream.resume();
    await expect(read).rejects.toThrow('test: the channel closed before its frame');
    await expect(readFrame(channel().stream, clusterRequestSchema, 'quiet', 50)).rejects.toThrow('quiet: no frame within 0.05s');
  });
});
