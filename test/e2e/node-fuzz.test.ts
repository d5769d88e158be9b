/**
 * 10,000 malformed inputs to the node's SSH port, on loopback, bounded in
 * count and time: each closes its own connection and the node keeps serving.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { startCluster, TestAuth } from '../helpers/cluster';
import { SshUser, sshTo } from '../helpers/openssh';
import { tempDir } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';

const TOTAL = 10_000;
const CONCURRENCY = 64;
const PER_CONNECTION_MS = 3000;

/** A random mix: pure noise, a valid banner then noise, or a banner and a packet with a lying length. */
function payload(i: number): Buffer {
  const noise = randomBytes(4 + (i % 512));
  switch (i % 4) {
    case 0:
      return noise;
    case 1:
      return Buffer.concat([Buffer.from('SSH-2.0-fuzz\r\n'), noise]);
    case 2: {
      const pkt = Buffer.alloc(8);
      pkt.writeUInt32BE(noise.readUInt32BE(0) >>> (i % 24), 0);
      pkt[4] = noise[0] & 0x0f;
      pkt[5] = 20; // KEXINIT
      return Buffer.concat([Buffer.from('SSH-2.0-OpenSSH_9.2\r\n'), pkt, noise]);
    }
    default:
      return Buffer.concat([Buffer.from('SSH-2.0-'), Buffer.alloc(300, 0x41), Buffer.from('\r\n'), noise]);
  }
}

function hit(port: number, data: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => s.destroy(), PER_CONNECTION_MS);
    s.on('connect', () => s.end(data));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    s.resume();
  });
}

describe('node robustness', () => {
  let cluster: TestAuth;
  let work: string;

  beforeAll(async () => {
    work = tempDir('fuzz-');
    cluster = await startCluster();
    await cluster.tctlOk('users', 'add', 'alice', LOGIN);
  });
  afterAll(async () => {
    await cluster?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it(`GIVEN ${TOTAL} malformed connections THEN the node still serves a real login`, async () => {
    let next = 0;
    const worker = async () => {
      while (next < TOTAL) await hit(cluster.nodePort!, payload(next++));
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    expect(next).toBe(TOTAL);
    expect(cluster.daemon!.child.exitCode).toBeNull();
    const alice = await SshUser.create(cluster, work, 'alice', LOGIN);
    const r = await sshTo(alice, cluster.nodePort!, 'test-auth', ['echo', 'still-serving']);
    expect(r.stdout).toBe('still-serving\n');
  }, 240_000);
});
