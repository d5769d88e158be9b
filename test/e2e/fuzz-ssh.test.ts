/**
 * Fuzzing the SSH listeners, kept as tests: the node (3022), the proxy
 * (3023) and its reverse-tunnel listener (3024, before authentication only), before authentication (noise, mutated version lines and packets)
 * and after a real login with a user certificate (malformed channel and
 * global requests, absurd pty sizes, env floods, binary and huge commands,
 * subsystem names, window changes, out-of-order channel messages; on the
 * proxy, malformed proxy subsystem targets). Each bad input closes its own
 * channel or connection (a bystander's session carries on); afterwards OpenSSH still logs in and the daemon's
 * settled memory is back near where it was. On loopback only, bounded in
 * count and time; the inputs are deterministic (the seed and the input index
 * are in every failure).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import { Client, ClientChannel } from 'ssh2';
import { parseProxySubsystem } from '../../runtime/proxy/target';
import { CLIENT_ALGORITHMS, clientCertIdentity } from '../../runtime/sshcert';
import { loadPrivateKey } from '../../runtime/sshcert/privatekey';
import { createAuth, TestAuth } from '../helpers/cluster';
import { expectNearBaseline, mutate, Rng, runFuzz, SETTLE_NODE_ARGS, settledMemory, sshPreAuthInput, sshString, sshUint32, type Memory } from '../helpers/fuzz';
import { SshUser, sshTo } from '../helpers/openssh';
import { freePort, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';

// ssh2's packet writer (no typings): malformed messages go out on the real, encrypted transport.
const { sendPacket } = require('ssh2/lib/protocol/utils') as { sendPacket(proto: unknown, packet: Buffer): void };

const SEED = 0x5eed_0016;
const PRE_AUTH_INPUTS = 3000;
/** Fewer on the node: a bad input there often costs a fresh login (key exchange and certificate checks), which is what takes the time. */
const NODE_POST_AUTH_INPUTS = 600;
const PROXY_POST_AUTH_INPUTS = 800;

// --- pre-authentication -------------------------------------------------------------------------

/** Writes `data` and half-closes; resolves when the server closes (undefined) — the runner fails it if that never comes. */
function hitRaw(port: number, data: Buffer, signal: AbortSignal): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    signal.addEventListener('abort', () => s.destroy());
    s.on('connect', () => s.end(data));
    s.on('error', () => undefined);
    s.on('close', () => resolve(undefined));
    s.resume();
  });
}

// --- post-authentication ------------------------------------------------------------------------

interface Identity {
  key: ReturnType<typeof loadPrivateKey>;
  cert: string;
}

function login(port: number, id: Identity): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new Client();
    c.once('ready', () => {
      c.on('error', () => undefined);
      resolve(c);
    });
    c.once('error', reject);
    c.connect({ host: '127.0.0.1', port, username: LOGIN, agent: clientCertIdentity(id.key, id.cert), algorithms: CLIENT_ALGORITHMS, hostVerifier: () => true, readyTimeout: 20_000 });
  });
}

/** Sends `payload` as one SSH message on the authenticated, encrypted transport (ssh2's own packet writer). */
function sendRaw(c: Client, payload: Buffer): void {
  const proto = (c as unknown as { _protocol: { _packetRW: { write: { allocStart: number; alloc(n: number): Buffer; finalize(b: Buffer): Buffer } } } })._protocol;
  const rw = proto._packetRW.write;
  const at = rw.allocStart;
  const packet = rw.alloc(payload.length);
  packet.set(payload, at);
  sendPacket(proto, rw.finalize(packet));
}

/** A global request with want-reply; resolves true on success, false on failure, 'closed' when the connection drops. */
function globalRequest(c: Client, name: string, data: Buffer): Promise<boolean | 'closed'> {
  return new Promise((resolve) => {
    const onClose = () => resolve('closed');
    c.once('close', onClose);
    (c as unknown as { _callbacks: ((failed: boolean) => void)[] })._callbacks.push((failed) => {
      c.off('close', onClose);
      resolve(!failed);
    });
    sendRaw(c, Buffer.concat([Buffer.from([80]), sshString(name), Buffer.from([1]), data]));
  });
}

/** Waits for a channel to close, or its connection. */
function closed(c: Client, ch: ClientChannel): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      c.off('close', done);
      resolve();
    };
    ch.on('close', done);
    ch.on('error', () => undefined);
    c.once('close', done);
    ch.resume();
    ch.stderr.resume();
  });
}

/**
 * Bytes for a command that no shell reads as more than `true` and arguments: letters, digits,
 * control characters but line ends, bytes above 0x7f (invalid UTF-8 too) and NUL — never a shell
 * metacharacter, so no fuzzed input runs anything (the tests run as root).
 */
