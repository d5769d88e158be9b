/** scp and sftp through the node move a 50 MiB file both ways intact. */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startCluster, TestAuth } from '../helpers/cluster';
import { SshUser } from '../helpers/openssh';
import { run, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';

const NODE = 'test-auth';
const sha256 = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');

describe('file transfer through the node', () => {
  let cluster: TestAuth;
  let work: string;
  let alice: SshUser;
  let source: string;

  beforeAll(async () => {
    work = tempDir('node-files-');
    cluster = await startCluster();
    await cluster.tctlOk('users', 'add', 'alice', LOGIN);
    alice = await SshUser.create(cluster, work, 'alice', LOGIN);
    source = path.join(work, 'big.bin');
    fs.writeFileSync(source, randomBytes(50 * 1024 * 1024));
  });
  afterAll(async () => {
    await cluster?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('GIVEN scp WHEN a 50 MiB file goes up and comes back THEN the sha256 matches and both are audited', async () => {
    const remote = path.join(work, 'remote-scp.bin');
    const back = path.join(work, 'back-scp.bin');
    // -O: the classic scp protocol (exec "scp -t" / "scp -f"); OpenSSH 9 otherwise speaks sftp, tested below.
    const opts = [...alice.options(NODE), '-O', '-P', String(cluster.nodePort)];
    const up = await run('scp', [...opts, source, `${LOGIN}@127.0.0.1:${remote}`]);
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    const down = await run('scp', [...opts, `${LOGIN}@127.0.0.1:${remote}`, back]);
    expect(down.code).toBe(0);
    expect(sha256(back)).toBe(sha256(source));
    await waitFor('scp upload and download events', async () => {
      const actions = (await cluster.events(['scp'])).map((e) => e.action);
      return actions.includes('upload') && actions.includes('download');
    });
  });

  it('GIVEN sftp WHEN a 50 MiB file goes up and comes back THEN the sha256 matches', async () => {
    const remote = path.join(work, 'remote-sftp.bin');
    const back = path.join(work, 'back-sftp.bin');
    const r = await run('sftp', [...alice.options(NODE), '-P', String(cluster.nodePort), '-b', '-', `${LOGIN}@127.0.0.1`], {
      input: `put ${source} ${remote}\nget ${remote} ${back}\n`,
    });
    expect(r.code).toBe(0);
    expect(sha256(back)).toBe(sha256(source));
    await waitFor('the sftp subsystem event', async () => (await cluster.events(['subsystem'])).some((e) => e.name === 'sftp' && e.code === 'T3001I'));
  });
});
