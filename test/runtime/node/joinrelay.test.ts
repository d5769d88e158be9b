/** The relay that joins a session of another process of the node (runtime/node/joinrelay.ts), between two relays in one process. */
import { EventEmitter } from 'node:events';
import type { ServerChannel } from 'ssh2';
import { asJoinMessage, JoinRelay, type JoinMessage } from '../../../runtime/node/joinrelay';
import { SessionDirectory, type Joinable, type JoiningParty } from '../../../runtime/node/shared';
import { logger } from '../../../runtime/utils/logger';

/** An SSH channel as a joining party has it: what is written to it and how it ended. */
class FakeChannel extends EventEmitter {
  out = '';
  err = '';
  status?: number | string;
  ended = false;
  writable = true;
  stderr = { write: (d: Buffer | string) => (this.err += d.toString()) };
  write(d: Buffer | string): boolean {
    this.out += d.toString();
    return true;
  }
  exit(s: number | string): void {
    this.status = s;
  }
  end(): void {
    this.ended = true;
    this.writable = false;
  }
}

/** A session that runs in the owner's process, recording what its parties do. */
class FakeSession implements Joinable {
  parties: JoiningParty[] = [];
  typed = '';
  size?: [number, number];
  constructor(readonly login: string) {}
  joinEvent() {
    return { event: 'session.join' };
  }
  join(p: JoiningParty): void {
    this.parties.push(p);
    p.stream.on('data', (d: Buffer) => (this.typed += d.toString()));
  }
  resize(cols: number, rows: number): void {
    this.size = [cols, rows];
  }
}

describe('JoinRelay', () => {
  const log = logger('test');
  /** The owner's and the joiner's relays, wired to each other as the primary routes them. */
  function pair() {
    const ownerDir = new SessionDirectory(undefined, log);
    const wire: { owner?: JoinRelay; joiner?: JoinRelay } = {};
    const deliver = (to: 'owner' | 'joiner') => (m: JoinMessage) => queueMicrotask(() => wire[to]!.receive(structuredClone(m)));
    wire.owner = new JoinRelay(deliver('joiner'), ownerDir, 'node-1');
    wire.joiner = new JoinRelay(deliver('owner'), new SessionDirectory(undefined, log), 'node-1');
    return { ownerDir, owner: wire.owner, joiner: wire.joiner };
  }
  const settle = () => new Promise((r) => setImmediate(r));

  it('GIVEN a session in the owner WHEN a channel of the joiner joins THEN output, input and resize cross, and its exit status reaches the party', async () => {
    // GIVEN
    const { ownerDir, joiner } = pair();
    const session = new FakeSession('root');
    ownerDir.add('s1', session, () => ({}) as never);
    const ch = new FakeChannel();
    const remote = joiner.remoteSession('s1', 'root');
    // WHEN
    remote.join({ user: 'bob', login: 'root', remote: '10.0.0.1:5', stream: ch as unknown as ServerChannel, onLeave: () => undefined });
    await settle();
    expect(session.parties.map((p) => p.user)).toEqual(['bob']);
    const relayed = session.parties[0].stream;
    relayed.write(Buffer.from('prompt$ '));
    ch.emit('data', Buffer.from('ls\n'));
    remote.resize(120, 40);
    await settle();
    // THEN
    expect(ch.out).toBe('prompt$ ');
    expect(session.typed).toBe('ls\n');
    expect(session.size).toEqual([120, 40]);
    expect(remote.joinEvent({ user: 'bob', remote: '10.0.0.1:5' })).toMatchObject({ event: 'session.join', sid: 's1', login: 'root', server_id: 'node-1' });
    // WHEN the session ends with status 3 THEN the party's channel exits 3 and ends
    relayed.exit(3);
    relayed.end();
    await settle();
    expect([ch.status, ch.ended]).toEqual([3, true]);
    ownerDir.close();
  });

  it('GIVEN a session that ended, or runs as another login THEN the party is told and its channel ends with status 1', async () => {
    const { ownerDir, joiner } = pair();
    ownerDir.add('s2', new FakeSession('alice'), () => ({}) as never);
    // (the owner checks the joining connection's own login, whatever the joiner's side believed the session's was)
    for (const [sid, believed, why] of [
      ['gone', 'root', 'session gone is not running on this node'],
      ['s2', 'root', 'session s2 runs as login "alice": join it with that login'],
      ['s2', 'alice', 'session s2 runs as login "alice": join it with that login'],
    ]) {
      const ch = new FakeChannel();
      joiner.remoteSession(sid, believed).join({ user: 'bob', login: 'root', remote: 'x', stream: ch as unknown as ServerChannel, onLeave: () => undefined });
      await settle();
      expect([ch.err, ch.status, ch.ended]).toEqual([`${why}\r\n`, 1, true]);
    }
    ownerDir.close();
  });

  it('GIVEN messages out of protocol THEN they are not taken', () => {
    expect(asJoinMessage({ t: 'join.in', jid: 'a', data: 'text, not bytes' })).toBeUndefined();
    expect(asJoinMessage({ t: 'join.open', jid: 'a', sid: 's' })).toBeUndefined();
    expect(asJoinMessage({ t: 'join.resize', jid: 'a', cols: 1.5, rows: 2 })).toBeUndefined();
    expect(asJoinMessage({ t: 'join.other', jid: 'a' })).toBeUndefined();
    expect(asJoinMessage({ t: 'join.close', jid: 'x'.repeat(65) })).toBeUndefined();
    expect(asJoinMessage({ t: 'join.in', jid: 'a', data: new Uint8Array([1]) })).toEqual({ t: 'join.in', jid: 'a', data: new Uint8Array([1]) });
  });
});