function harmlessCommand(rng: Rng): Buffer {
  const len = rng.pick([0, 1, 100, 4000, 30_000, 140_000, 300_000]);
  const safe = Buffer.from('abcXYZ019 \t-_.,:+@/');
  const arg = Buffer.alloc(len);
  for (let i = 0; i < len; i++) {
    const k = rng.int(4);
    arg[i] = k === 0 ? safe[rng.int(safe.length)] : k === 1 ? 1 + rng.int(9) : k === 2 ? 0x80 + rng.int(0x80) : rng.chance(0.1) ? 0 : 0x41;
  }
  return Buffer.concat([Buffer.from('true '), arg]);
}

function absurd(rng: Rng): number {
  return rng.pick([0, 1, 65535, 65536, 0x7fffffff, 0x80000000, 0xffffffff, rng.uint32()]);
}

type NodeAction =
  | { kind: 'exec'; command: Buffer; pty?: { rows: number; cols: number; height: number; width: number; term: string }; env?: Record<string, string> }
  | { kind: 'shell-resize'; sizes: [number, number, number, number][]; signals: string[] }
  | { kind: 'subsystem'; name: string }
  | { kind: 'raw'; packets: Buffer[] }
  | { kind: 'global'; name: string; data: Buffer };

function channelMessage(rng: Rng, chan: number): Buffer {
  const type = rng.pick([93, 94, 95, 96, 97, 98, 99, 100]);
  const body =
    type === 98
      ? Buffer.concat([sshString(rng.pick(['exec', 'pty-req', 'env', 'subsystem', 'window-change', 'signal', 'shell', 'x11-req', 'auth-agent-req@openssh.com', rng.text(rng.int(300))])), Buffer.from([rng.int(2)]), rng.bytes(rng.int(64))])
      : type === 93
        ? sshUint32(rng.pick([0, 1, 0x7fffffff, 0xffffffff]))
        : type === 94 || type === 95
          ? Buffer.concat([type === 95 ? sshUint32(rng.int(3)) : Buffer.alloc(0), sshString(rng.bytes(rng.int(100)))])
          : Buffer.alloc(0);
  return Buffer.concat([Buffer.from([type]), sshUint32(chan), body]);
}

function nodeAction(rng: Rng): NodeAction {
  const r = rng.int(100);
  if (r < 25) {
    return {
      kind: 'exec',
      command: harmlessCommand(rng),
      ...(rng.chance(0.3) ? { pty: { rows: absurd(rng), cols: absurd(rng), height: absurd(rng), width: absurd(rng), term: rng.pick(['xterm', '', 'x'.repeat(5000), '\u0000\u00ff', '../../../etc']) } } : {}),
      ...(rng.chance(0.3) ? { env: Object.fromEntries(Array.from({ length: rng.pick([1, 50, 500]) }, () => [rng.pick(['LANG', 'LC_ALL', 'TERM', 'LD_PRELOAD', 'PATH', rng.text(1 + rng.int(40))]), rng.text(rng.pick([0, 10, 5000]))])) } : {}),
    };
  }
  if (r < 30) {
    return {
      kind: 'shell-resize',
      sizes: Array.from({ length: 1 + rng.int(20) }, () => [absurd(rng), absurd(rng), absurd(rng), absurd(rng)]),
      signals: Array.from({ length: rng.int(4) }, () => rng.pick(['INT', 'KILL', 'STOP', 'SIGTERM', 'BOGUS', '', 'x'.repeat(1000)])),
    };
  }
  if (r < 55) return { kind: 'subsystem', name: rng.pick(['sftp\0', 'SFTP', '', 'x'.repeat(rng.int(40_000)), '../../bin/sh', rng.text(rng.int(64), 'abc\0\u00ff/.:@')]) };
  if (r < 80) {
    // Channel messages for channels that are not open, or that are being opened with bad values.
    const packets = Array.from({ length: 1 + rng.int(6) }, () =>
      rng.chance(0.3)
        ? Buffer.concat([Buffer.from([90]), sshString(rng.pick(['session', 'direct-streamlocal@openssh.com', 'x11', 'auth-agent@openssh.com', rng.text(rng.int(80))])), sshUint32(rng.pick([0, 1, 9999])), sshUint32(absurd(rng)), sshUint32(absurd(rng))])
        : channelMessage(rng, rng.pick([0, 1, 2, 100, 0x7fffffff, 0xffffffff])),
    );
    return { kind: 'raw', packets: packets.map((p) => (rng.chance(0.2) ? mutate(rng, p) : p)) };
  }
  return {
    kind: 'global',
    name: rng.pick(['tcpip-forward', 'cancel-tcpip-forward', 'streamlocal-forward@openssh.com', 'no-more-sessions@openssh.com', 'hostkeys-prove-00@openssh.com', rng.text(rng.int(200))]),
    // Forwarding requests name loopback or nothing a resolver would be asked about; the node may really listen (port 0: any free port).
    data: rng.chance(0.5) ? rng.bytes(rng.int(200)) : Buffer.concat([sshString(rng.pick(['127.0.0.1', '::1', '127.0.0.1\0x'])), sshUint32(rng.pick([0, 65536, 0xffffffff]))]),
  };
}

