/**
 * Bulk data through the node and through the proxy to the node, with the stock
 * OpenSSH client (issue 22's data paths): every byte arrives, in both
 * directions and with each cipher the node offers, and an end that stops
 * reading (the client, or the command on the node) holds the writer back (SSH
 * windows and socket backpressure all the way) instead of the node and the
 * proxy buffering the stream.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startCluster, TestAuth } from '../helpers/cluster';
import { SshUser } from '../helpers/openssh';
import { run, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';

const NODE = 'test-auth';
const MIB = 1024 * 1024;

describe('data paths: node and proxy', () => {
  let cluster: TestAuth;
  let work: string;
  let alice: SshUser;
  /** 24 MiB of random bytes (not a multiple of a packet), and its SHA-256. */
  let file: string;
  let digest: string;

  beforeAll(async () => {
    work = tempDir('datapath-');
    cluster = await startCluster({ proxy: { insecureNoTls: true } });
    await cluster.tctlOk('users', 'add', 'alice', LOGIN);
    alice = await SshUser.create(cluster, work, 'alice', LOGIN);
    file = path.join(work, 'payload');
    const data = randomBytes(24 * MIB + 12_345);
    fs.writeFileSync(file, data);
    digest = createHash('sha256').update(data).digest('hex');
  });
  afterAll(async () => {
    await cluster?.cleanup();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  /** OpenSSH arguments that reach the node directly or through the proxy. */
  const route = (via: 'node' | 'proxy', extra: string[] = []): string[] => [
    ...alice.options(NODE),
    ...extra,
    ...(via === 'proxy' ? ['-o', `ProxyCommand=ssh ${alice.options(NODE).join(' ')} -p ${cluster.proxyPorts!.ssh} %r@127.0.0.1 -s proxy:%h:%p`] : []),
    '-p', String(cluster.nodePort),
    `${LOGIN}@${via === 'proxy' ? NODE : '127.0.0.1'}`,
  ];

  describe.each(['node', 'proxy'] as const)('the %s path', (via) => {
    it.each(['chacha20-poly1305@openssh.com', 'aes128-gcm@openssh.com', 'aes256-ctr'])(
      'GIVEN 24 MiB of random bytes WHEN sent up with %s THEN the far end hashes exactly them',
      async (cipher) => {
        // WHEN the file is the client's stdin and the far end hashes what it reads
        const r = await run('sh', ['-c', 'ssh "$@" < "$0"', file, ...route(via, ['-c', cipher]), 'sha256sum']);
        // THEN the digest is the file's
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        expect(r.stdout.split(' ')[0]).toBe(digest);
      },
    );

    it('GIVEN a file on the node WHEN it is read down THEN the client receives exactly its bytes', async () => {
      // WHEN the far end cats the file into the client's stdout, hashed here
      const r = await run('sh', ['-c', 'ssh "$@" | sha256sum', 'sh', ...route(via), `cat ${file}`]);
      // THEN it is the file's digest
      expect(r.code).toBe(0);
      expect(r.stdout.split(' ')[0]).toBe(digest);
    });
  });

  it('GIVEN a client that stops reading WHEN the far end writes 256 MiB through the proxy THEN the writer is held back, and every byte arrives once the client reads', async () => {
    const total = 256 * MIB;
    const pidFile = path.join(work, 'writer.pid');
    // GIVEN a far-end writer whose pid we learn, and a client whose output nobody reads yet
    const ssh = spawn('ssh', [...route('proxy'), `echo $$ > ${pidFile}; exec head -c ${total} /dev/zero`], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      ssh.stdout.pause();
      const pid = await waitFor('the writer to start', () => fs.existsSync(pidFile) && Number(fs.readFileSync(pidFile, 'utf8').trim()) > 0 && Number(fs.readFileSync(pidFile, 'utf8').trim()), 30_000);
      /** Bytes the writer has written so far (its `wchar`), while it runs. */
      const written = () => Number(/wchar: (\d+)/.exec(fs.readFileSync(`/proc/${pid}/io`, 'utf8'))![1]);
      // WHEN the writer stops making progress: the same count on two polls in a row (a writer that
      // finished, because the stream was buffered whole, is gone from /proc and never passes)
      let last = -1;
      const held = await waitFor(
        'the writer to be held back',
        () => {
          const now = written();
          const still = now === last && now > 0;
          last = now;
          return still && now;
        },
        60_000,
        200,
      );
      // THEN it is held back well before the end: what sits in the node, the proxy and the sockets is bounded
      expect(held).toBeLessThan(total / 2);
      // WHEN the client reads THEN every byte arrives and ssh exits 0
      let received = 0;
      ssh.stdout.on('data', (d: Buffer) => (received += d.length));
      ssh.stdout.resume();
      const code = await new Promise<number | null>((resolve) => ssh.once('close', resolve));
      expect(code).toBe(0);
      expect(received).toBe(total);
    } finally {
      ssh.kill();
    }
  });

  it('GIVEN a far end that stops reading WHEN the client sends 256 MiB through the proxy THEN the client is held back, and every byte arrives once the far end reads', async () => {
    const total = 256 * MIB;
    const pidFile = path.join(work, 'reader.pid');
    // GIVEN a far-end shell that stops itself before it reads, then counts what it reads
    const ssh = spawn('ssh', [...route('proxy'), `echo $$ > ${pidFile}; kill -STOP $$; exec wc -c`], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    ssh.stdout.on('data', (d: Buffer) => (out += d));
    const closed = new Promise<number | null>((resolve) => ssh.once('close', resolve));
    /** The far end's pid while it may still be stopped (so that a failed test does not leave it behind). */
    let stopped: number | undefined;
    try {
      // WHEN the client is fed as fast as it takes the bytes
      const chunk = Buffer.alloc(MIB);
      let sent = 0;
      const pump = () => {
        while (sent < total) {
          sent += chunk.length;
          if (!ssh.stdin.write(chunk)) return void ssh.stdin.once('drain', pump);
        }
        ssh.stdin.end();
      };
      pump();
      const pid = (stopped = await waitFor('the far end to stop itself', () => fs.existsSync(pidFile) && /\tT \(stopped\)/.test(fs.readFileSync(`/proc/${Number(fs.readFileSync(pidFile, 'utf8'))}/status`, 'utf8')) && Number(fs.readFileSync(pidFile, 'utf8')), 30_000));
      // and the client stops taking them (the same count on two polls in a row)
      let last = -1;
      const held = await waitFor(
        'the client to be held back',
        () => {
          const still = sent === last;
          last = sent;
          return still && sent;
        },
        60_000,
        200,
      );
      // THEN it is held back well before the end
      expect(held).toBeLessThan(total / 2);
      // WHEN the far end goes on THEN it counts every byte
      process.kill(pid, 'SIGCONT');
      stopped = undefined;
      expect(await closed).toBe(0);
      expect(Number(out.trim())).toBe(total);
    } finally {
      if (stopped) process.kill(stopped, 'SIGKILL');
      ssh.kill();
    }
  });
});
