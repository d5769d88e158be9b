/**
 * The SSH front doors (node 3022, proxy 3023) and their algorithms: what
 * ssh-audit sees with the default config, every advertised key exchange,
 * cipher and MAC with a stock OpenSSH client, mlkem768x25519-sha256 with an
 * OpenSSH that speaks it (>= 9.9; `.ci/openssh-pq` unpacks one), malformed
 * post-quantum key exchange messages, teleport.ciphers / kex_algos /
 * mac_algos deciding what is offered, and tsh's client asking for mlkem first.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { createAuth, startCluster, TestAuth } from '../helpers/cluster';
import { SshUser } from '../helpers/openssh';
import { freePort, run, RunResult, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';
import { DEFAULT_SSH_ALGORITHMS, SSH_ALGORITHMS } from '../../runtime/sshcert/algorithms';
import { C_INIT_LEN } from '../../runtime/sshcert/mlkem768x25519';

const NODE = 'test-auth';
const CLUSTER = 'example.com';
const MLKEM = 'mlkem768x25519-sha256';
/** Names Debian 12's ssh-audit (2.5.0) predates and calls "unknown": the Terrapin countermeasure and the PQ kex. */
const NEWER_THAN_SSH_AUDIT = ['kex-strict-s-v00@openssh.com', MLKEM];

/** An OpenSSH client that speaks mlkem768x25519-sha256: the system's when it does, else the one .ci/openssh-pq unpacks. */
function pqSsh(): string {
  for (const bin of ['ssh', '/opt/openssh-pq/usr/bin/ssh']) {
    const r = spawnSync(bin, ['-Q', 'kex'], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.split('\n').includes(MLKEM)) return bin;
  }
  throw new Error(`no OpenSSH client with ${MLKEM} (>= 9.9): run "sudo bash .ci/openssh-pq"`);
}

interface Audit {
  lines: string[];
  /** Algorithm names per section: kex, key, enc, mac. */
  names: Record<string, string[]>;
  compression: string;
}

async function sshAudit(port: number): Promise<Audit> {
  const r = await run('ssh-audit', ['-n', '-p', String(port), '127.0.0.1']);
  const lines = r.stdout.split('\n');
  const names: Record<string, string[]> = {};
  for (const l of lines) {
    const m = /^\((kex|key|enc|mac)\) (\S+)/.exec(l);
    if (m) (names[m[1]] ??= []).push(m[2]);
  }
  if (!names.kex) throw new Error(`ssh-audit found no algorithms (exit ${r.code}): ${r.stdout}${r.stderr}`);
  return { lines, names, compression: lines.find((l) => l.startsWith('(gen) compression:')) ?? '' };
}

/** OpenSSH's `-v` lines that say what was negotiated. */
function negotiated(stderr: string): { kex?: string; hostKey?: string; cs?: string; sc?: string } {
  return {
    kex: /kex: algorithm: (\S+)/.exec(stderr)?.[1],
    hostKey: /kex: host key algorithm: (\S+)/.exec(stderr)?.[1],
    cs: /kex: client->server cipher: (.*)/.exec(stderr)?.[1].trim(),
    sc: /kex: server->client cipher: (.*)/.exec(stderr)?.[1].trim(),
  };
}

/** One SSH endpoint of a cluster, reached with OpenSSH: a command on the node, or the proxy's subsystem to the node. */
interface Door {
  name: 'node' | 'proxy';
  ssh(extra: string[], bin?: string): Promise<RunResult>;
  /** What a successful `ssh` printed. */
  ok: RegExp;
}

function doors(cluster: TestAuth, user: SshUser): Door[] {
  const base = user.options(NODE, CLUSTER).filter((o, i, all) => o !== 'LogLevel=ERROR' && !(o === '-o' && all[i + 1] === 'LogLevel=ERROR'));
  const door: Door[] = [
    {
      name: 'node',
      ssh: (extra, bin = 'ssh') => run(bin, [...base, '-v', ...extra, '-p', String(cluster.nodePort), `${LOGIN}@127.0.0.1`, 'echo', 'through-the-node']),
      ok: /^through-the-node\n$/,
    },
  ];
  if (cluster.proxyPorts) {
    door.push({
      name: 'proxy',
      // the subsystem pipes to the node: its version line is what comes back once the client's stdin ends
      ssh: (extra, bin = 'ssh') =>
        run(bin, [...base, '-v', ...extra, '-p', String(cluster.proxyPorts!.ssh), `${LOGIN}@127.0.0.1`, '-s', `proxy:127.0.0.1:${cluster.nodePort}@${CLUSTER}`], { input: '' }),
      ok: /^SSH-2\.0-Teleport\r?\n/,
    });
  }
  return door;
}