function describeAction(a: NodeAction): string {
  return JSON.stringify(a, (_k, v: unknown) =>
    v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' ? `<${(v as { data: number[] }).data.length} bytes>` : typeof v === 'string' && v.length > 40 ? `${v.slice(0, 40)}…(${v.length})` : v,
  );
}

/** Runs one action; resolves with what was wrong, or undefined (a closed connection is a fine answer to a bad input). */
async function runNodeAction(c: Client, a: NodeAction): Promise<string | undefined> {
  switch (a.kind) {
    case 'exec':
      return new Promise((resolve) => {
        const opts = { ...(a.pty ? { pty: a.pty } : {}), ...(a.env ? { env: a.env } : {}) };
        c.exec(a.command as unknown as string, opts, (err, ch) => {
          if (err) return resolve(undefined);
          void closed(c, ch).then(() => resolve(undefined));
        });
      });
    case 'shell-resize':
      // A pty session waiting for a line (no line editor to redraw at absurd sizes), resized and signalled, then given its line.
      return new Promise((resolve) => {
        c.exec('read line', { pty: { rows: 24, cols: 80, term: 'xterm' } }, (err, ch) => {
          if (err) return resolve(undefined);
          void closed(c, ch).then(() => resolve(undefined));
          for (const [rows, cols, height, width] of a.sizes) ch.setWindow(rows, cols, height, width);
          for (const s of a.signals) ch.signal(s);
          ch.end('\n');
        });
      });
    case 'subsystem':
      return new Promise((resolve) => {
        c.subsys(a.name, (err, ch) => {
          if (err) return resolve(undefined);
          // Only sftp is served, and only under that exact name.
          void closed(c, ch).then(() => resolve(a.name === 'sftp' ? undefined : `subsystem ${JSON.stringify(a.name.slice(0, 40))} was accepted`));
          ch.end();
        });
      });
    case 'raw':
      for (const p of a.packets) sendRaw(c, p);
      // Then a keepalive: answered (failure is the answer to an unknown request) or the connection was dropped.
      await globalRequest(c, 'keepalive@openssh.com', Buffer.alloc(0));
      return undefined;
    case 'global': {
      const ok = await globalRequest(c, a.name, a.data);
      // tcpip-forward may be granted (alice may forward ports), and no-more-sessions is a promise OpenSSH acknowledges.
      if (a.name === 'no-more-sessions@openssh.com') c.end();
      return ok === true && !['tcpip-forward', 'cancel-tcpip-forward', 'no-more-sessions@openssh.com'].includes(a.name) ? `global request ${JSON.stringify(a.name.slice(0, 40))} succeeded` : undefined;
    }
  }
}

/** Runs `command` on a logged-in client and collects its stdout. */
function execOut(c: Client, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    c.exec(command, (err, ch) => {
      if (err) return reject(err);
      let out = '';
      ch.on('data', (d: Buffer) => (out += d));
      ch.stderr.resume();
      ch.on('close', () => resolve(out));
    });
  });
}

/** A pool of logged-in clients, one per worker, replaced when a bad input closes one. */
class Logins {
  private readonly free: Client[] = [];
  readonly all = new Set<Client>();
  logins = 0;
  loginMs = 0;

  constructor(
    private readonly port: number,
    private readonly id: Identity,
  ) {}

  async take(): Promise<Client> {
    for (let c = this.free.pop(); c; c = this.free.pop()) if (this.usable(c)) return c;
    const started = Date.now();
    const fresh = await login(this.port, this.id);
    this.logins++;
    this.loginMs += Date.now() - started;
    this.all.add(fresh);
    fresh.on('close', () => this.all.delete(fresh));
    return fresh;
  }

  give(c: Client): void {
    if (this.usable(c)) this.free.push(c);
  }

