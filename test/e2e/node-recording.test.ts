/**
 * Interactive sessions are recorded on the node's disk first, shipped to the
 * auth service, and play back byte for byte — also when the node is killed
 * in the middle of a session and started again.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fetchRecording } from '../../runtime/recordings/playback';
import { startAuth, startCluster, TestAuth, TestNode } from '../helpers/cluster';
import { SshUser, sshTo } from '../helpers/openssh';
import { Daemon, tempDir, waitFor } from '../helpers/proc';
import { scratchDir } from '../helpers/scratch';
import { LOGIN } from '../helpers/sshd';

async function recordingOf(auth: TestAuth, sid: string) {
  const client = await auth.adminClient();
  try {
    return await fetchRecording(client, sid);
  } finally {
    client.close();
  }
}

describe('session recording', () => {
  let work: string;
  beforeAll(() => {
    work = tempDir('recording-');
  });
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  it('GIVEN an interactive session THEN its recording plays back exactly what the client saw', async () => {
    const cluster = await startCluster();
    try {
      await cluster.tctlOk('users', 'add', 'alice', LOGIN);
      const alice = await SshUser.create(cluster, work, 'alice', LOGIN);
      const r = await sshTo(alice, cluster.nodePort!, 'test-auth', [], ['-tt'], 'echo typed-$((6*7))\nprintf "\\x00\\xff\\x1b[0m done\\n"\nexit\n');
      expect(r.stdout).toContain('typed-42');
      const start = await waitFor('the session.end event', async () => (await cluster.events(['session.end']))[0]);
      const rec = await waitFor('the recording on the auth server', () => recordingOf(cluster, start.sid).catch(() => undefined));
      expect(rec.bytes.equals(r.stdoutBytes)).toBe(true);
      expect(rec.bytes.length).toBeGreaterThan(0);
      const kinds = rec.events.map((e) => e.event);
      expect(kinds[0]).toBe('session.start');
      expect(kinds).toContain('print');
      expect(kinds[kinds.length - 1]).toBe('session.end');
      expect((await cluster.events(['session.upload'])).map((e) => e.sid)).toContain(start.sid);
    } finally {
      await cluster.cleanup();
    }
  });

  it('GIVEN the node is killed mid-session WHEN it starts again THEN what was on disk reaches the auth server', async () => {
    const auth = await startAuth({ tokens: ['node:recording-token-1'] });
    const node = await TestNode.create(auth, { token: 'recording-token-1', caPin: await auth.caPin(), nodeName: 'rec-node' });
    try {
      node.start();
      await node.ready();
      await auth.tctlOk('users', 'add', 'alice', LOGIN);
      const alice = await SshUser.create(auth, scratchDir('rec2-'), 'alice', LOGIN);
      const session = Daemon.spawn('ssh', [...alice.options('rec-node'), '-p', String(node.port), '-tt', `${LOGIN}@127.0.0.1`, 'echo MARKER-$((40+2)); exec sleep 600']);
      const dir = path.join(node.dataDir, 'log', 'upload', 'sessions', 'default');
      const sid = await waitFor('the marker on the node disk', () => {
        const f = fs.existsSync(dir) ? fs.readdirSync(dir).find((n) => n.endsWith('.session.bytes')) : undefined;
        return f && fs.readFileSync(path.join(dir, f), 'utf8').includes('MARKER-42') ? f.replace('.session.bytes', '') : undefined;
      });
      await node.daemon!.stop('SIGKILL');
      await session.stop();
      node.start();
      await node.ready();
      const rec = await waitFor('the interrupted recording on the auth server', () => recordingOf(auth, sid).catch(() => undefined), 30_000);
      expect(rec.bytes.toString()).toContain('MARKER-42');
      expect(rec.events[0].event).toBe('session.start');
    } finally {
      await node.cleanup();
      await auth.cleanup();
    }
  });
});
