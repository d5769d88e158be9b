/** Half-close of forwarded channels: the socket's EOF becomes the channel's EOF after its data, never a CLOSE with it. */
import { once } from 'node:events';
import * as net from 'node:net';
import { Duplex } from 'node:stream';
import type { ServerChannel } from 'ssh2';
import { eofAfterWrites, spliceChannel } from '../../../runtime/node/forwarding';
import { waitFor } from '../../helpers/proc';

/** A stand-in for ssh2's server channel that records what would go out, and can hold writes back as a full SSH window does. */
class FakeChannel extends Duplex {
  readonly sent: string[] = [];
  hold = false;
  private held: Array<() => void> = [];
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    if (this.hold) return void this.held.push(() => (this.sent.push(`data:${chunk}`), done()));
    this.sent.push(`data:${chunk}`);
    done();
  }
  /** The window opens: held writes go out. */
  release(): void {
    this.hold = false;
    for (const f of this.held.splice(0)) f();
  }
  eof(): void {
    this.sent.push('eof');
  }
  close(): void {
    this.sent.push('close');
  }
}

const asChannel = (c: FakeChannel) => c as unknown as ServerChannel;
const nonEmpty = (sent: string[]) => sent.filter((s) => s !== 'data:');

describe('forwarded channels', () => {
  it('GIVEN data held back by the SSH window WHEN the socket side ends THEN EOF goes out after the data, and no CLOSE', async () => {
    // GIVEN a channel whose window is full, with data waiting
    const channel = new FakeChannel();
    channel.hold = true;
    channel.write('first');
    // WHEN the EOF is asked for, and only then the window opens
    eofAfterWrites(asChannel(channel));
    await new Promise((resolve) => setImmediate(resolve));
    expect(channel.sent).toEqual([]);
    channel.release();
    // THEN the data leaves first, then the EOF, and the channel stays open
    await waitFor('the EOF', () => channel.sent.includes('eof'));
    expect(nonEmpty(channel.sent)).toEqual(['data:first', 'eof']);
  });

  it('GIVEN a channel already ended by the client closing it WHEN the socket side ends THEN nothing is written and no error is raised', async () => {
    // GIVEN an ended channel
    const channel = new FakeChannel();
    const errors: Error[] = [];
    channel.on('error', (err) => errors.push(err));
    channel.end();
    await once(channel, 'finish');
    // WHEN
    eofAfterWrites(asChannel(channel));
    await new Promise((resolve) => setImmediate(resolve));
    // THEN
    expect(channel.sent).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('GIVEN a spliced socket WHEN its peer sends and half-closes THEN the channel gets the bytes and EOF, stays open for the answer, and closes when both sides are done', async () => {
    // GIVEN a socket pair, one end spliced to a channel
    const srv = net.createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const accepted = once(srv, 'connection');
    const peer = net.connect({ port: (srv.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
    const [sock] = (await accepted) as [net.Socket];
    const channel = new FakeChannel();
    try {
      spliceChannel(sock, asChannel(channel));
      let answer = '';
      peer.on('data', (d) => (answer += d));
      // WHEN the peer sends its request and half-closes
      peer.end('request');
      // THEN the channel carries the request and EOF, and is not closed
      await waitFor('the EOF on the channel', () => channel.sent.includes('eof'));
      expect(nonEmpty(channel.sent)).toEqual(['data:request', 'eof']);
      // WHEN the answer comes through the channel, then its EOF
      channel.push('answer');
      channel.push(null);
      // THEN the peer reads the answer to its end, and only then the channel is closed
      await once(peer, 'end');
      expect(answer).toBe('answer');
      await waitFor('the channel closed', () => channel.sent.includes('close'));
      expect(nonEmpty(channel.sent)).toEqual(['data:request', 'eof', 'close']);
    } finally {
      peer.destroy();
      sock.destroy();
      await new Promise((resolve) => srv.close(resolve));
    }
  });
});