  /** Not closed, and not closing (the 'close' event comes a moment after the socket ends). */
  private usable(c: Client): boolean {
    const sock = (c as unknown as { _sock?: { writable: boolean; destroyed: boolean } })._sock;
    return this.all.has(c) && !!sock && sock.writable && !sock.destroyed;
  }

  close(): void {
    for (const c of this.all) c.end();
  }
}

describe('SSH listeners under fuzzing', () => {
  let cluster: TestAuth;
  let work: string;
  let alice: SshUser;
  let id: Identity;
  let nodeId = '';

  beforeAll(async () => {
    // GIVEN a cluster in one process (auth, node, proxy) run under settle.js, and alice with a certificate
    work = tempDir('fuzz-ssh-');
    // (startups limits as the reference sshd's 1000:30:1000, so the fuzzer's 64 pending connections reach the parser rather than being shed)
    cluster = await createAuth({ nodePort: await freePort(), sshExtra: ['max_startups: "1000:30:1000"'], proxy: { extra: ['max_startups: "1000:30:1000"'] } });
    cluster.nodeArgs = SETTLE_NODE_ARGS;
    cluster.start();
    await cluster.ready();
    await cluster.tctlOk('users', 'add', 'alice', LOGIN);
    alice = await SshUser.create(cluster, work, 'alice', LOGIN);
    id = { key: loadPrivateKey(fs.readFileSync(alice.key, 'utf8')), cert: fs.readFileSync(`${alice.key}-cert.pub`, 'utf8') };
    nodeId = await waitFor('the node to register', async () => (JSON.parse(await cluster.tctlOk('nodes', 'ls', '--format=json')) as { metadata: { name: string } }[])[0]?.metadata.name);
  }, 120_000);
  afterAll(async () => {
    await cluster?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  /** OpenSSH logs in to the node (through the proxy when `viaProxy`) and the daemon's settled memory is near `before`. */
  async function stillServingWithin(before: Memory, viaProxy: boolean): Promise<void> {
    expect(cluster.daemon!.child.exitCode).toBeNull();
    const extra = viaProxy ? ['-o', `ProxyCommand=ssh ${alice.options('test-auth').join(' ')} -p ${cluster.proxyPorts!.ssh} %r@127.0.0.1 -s proxy:%h:%p`] : [];
    const r = await sshTo(alice, cluster.nodePort!, 'test-auth', ['echo', 'still-serving'], extra);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('still-serving\n');
    expectNearBaseline(expect.getState().currentTestName ?? '', before, await settledMemory(cluster.daemon!));
  }

  it.each([['node'], ['proxy']])(`GIVEN ${PRE_AUTH_INPUTS} malformed pre-authentication inputs to the %s THEN each closes its connection and OpenSSH still logs in`, async (which) => {
    const port = which === 'node' ? cluster.nodePort! : cluster.proxyPorts!.ssh;
    const before = await settledMemory(cluster.daemon!);
    // GIVEN a bystander logged in to the same listener
    const bystander = await login(port, id);
    try {
      // WHEN noise, mutated version lines and mutated packets arrive, 64 connections at a time
      const r = await runFuzz({ name: `${which} pre-auth`, seed: SEED, count: PRE_AUTH_INPUTS, concurrency: 64, timeoutMs: 15_000, input: (rng) => sshPreAuthInput(rng), send: (data, signal) => hitRaw(port, data, signal) });
      // THEN the server closed every one of them, the bystander's connection is untouched, and a new login is served
      expect(r.failures).toEqual([]);
      expect(r.ran).toBe(PRE_AUTH_INPUTS);
      if (which === 'node') expect(await execOut(bystander, 'echo bystander')).toBe('bystander\n');
      else expect(await globalRequest(bystander, 'keepalive@openssh.com', Buffer.alloc(0))).toBe(false);
    } finally {
      bystander.end();
    }
    await stillServingWithin(before, which === 'proxy');
  }, 120_000);

  it(`GIVEN ${PRE_AUTH_INPUTS} malformed pre-authentication inputs to the proxy's reverse-tunnel listener THEN each closes its connection and it still greets`, async () => {
    const port = cluster.proxyPorts!.tunnel;
    const before = await settledMemory(cluster.daemon!);
    // WHEN noise, mutated version lines and mutated packets arrive, 64 connections at a time
    const r = await runFuzz({ name: 'tunnel pre-auth', seed: SEED, count: PRE_AUTH_INPUTS, concurrency: 64, timeoutMs: 15_000, input: (rng) => sshPreAuthInput(rng), send: (data, signal) => hitRaw(port, data, signal) });
    // THEN the server closed every one of them, and a new connection is greeted with its version line
    expect(r.failures).toEqual([]);
    expect(r.ran).toBe(PRE_AUTH_INPUTS);
    const greeting = await new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('data', (d: Buffer) => {
        resolve(d.toString('latin1'));
        s.destroy();
      });
      s.on('error', (err) => resolve(err.message));
    });
    expect(greeting).toMatch(/^SSH-2\.0-Teleport\r\n/);
    await stillServingWithin(before, true);
  }, 120_000);

  it(`GIVEN alice logged in to the node WHEN ${NODE_POST_AUTH_INPUTS} malformed channel and global requests arrive THEN each ends its channel or connection and OpenSSH still logs in`, async () => {
    const before = await settledMemory(cluster.daemon!);
    const pool = new Logins(cluster.nodePort!, id);
    // GIVEN a bystander logged in to the node, which the fuzzer never touches
    const bystander = await login(cluster.nodePort!, id);
    try {
      const r = await runFuzz({
        name: 'node post-auth',
        seed: SEED,
        count: NODE_POST_AUTH_INPUTS,
        concurrency: 8,
        timeoutMs: 20_000,
        input: (rng) => nodeAction(rng),
        send: async (action) => {
          const c = await pool.take();
          try {
            return await runNodeAction(c, action);
          } finally {
            pool.give(c);
          }
        },
        describe: (a) => describeAction(a),
      });
      // THEN every input got its answer (refusal, end of channel, or a closed connection) in time
      process.stdout.write(`node post-auth: ${r.ran} inputs over ${pool.logins} logins (${Math.round(pool.loginMs / Math.max(1, pool.logins))} ms each); slowest:\n  ${r.slowest.join('\n  ')}\n`);
      expect(r.failures).toEqual([]);
      // THEN bad inputs closed only their own channels and connections: the bystander still runs commands
      expect(await execOut(bystander, 'echo bystander')).toBe('bystander\n');
    } finally {
      bystander.end();
      pool.close();
    }
    await stillServingWithin(before, false);
  }, 120_000);

  it(`GIVEN alice logged in to the proxy WHEN ${PROXY_POST_AUTH_INPUTS} malformed proxy subsystem targets and requests arrive THEN each is refused or relayed alone and OpenSSH still logs in through it`, async () => {
    const before = await settledMemory(cluster.daemon!);
    const pool = new Logins(cluster.proxyPorts!.ssh, id);
    const valid = `proxy:test-auth:${cluster.nodePort}@example.com`;
    /** Targets that parse name only this cluster's node or IP literals: the proxy never asks DNS about a fuzzed name. */
    const target = (rng: Rng): string => {
      const t = rng.chance(0.2) ? rng.pick([valid, `proxy:${nodeId}:0`, `proxy:127.0.0.1:${cluster.nodePort}`, 'proxy:@example.com', 'proxy:[::1]:22@example.com']) : mutate(rng, Buffer.from(valid)).toString('latin1');
      try {
        const p = parseProxySubsystem(t);
        return p.host === '' || net.isIP(p.host) || ['test-auth', 'test-auth.example.com', nodeId].includes(p.host.toLowerCase()) ? t : `proxy:127.0.0.1:${p.port}`;
      } catch {
        return t;
      }
    };
    try {
      const r = await runFuzz({
        name: 'proxy post-auth',
        seed: SEED,
        count: PROXY_POST_AUTH_INPUTS,
        concurrency: 8,
        timeoutMs: 20_000,
        input: (rng) => ({ kind: rng.int(10), name: target(rng), noise: rng.bytes(1 + rng.int(300)), action: nodeAction(rng) }),
        send: async (input) => {
          const c = await pool.take();
          try {
            if (input.kind === 0) {
              // Anything but the proxy subsystem is refused.
              const a = input.action;
              if (a.kind === 'subsystem') return undefined;
              return await runNodeAction(c, a.kind === 'exec' ? { ...a, command: Buffer.from('true') } : a);
            }
            return await new Promise<string | undefined>((resolve) => {
              c.subsys(input.name, (err, ch) => {
                if (err) return resolve(undefined);
                // Relayed to the node: the node's pre-auth handling of noise closes it.
                void closed(c, ch).then(() => resolve(undefined));
                ch.end(input.noise);
              });
            });
          } finally {
            pool.give(c);
          }
        },
      });
      process.stdout.write(`proxy post-auth: ${r.ran} inputs over ${pool.logins} logins (${Math.round(pool.loginMs / Math.max(1, pool.logins))} ms each); slowest:\n  ${r.slowest.join('\n  ')}\n`);
      expect(r.failures).toEqual([]);
    } finally {
      pool.close();
    }
    await stillServingWithin(before, true);
  }, 120_000);
});
