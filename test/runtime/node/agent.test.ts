/** Agent forwarding on the node: the socket directory lives exactly as long as the session that asked for it. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AgentForwarder } from '../../../runtime/node/agent';
import { logger } from '../../../runtime/utils/logger';

const me = os.userInfo();
const user = { name: me.username, uid: me.uid, gid: me.gid, home: me.homedir, shell: '/bin/sh' };
const refuseChannels = (cb: (err: Error | undefined) => void) => cb(new Error('no client'));

describe('AgentForwarder', () => {
  it('GIVEN a started forwarder WHEN its session ends THEN its private socket directory is gone', async () => {
    // GIVEN
    const fwd = new AgentForwarder(user, refuseChannels, logger('test'));
    await fwd.start();
    const dir = path.dirname(fwd.socketPath);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(fwd.socketPath).mode & 0o777).toBe(0o600);
    // WHEN
    fwd.close();
    // THEN
    expect(fs.existsSync(dir)).toBe(false);
  });

  it('GIVEN a session that ends while forwarding is starting WHEN start completes THEN it fails and leaves no directory behind', async () => {
    // GIVEN
    const before = new Set(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('teleport-agent-')));
    const fwd = new AgentForwarder(user, refuseChannels, logger('test'));
    // WHEN the session closes before start() has listened
    const starting = fwd.start();
    fwd.close();
    // THEN
    await expect(starting).rejects.toThrow(/session ended/);
    const after = fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('teleport-agent-') && !before.has(f));
    expect(after).toEqual([]);
  });

  it('GIVEN a session already ended WHEN forwarding is asked for THEN nothing is created', async () => {
    const fwd = new AgentForwarder(user, refuseChannels, logger('test'));
    fwd.close();
    await expect(fwd.start()).rejects.toThrow(/session ended/);
  });
});