/** Runs `ssh` through a door and fails with its stderr unless it worked; returns what was negotiated. */
async function connect(door: Door, extra: string[], bin?: string): Promise<ReturnType<typeof negotiated>> {
  const r = await door.ssh(extra, bin);
  if (r.code !== 0 && door.name === 'node') throw new Error(`ssh ${extra.join(' ')} to the ${door.name} exited ${r.code}: ${r.stderr}`);
  if (!door.ok.test(r.stdout)) throw new Error(`ssh ${extra.join(' ')} to the ${door.name} printed ${JSON.stringify(r.stdout)}: ${r.stderr}`);
  return negotiated(r.stderr);
}

// ---------------------------------------------------------------------------
// The SSH transport by hand, for malformed key exchange messages.

function packet(payload: Buffer): Buffer {
  let pad = 8 - ((4 + 1 + payload.length) % 8);
  if (pad < 4) pad += 8;
  const head = Buffer.alloc(5);
  head.writeUInt32BE(1 + payload.length + pad, 0);
  head[4] = pad;
  return Buffer.concat([head, payload, randomBytes(pad)]);
}

const sshString = (b: Buffer | string) => {
  const data = Buffer.from(b);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  return Buffer.concat([len, data]);
};

/**
 * Speaks SSH to `port` up to the client's KEX_ECDH_INIT carrying `cInit` for
 * mlkem768x25519-sha256, then returns how the server ended the connection:
 * the reason code of its DISCONNECT (undefined if it sent none).
 */
function hybridInit(port: number, cInit: Buffer): Promise<{ disconnect?: number; description?: string }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let identSeen = false;
    let sent = false;
    const out: { disconnect?: number; description?: string } = {};
    sock.on('error', reject);
    sock.write('SSH-2.0-malformed-kex-test\r\n');
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!identSeen) {
        const eol = buf.indexOf('\n');
        if (eol < 0) return;
        identSeen = true;
        buf = buf.subarray(eol + 1);
      }
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const len = buf.readUInt32BE(0);
        const payload = buf.subarray(5, 4 + len - buf[4]);
        buf = buf.subarray(4 + len);
        if (payload[0] === 20 /* KEXINIT */ && !sent) {
          sent = true;
          const kexinit = Buffer.concat([
            Buffer.from([20]),
            randomBytes(16),
            sshString(MLKEM),
            sshString('ssh-ed25519-cert-v01@openssh.com'),
            sshString('aes128-ctr'),
            sshString('aes128-ctr'),
            sshString('hmac-sha2-256-etm@openssh.com'),
            sshString('hmac-sha2-256-etm@openssh.com'),
            sshString('none'),
            sshString('none'),
            sshString(''),
            sshString(''),
            Buffer.from([0, 0, 0, 0, 0]),
          ]);
          sock.write(Buffer.concat([packet(kexinit), packet(Buffer.concat([Buffer.from([30 /* KEX_ECDH_INIT */]), sshString(cInit)]))]));
        } else if (payload[0] === 1 /* DISCONNECT */) {
          out.disconnect = payload.readUInt32BE(1);
          out.description = payload.subarray(9, 9 + payload.readUInt32BE(5)).toString();
        }
      }
    });
    sock.on('close', () => resolve(out));
  });
}

/** An ML-KEM-768 encapsulation key whose first coefficient is 4095 (not reduced mod q), and an X25519 key. */
function badModulusInit(): Buffer {
  const init = randomBytes(C_INIT_LEN);
  init[0] = 0xff;
  init[1] |= 0x0f;
  return init;
}

// ---------------------------------------------------------------------------

