/**
 * Fuzzing kept as tests: deterministic seeded generators (random bytes,
 * mutated SSH version lines and packets, mutated HTTP requests and JSON
 * bodies), a runner with bounded concurrency and a per-input timeout that
 * names the seed and input index of every failure, and the memory of a
 * daemon after a forced garbage collection (see settle.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Daemon, ROOT, waitFor } from './proc';

/** A small deterministic PRNG (mulberry32): the same seed gives the same inputs on every run. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** The generator for input `index` of a run seeded with `seed`: each input can be replayed alone. */
  static forInput(seed: number, index: number): Rng {
    return new Rng(Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35));
  }

  uint32(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : this.uint32() % n;
  }

  chance(p: number): boolean {
    return this.uint32() / 0x1_0000_0000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.uint32() & 0xff;
    return b;
  }

  /** A string of `n` characters from `alphabet`. */
  text(n: number, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789-_.'): string {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)];
    return s;
  }
}

/** 32-bit values that break length fields: zero, one, the sign bit, all ones and their neighbours. */
export const INTERESTING_UINT32 = [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 35000, 256 * 1024];

/** 1 to 4 byte-level mutations of `input`: bit flips, interesting bytes and lengths, inserts, deletes, duplicates, truncation. */
export function mutate(rng: Rng, input: Buffer): Buffer {
  let b = Buffer.from(input);
  const rounds = 1 + rng.int(4);
  for (let r = 0; r < rounds; r++) {
    const at = rng.int(b.length + 1);
    switch (rng.int(7)) {
      case 0:
        if (b.length) b[Math.min(at, b.length - 1)] ^= 1 << rng.int(8);
        break;
      case 1:
        if (b.length) b[Math.min(at, b.length - 1)] = rng.pick([0x00, 0x0a, 0x0d, 0x20, 0x7f, 0x80, 0xff]);
        break;
      case 2:
        if (b.length >= 4) b.writeUInt32BE(rng.pick(INTERESTING_UINT32), Math.min(at, b.length - 4));
        break;
      case 3:
        b = Buffer.concat([b.subarray(0, at), rng.bytes(1 + rng.int(64)), b.subarray(at)]);
        break;
      case 4:
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + rng.int(32)))]);
        break;
      case 5: {
        const end = Math.min(b.length, at + 1 + rng.int(64));
        b = Buffer.concat([b.subarray(0, end), b.subarray(at, end), b.subarray(end)]);
        break;
      }
      default:
        b = b.subarray(0, at);
    }
  }
  return b;
}

// --- SSH -----------------------------------------------------------------------------------------

export const SSH_VERSION_LINE = 'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n';