describe('SSH algorithms: default config', () => {
  let cluster: TestAuth;
  let work: string;
  let alice: SshUser;
  let tshUser: TshUser | undefined;

  beforeAll(async () => {
    work = tempDir('ssh-algos-');
    cluster = await createAuth({ nodePort: await freePort(), proxy: { insecureNoTls: true } });
    cluster.startArgs.push('-d'); // the node and proxy log what each connection negotiated
    cluster.start();
    await cluster.ready();
    await cluster.tctlOk('users', 'add', 'alice', LOGIN);
    alice = await SshUser.create(cluster, work, 'alice', LOGIN);
  });
  afterAll(async () => {
    tshUser?.cleanup();
    await cluster?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test.each(['node', 'proxy'] as const)('GIVEN the default config WHEN ssh-audit checks the %s THEN nothing fails or warns, but for names newer than ssh-audit', async (which) => {
    // WHEN
    const audit = await sshAudit(which === 'node' ? cluster.nodePort! : cluster.proxyPorts!.ssh);
    // THEN: exactly the defaults, a certificate host key, compression only after authentication
    expect(audit.names).toEqual({
      kex: [...DEFAULT_SSH_ALGORITHMS.kex, 'kex-strict-s-v00@openssh.com'],
      key: ['ssh-ed25519-cert-v01@openssh.com'],
      enc: DEFAULT_SSH_ALGORITHMS.ciphers,
      mac: DEFAULT_SSH_ALGORITHMS.macs,
    });
    expect(audit.compression).toBe('(gen) compression: enabled (zlib@openssh.com)');
    expect(audit.lines.filter((l) => l.includes('[fail]'))).toEqual([]);
    const warnings = audit.lines.filter((l) => l.includes('[warn]'));
    expect(warnings.map((l) => /^\(kex\) (\S+)\s+-- \[warn\] unknown algorithm$/.exec(l)?.[1]).sort()).toEqual([...NEWER_THAN_SSH_AUDIT].sort());
    expect(audit.lines.filter((l) => l.startsWith('(rec)'))).toEqual([]);
  });

  const CASES = [
    ...DEFAULT_SSH_ALGORITHMS.kex.filter((k) => k !== MLKEM).map((k) => ['kex', k] as const),
    ...DEFAULT_SSH_ALGORITHMS.ciphers.map((c) => ['cipher', c] as const),
    ...DEFAULT_SSH_ALGORITHMS.macs.map((m) => ['mac', m] as const),
  ];
  describe.each(['node', 'proxy'] as const)('%s', (which) => {
    const door = () => doors(cluster, alice).find((d) => d.name === which)!;

    test.each(CASES)('GIVEN stock OpenSSH 9.2 limited to the %s %s WHEN it connects THEN that is what is negotiated', async (kind, name) => {
      // GIVEN
      const opt = { kex: ['-o', `KexAlgorithms=${name}`], cipher: ['-o', `Ciphers=${name}`], mac: ['-o', 'Ciphers=aes128-ctr', '-o', `MACs=${name}`] }[kind];
      // WHEN
      const n = await connect(door(), opt);
      // THEN
      if (kind === 'kex') expect(n.kex).toBe(name);
      if (kind === 'cipher') expect(n.cs).toMatch(new RegExp(`^${name.replace(/[.@]/g, '\\$&')} MAC: `));
      if (kind === 'mac') expect(n.cs).toBe(`aes128-ctr MAC: ${name} compression: none`);
      expect(n.hostKey).toBe('ssh-ed25519-cert-v01@openssh.com');
    });

    test(`GIVEN an OpenSSH client with ${MLKEM} WHEN it connects with its defaults and then limited to it THEN the post-quantum key exchange is negotiated`, async () => {
      const bin = pqSsh();
      expect((await connect(door(), [], bin)).kex).toBe(MLKEM);
      expect((await connect(door(), ['-o', `KexAlgorithms=${MLKEM}`], bin)).kex).toBe(MLKEM);
    });

    test('GIVEN Debian 12 OpenSSH with its defaults WHEN it connects THEN it gets curve25519-sha256 and an AEAD cipher', async () => {
      const n = await connect(door(), []);
      expect(n.kex).toBe('curve25519-sha256');
      expect(n.cs).toBe('chacha20-poly1305@openssh.com MAC: <implicit> compression: none');
    });

    test.each([
      ['one byte short', () => randomBytes(C_INIT_LEN - 1), /C_INIT\) is 1215 bytes, want 1216/],
      ['only an X25519 key', () => randomBytes(32), /C_INIT\) is 32 bytes, want 1216/],
      ['an encapsulation key that fails the modulus check', badModulusInit, /coefficient 4095 at byte 0 is not reduced mod 3329/],
    ])('GIVEN an open session WHEN another client sends a C_INIT that is %s THEN only that connection is closed, with KEY_EXCHANGE_FAILED', async (_what, init, why) => {
      // GIVEN: a session through the same door that stays open, waiting for a line
      const base = alice.options(NODE, CLUSTER);
      const viaProxy = `ProxyCommand=ssh ${base.join(' ')} -p ${cluster.proxyPorts!.ssh} ${LOGIN}@127.0.0.1 -s proxy:127.0.0.1:${cluster.nodePort}@${CLUSTER}`;
      const hop = which === 'proxy' ? ['-o', viaProxy] : [];
      const session = spawn('ssh', [...base, ...hop, '-p', String(cluster.nodePort), `${LOGIN}@127.0.0.1`, 'echo ready; read line; echo "got $line"']);
      let out = '';
      session.stdout.on('data', (d) => (out += d));
      try {
        await waitFor('the session to start', () => out.includes('ready'), 30_000);
        const logged = () => cluster.daemon!.stdout + cluster.daemon!.stderr;
        const before = logged().length;
        // WHEN
        const ended = await hybridInit(which === 'node' ? cluster.nodePort! : cluster.proxyPorts!.ssh, init());
        // THEN: disconnected with reason 3 (SSH_DISCONNECT_KEY_EXCHANGE_FAILED), the reason in the server's log only
        expect(ended).toEqual({ disconnect: 3, description: '' });
        await waitFor(`the ${which} to log why`, () => logged().slice(before).split('\n').some((l) => l.includes(`"component":"${which}:ssh"`) && why.test(l)), 30_000);
        // and the open session goes on
        session.stdin.end('still-here\n');
        await waitFor('the session to answer', () => out.includes('got still-here'), 30_000);
      } finally {
        session.kill();
      }
      expect((await connect(door(), [])).kex).toBe('curve25519-sha256');
    });
  });

  test('GIVEN stock OpenSSH with mlkem WHEN it rekeys every 16 KiB over a 1 MiB transfer THEN each new post-quantum exchange agrees (K is an SSH string, not an mpint)', async () => {
    // GIVEN: a shared secret encoded the wrong way (as an mpint) would break about every other exchange
    const bin = pqSsh();
    const payload = randomBytes(1 << 20).toString('base64');
    // WHEN
    const r = await run(bin, [...alice.options(NODE, CLUSTER), '-o', `KexAlgorithms=${MLKEM}`, '-o', 'RekeyLimit=16K', '-v', '-p', String(cluster.nodePort), `${LOGIN}@127.0.0.1`, 'sha256sum'], { input: payload });
    // THEN
    expect(r.code).toBe(0);
    expect(r.stdout.split(' ')[0]).toBe(createHash('sha256').update(payload).digest('hex'));
    expect((r.stderr.match(/SSH2_MSG_KEX_ECDH_REPLY received|expecting SSH2_MSG_KEX_ECDH_REPLY/g) ?? []).length).toBeGreaterThan(20);
  });

  test(`GIVEN tsh WHEN it runs a command on the node THEN both its hops (proxy, node) negotiate ${MLKEM}`, async () => {
    // GIVEN
    tshUser = await TshUser.signUp(cluster, 'bob', [LOGIN]);
    await tshUser.login();
    const before = cluster.daemon!.stderr.length + cluster.daemon!.stdout.length;
    // WHEN
    const r = await tshUser.tsh(['ssh', `${LOGIN}@${NODE}`, 'echo', 'via-tsh']);
    // THEN
    expect(r).toMatchObject({ code: 0, stdout: 'via-tsh\n' });
    const lines = (cluster.daemon!.stdout + cluster.daemon!.stderr).slice(before).split('\n');
    const exchanges = lines.filter((l) => l.includes('"ssh key exchange done"')).map((l) => JSON.parse(l) as { component: string; kex: string; mac: string; cipher: string });
    expect(exchanges.map((e) => e.component).sort()).toEqual(['node:ssh', 'proxy:ssh']);
    for (const e of exchanges) expect(e).toMatchObject({ kex: MLKEM, cipher: DEFAULT_SSH_ALGORITHMS.ciphers[0], mac: 'implicit' });
  });
});