/** An SSH string: uint32 length and bytes. */
export function sshString(s: string | Buffer): Buffer {
  const b = Buffer.isBuffer(s) ? s : Buffer.from(s);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

export function sshUint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/** A KEXINIT payload (RFC 4253 §7.1) with the algorithms OpenSSH offers. */
export function kexinitPayload(rng: Rng): Buffer {
  const lists = [
    'curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group14-sha256,ext-info-c,kex-strict-c-v00@openssh.com',
    'ssh-ed25519-cert-v01@openssh.com,ssh-ed25519,rsa-sha2-512,rsa-sha2-256',
    'chacha20-poly1305@openssh.com,aes128-ctr,aes256-gcm@openssh.com',
    'chacha20-poly1305@openssh.com,aes128-ctr,aes256-gcm@openssh.com',
    'hmac-sha2-256-etm@openssh.com,hmac-sha2-256',
    'hmac-sha2-256-etm@openssh.com,hmac-sha2-256',
    'none,zlib@openssh.com',
    'none,zlib@openssh.com',
    '',
    '',
  ];
  return Buffer.concat([Buffer.from([20]), rng.bytes(16), ...lists.map((l) => sshString(l)), Buffer.from([0]), sshUint32(0)]);
}

/** An unencrypted binary packet (RFC 4253 §6) around `payload`, padded as the RFC asks. */
export function sshPacket(rng: Rng, payload: Buffer): Buffer {
  let pad = 8 - ((5 + payload.length) % 8);
  if (pad < 4) pad += 8;
  return Buffer.concat([sshUint32(1 + payload.length + pad), Buffer.from([pad]), payload, rng.bytes(pad)]);
}

/** A pre-authentication input: noise, a mutated version line, or a version line then mutated packets. */
export function sshPreAuthInput(rng: Rng): Buffer {
  switch (rng.int(5)) {
    case 0:
      return rng.bytes(1 + rng.int(512));
    case 1:
      return mutate(rng, Buffer.from(SSH_VERSION_LINE));
    case 2:
      return Buffer.concat([Buffer.from(SSH_VERSION_LINE), mutate(rng, sshPacket(rng, kexinitPayload(rng)))]);
    case 3: {
      // A valid KEXINIT, then a mutated follow-up packet (a key exchange message with a lying length, or any message number).
      const next = Buffer.concat([Buffer.from([rng.pick([1, 2, 4, 20, 21, 30, 31, 50, 80, 90, 94, 255])]), sshString(rng.bytes(rng.pick([0, 31, 32, 33, 65, 1000])))]);
      return Buffer.concat([Buffer.from(SSH_VERSION_LINE), sshPacket(rng, kexinitPayload(rng)), mutate(rng, sshPacket(rng, next))]);
    }
    default:
      return Buffer.concat([Buffer.from('SSH-2.0-'), Buffer.alloc(rng.pick([200, 255, 256, 300, 8192]), 0x41), Buffer.from('\r\n'), rng.bytes(rng.int(64))]);
  }
}

// --- HTTP ----------------------------------------------------------------------------------------

export interface HttpTemplate {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

/** The bytes of `t` as an HTTP/1.1 request with `Connection: close` and a correct Content-Length. */
export function httpBytes(t: HttpTemplate): Buffer {
  const body = t.body === undefined ? Buffer.alloc(0) : Buffer.from(t.body);
  const headers = { host: '127.0.0.1', connection: 'close', ...(t.body !== undefined ? { 'content-length': String(body.length) } : {}), ...t.headers };
  const head = `${t.method} ${t.path} HTTP/1.1\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

/** A mutated request: request-line, header or framing damage on `t`, or byte-level mutation of its bytes. */
export function mutatedHttpRequest(rng: Rng, t: HttpTemplate): Buffer {
  switch (rng.int(8)) {
    case 0:
      return httpBytes({ ...t, method: rng.pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE', 'CONNECT', 'FOO', 'G\0T', '']) });
    case 1:
      return httpBytes({ ...t, path: rng.pick(['/', '*', '//', '/../../etc/passwd', '/%00', '/%zz', '/v1/' + 'a/'.repeat(2000), t.path + '/..', t.path + '?' + 'x=1&'.repeat(500), t.path.toUpperCase(), t.path + '%2f..']) });
    case 2:
      return httpBytes({ ...t, headers: { ...t.headers, 'content-length': rng.pick(['-1', 'abc', '99999999999999999999', '1, 2', '0x10', ' ']) } });
    case 3:
      return httpBytes({ ...t, headers: { ...t.headers, 'transfer-encoding': rng.pick(['chunked', 'gzip', 'chunked, chunked', 'identity']) } });
    case 4:
      return httpBytes({ ...t, headers: { ...t.headers, [rng.text(1 + rng.int(20))]: rng.text(rng.pick([0, 10, 9000])) } });
    case 5:
      return httpBytes({ ...t, body: mutate(rng, Buffer.from(t.body ?? '{}')) });
    default:
      return mutate(rng, httpBytes(t));
  }
}

/** JSON values of the wrong kind for a field that wants a string. */
export function wrongJsonValue(rng: Rng): unknown {
  return rng.pick<unknown>([null, 0, -1, 1e308, true, [], {}, ['x'], { $ne: '' }, [[[[]]]], { toString: 'x' }]);
}

/** Bodies that are not JSON: truncated, garbage, or nested past any sane depth. */
export function malformedJson(rng: Rng, valid: unknown): string {
  const text = JSON.stringify(valid);
  switch (rng.int(4)) {
    case 0:
      return text.slice(0, rng.int(text.length)) || '{';
    case 1:
      return rng.pick(['{"a":1,}', "{'a':1}", '{"a":01}', '[1,2', 'nul', '{"a":"\\x41"}', '\u0000', '{"a":NaN}', '}{']);
    case 2:
      return '['.repeat(1000 + rng.int(100_000));
    default:
      return text + rng.pick(['}', ']', ',', 'x', '\0']);
  }
}

// --- running -------------------------------------------------------------------------------------

export interface FuzzRun<T> {
  /** Names the listener in failures. */
  name: string;
  seed: number;
  count: number;
  concurrency: number;
  /** An input taking longer fails the run, naming it. */
  timeoutMs: number;
  input(rng: Rng, index: number): T;
  /** Sends one input; resolves with what was wrong with the answer, or undefined. `signal` aborts at the timeout. */
  send(input: T, signal: AbortSignal, index: number): Promise<string | undefined>;
  /** What an input was, for failure messages (default: its kind, if any). */
  describe?(input: T): string;
}

export interface FuzzResult {
  /** `#index: what` of each input whose answer was wrong, timed out or threw. */
  failures: string[];
  ran: number;
  /** The five slowest inputs, `#index ms [input]`. */
  slowest: string[];
}

/**
 * Runs every input, `concurrency` at a time; never rejects: failures are listed with their index.
 * FUZZ_ONLY=<i>[,<j>...] in the environment replays just those inputs.
 */
export async function runFuzz<T>(run: FuzzRun<T>): Promise<FuzzResult> {
  const failures: string[] = [];
  const only = process.env.FUZZ_ONLY?.split(',').map(Number);
  const indices = only ?? Array.from({ length: run.count }, (_, i) => i);
  let next = 0;
  let ran = 0;
  const describe = (input: T) => (run.describe ? run.describe(input) : JSON.stringify(input, (_k, v: unknown) => (typeof v === 'string' && v.length > 60 ? `${v.slice(0, 60)}…(${v.length})` : v))).slice(0, 300);
  const took: { index: number; ms: number; what: string }[] = [];
  const one = async (index: number) => {
    const input = run.input(Rng.forInput(run.seed, index), index);
    const started = Date.now();
    const abort = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<string>((resolve) => {
      timer = setTimeout(() => {
        // Settled before the abort, so the race reports the timeout even when the abort makes `send` resolve at once.
        resolve(`no answer within ${run.timeoutMs} ms`);
        abort.abort();
      }, run.timeoutMs);
    });
    try {
      const wrong = await Promise.race([run.send(input, abort.signal, index), timedOut]);
      if (wrong) failures.push(`#${index}: ${wrong} [${describe(input)}]`);
    } catch (err) {
      failures.push(`#${index}: ${(err as Error).message} [${describe(input)}]`);
    } finally {
      clearTimeout(timer);
      abort.abort();
      ran++;
      const ms = Date.now() - started;
      if (took.length < 5 || ms > took[4].ms) {
        took.push({ index, ms, what: describe(input).slice(0, 120) });
        took.sort((a, b) => b.ms - a.ms).splice(5);
      }
    }
  };
  const worker = async () => {
    while (next < indices.length) await one(indices[next++]);
  };
  await Promise.all(Array.from({ length: run.concurrency }, worker));
  return { failures: failures.map((f) => `${run.name} (seed ${run.seed}) ${f}`), ran, slowest: took.map((t) => `#${t.index} ${t.ms} ms ${t.what}`) };
}

// --- memory --------------------------------------------------------------------------------------

/** `node` flags that run a CLI under settle.js: SIGUSR1 then collects garbage and prints the memory. */
export const SETTLE_NODE_ARGS = ['--expose-gc', path.join(ROOT, 'dist', 'test', 'helpers', 'settle.js')];

export interface Memory {
  /** VmRSS from /proc/<pid>/status, bytes. */
  rss: number;
  /** V8 heap in use after the collection, bytes. */
  heapUsed: number;
  /** Memory outside the V8 heap that JS objects hold (Buffers among it), bytes. */
  external: number;
}

const SETTLED = /^settled heapUsed=(\d+) external=(\d+)$/gm;

/** Forces a full garbage collection in `daemon` (started with SETTLE_NODE_ARGS) and reads its memory. */
export async function settledMemory(daemon: Daemon): Promise<Memory> {
  const seen = [...daemon.stderr.matchAll(SETTLED)].length;
  daemon.child.kill('SIGUSR1');
  const last = await waitFor('the daemon to report its memory after a collection', () => {
    const lines = [...daemon.stderr.matchAll(SETTLED)];
    return lines.length > seen ? lines[lines.length - 1] : undefined;
  });
  const status = fs.readFileSync(`/proc/${daemon.child.pid}/status`, 'utf8');
  return { rss: Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)![1]) * 1024, heapUsed: Number(last[1]), external: Number(last[2]) };
}

/** Settled heap and external memory may grow this much over a suite (caches, compiled code); a leak of a few hundred bytes per input is past it. */
export const HEAP_SLACK = 16 * 1024 * 1024;
/** RSS is the allocator's business as well as ours (it keeps freed pages for reuse): only a generous bound. */
export const RSS_SLACK = 64 * 1024 * 1024;

/** Fails the test unless `after` is near `before` (see the slacks), printing both. */
export function expectNearBaseline(what: string, before: Memory, after: Memory): void {
  const mb = (n: number) => (n / MB).toFixed(1);
  process.stdout.write(`${what} memory: heap ${mb(before.heapUsed)} -> ${mb(after.heapUsed)} MB, external ${mb(before.external)} -> ${mb(after.external)} MB, rss ${mb(before.rss)} -> ${mb(after.rss)} MB\n`);
  expect({ what, heapUsed: after.heapUsed < before.heapUsed + HEAP_SLACK, external: after.external < before.external + HEAP_SLACK, rss: after.rss < before.rss + RSS_SLACK }).toEqual({ what, heapUsed: true, external: true, rss: true });
}

export const MB = 1024 * 1024;