describe('SSH algorithms: teleport.ciphers / kex_algos / mac_algos', () => {
  let work: string;
  let restricted: TestAuth;
  let everything: TestAuth;
  let alice: SshUser;
  let carol: SshUser;

  beforeAll(async () => {
    work = tempDir('ssh-algos-cfg-');
    const list = (names: readonly string[]) => `[${names.join(', ')}]`;
    [restricted, everything] = await Promise.all([
      startCluster({
        proxy: { insecureNoTls: true },
        teleportExtra: ['ciphers: [aes256-ctr]', 'kex_algos: [curve25519-sha256]', 'mac_algos: [hmac-sha2-256-etm@openssh.com]'],
      }),
      startCluster({
        clusterName: CLUSTER,
        teleportExtra: [
          `ciphers: ${list(SSH_ALGORITHMS.cipher.supported)}`,
          `kex_algos: ${list(SSH_ALGORITHMS.kex.supported)}`,
          `mac_algos: ${list(SSH_ALGORITHMS.mac.supported)}`,
        ],
      }),
    ]);
    await Promise.all([restricted.tctlOk('users', 'add', 'alice', LOGIN), everything.tctlOk('users', 'add', 'carol', LOGIN)]);
    fs.mkdirSync(`${work}/r`);
    fs.mkdirSync(`${work}/e`);
    [alice, carol] = await Promise.all([SshUser.create(restricted, `${work}/r`, 'alice', LOGIN), SshUser.create(everything, `${work}/e`, 'carol', LOGIN)]);
  });
  afterAll(async () => {
    await Promise.all([restricted?.cleanup(), everything?.cleanup()]);
    fs.rmSync(work, { recursive: true, force: true });
  });

  test.each(['node', 'proxy'] as const)('GIVEN only aes256-ctr, curve25519-sha256 and hmac-sha2-256-etm WHEN ssh-audit and OpenSSH look at the %s THEN exactly those are offered and negotiated', async (which) => {
    const door = doors(restricted, alice).find((d) => d.name === which)!;
    // WHEN
    const audit = await sshAudit(which === 'node' ? restricted.nodePort! : restricted.proxyPorts!.ssh);
    const n = await connect(door, []);
    const refused = await door.ssh(['-o', 'Ciphers=aes128-ctr']);
    // THEN
    expect(audit.names).toEqual({
      kex: ['curve25519-sha256', 'kex-strict-s-v00@openssh.com'],
      key: ['ssh-ed25519-cert-v01@openssh.com'],
      enc: ['aes256-ctr'],
      mac: ['hmac-sha2-256-etm@openssh.com'],
    });
    expect(n).toEqual({
      kex: 'curve25519-sha256',
      hostKey: 'ssh-ed25519-cert-v01@openssh.com',
      cs: 'aes256-ctr MAC: hmac-sha2-256-etm@openssh.com compression: none',
      sc: 'aes256-ctr MAC: hmac-sha2-256-etm@openssh.com compression: none',
    });
    expect(refused.code).toBe(255);
    expect(refused.stderr).toMatch(/no matching cipher found/);
    expect(door.ok.test(refused.stdout)).toBe(false);
  });

  const OPT_IN = [
    ...SSH_ALGORITHMS.kex.supported.filter((k) => !SSH_ALGORITHMS.kex.defaults.includes(k)).map((k) => ['kex', k] as const),
    ...SSH_ALGORITHMS.mac.supported.filter((m) => !SSH_ALGORITHMS.mac.defaults.includes(m)).map((m) => ['mac', m] as const),
  ];
  test.each(OPT_IN)('GIVEN every supported name configured WHEN OpenSSH is limited to the opt-in %s %s THEN it works', async (kind, name) => {
    const door = doors(everything, carol)[0];
    const n = await connect(door, kind === 'kex' ? ['-o', `KexAlgorithms=${name}`] : ['-o', 'Ciphers=aes128-ctr', '-o', `MACs=${name}`]);
    if (kind === 'kex') expect(n.kex).toBe(name);
    else expect(n.cs).toBe(`aes128-ctr MAC: ${name} compression: none`);
  });

  test('GIVEN an unknown algorithm in teleport.yaml WHEN teleport starts THEN it exits non-zero with the file:line and the supported names', async () => {
    // GIVEN
    const bad = await createAuth({ teleportExtra: ['kex_algos:', '  - curve25519-sha256', '  - diffie-hellman-group-exchange-sha256'] });
    try {
      const line = fs.readFileSync(bad.configPath, 'utf8').split('\n').findIndex((l) => l.includes('group-exchange')) + 1;
      // WHEN
      const d = bad.start();
      const code = await d.exited;
      // THEN
      expect(code).not.toBe(0);
      expect(d.stderr).toContain(
        `${bad.configPath}:${line}:7: teleport.kex_algos[1]: "diffie-hellman-group-exchange-sha256" is not a supported key exchange algorithm (refused: the SSH library has no server side for group exchange); supported: ${SSH_ALGORITHMS.kex.supported.join(', ')}`,
      );
      expect(fs.existsSync(bad.dataDir)).toBe(false);
    } finally {
      await bad.cleanup();
    }
  });
});
