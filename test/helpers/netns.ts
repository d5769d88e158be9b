/**
 * Network namespaces for tests that cut a host off from the network except for what the test
 * lets through (nodes behind NAT, behind an HTTP proxy). Needs root and iproute2; `nat()` needs
 * nftables. A lab claims a number n, whatever its prefix (the lock file `/run/tnetlab<n>.pid`
 * naming its process, test run and prefix, as sim/net.ts claims its networks), and names
 * everything after its prefix and n: namespaces
 * `<prefix><n>-<label>`, host-side links `<prefix><n><x>`, addresses in 172.31.<n>.0/24, and a
 * host route that makes the rest of that /24 unreachable from this host (without it this
 * machine's default gateway may answer for any address). `close()` removes all of it; the test
 * run's teardown removes what a test that crashed left (`removeLabsOfRun`).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { claimLock } from '../../sim/net';
import { runId } from './leftovers';
import { run } from './proc';

const LOCK_DIR = '/run';

/** Runs `ip args...`, throwing with its error output. */
function ip(...args: string[]): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`);
  }
}

/** `ip args...`, ignoring a failure (for removal: the thing may be gone already). */
function ipQuiet(...args: string[]): void {
  try {
    ip(...args);
  } catch {
    // already gone
  }
}

/** One end of a veth pair: its namespace (undefined: this host's), its name and its address with prefix length. */
export interface LinkEnd {
  ns?: string;
  dev: string;
  addr: string;
}

/** Removes the network of lab number `n` of `prefix`: namespaces (and the processes in them), host links, the host route. */
function removeNetwork(prefix: string, n: number): string[] {
  const removed: string[] = [];
  for (const ns of ip('netns', 'list').split('\n').map((l) => l.split(' ')[0])) {
    if (!ns.startsWith(`${prefix}${n}-`)) continue;
    for (const pid of ip('netns', 'pids', ns).split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone
      }
    }
    ipQuiet('netns', 'del', ns);
    removed.push(`network namespace ${ns}`);
  }
  for (const line of ip('-o', 'link', 'show').split('\n')) {
    const dev = /^\d+: ([^:@]+)/.exec(line)?.[1];
    if (dev?.startsWith(`${prefix}${n}`) && /^\D*$/.test(dev.slice(`${prefix}${n}`.length))) {
      ipQuiet('link', 'del', dev);
      removed.push(`link ${dev}`);
    }
  }
  try {
    ip('route', 'del', 'unreachable', `${labNet(n)}.0/24`);
    removed.push(`route unreachable ${labNet(n)}.0/24`);
  } catch {
    // not there
  }
  return removed;
}

const labNet = (n: number) => `172.31.${n}`;
const LOCK_NAME = /^tnetlab(\d+)\.pid$/;
const lockFile = (n: number) => `${LOCK_DIR}/tnetlab${n}.pid`;

/** The test run and the prefix a lab's lock file names (undefined when there is none). */
function lockOwner(n: number): { run: string; prefix: string } | undefined {
  try {
    const [, run, prefix] = fs.readFileSync(lockFile(n), 'utf8').trim().split(' ');
    return run && prefix ? { run, prefix } : undefined;
  } catch {
    return undefined;
  }
}

export class NetLab {
  private closed = false;

  private constructor(
    readonly prefix: string,
    readonly n: number,
  ) {}

  /**
   * A new lab of the test run `run`, on the first free number (labs of every prefix share the
   * numbers, as they share 172.31.0.0/16), named with `prefix` (one no other test file uses, at
   * most 9 letters so that link names fit in 15 characters). What a dead owner left is removed first.
   */
  static create(prefix: string, run = runId()): NetLab {
    if (!/^[a-z]{1,9}$/.test(prefix)) throw new Error(`a lab prefix is 1-9 lowercase letters, got ${JSON.stringify(prefix)}`);
    if (process.getuid?.() !== 0) throw new Error('network namespaces need root: run these tests as root (as .ci/run does)');
    for (let n = 1; n <= 254; n++) {
      const before = lockOwner(n);
      if (!claimLock(lockFile(n), `${run} ${prefix}`)) continue;
      const lab = new NetLab(prefix, n);
      try {
        if (before) removeNetwork(before.prefix, n);
        removeNetwork(prefix, n);
        ip('route', 'add', 'unreachable', `${labNet(n)}.0/24`);
        return lab;
      } catch (err) {
        lab.close();
        throw err;
      }
    }
    throw new Error(`no free lab number (${LOCK_DIR}/tnetlab<1-254>.pid are all held)`);
  }

  /** The lab's address `172.31.<n>.<host>`. */
  addr(host: number): string {
    return `${labNet(this.n)}.${host}`;
  }

  /** A new namespace `<prefix><n>-<label>`, its loopback up. */
  namespace(label: string): string {
    const ns = `${this.prefix}${this.n}-${label}`;
    ip('netns', 'add', ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    return ns;
  }

  /** A link of this host, named `<prefix><n><suffix>` (suffix: letters only). */
  hostDev(suffix: string): string {
    if (!/^[a-z]+$/.test(suffix)) throw new Error(`a host link suffix is letters only, got ${JSON.stringify(suffix)}`);
    return `${this.prefix}${this.n}${suffix}`;
  }

  /** A veth pair between `a` and `b`, both ends up with their addresses. */
  veth(a: LinkEnd, b: LinkEnd): void {
    ip(...(a.ns ? ['-n', a.ns] : []), 'link', 'add', a.dev, 'type', 'veth', 'peer', 'name', b.dev, ...(b.ns ? ['netns', b.ns] : []));
    for (const end of [a, b]) {
      const n = end.ns ? ['-n', end.ns] : [];
      ip(...n, 'addr', 'add', end.addr, 'dev', end.dev);
      ip(...n, 'link', 'set', end.dev, 'up');
    }
  }

  /** `ip route add args...` in namespace `ns`. */
  route(ns: string, ...args: string[]): void {
    ip('-n', ns, 'route', 'add', ...args);
  }

  /** Sets link `dev` of namespace `ns` up or down. */
  setLink(ns: string, dev: string, state: 'up' | 'down'): void {
    ip('-n', ns, 'link', 'set', dev, state);
  }

  /** Makes namespace `ns` a NAT router: it forwards, and what leaves through `wan` takes `wan`'s address (nftables masquerade). */
  nat(ns: string, wan: string): void {
    execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const rules = ['table ip nat {', '  chain postrouting {', '    type nat hook postrouting priority srcnat; policy accept;', `    oifname "${wan}" masquerade`, '  }', '}', ''].join('\n');
    execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: rules, stdio: ['pipe', 'pipe', 'pipe'] });
  }

  /** The command prefix that runs a program in namespace `ns`. */
  launcher(ns: string): string[] {
    return ['ip', 'netns', 'exec', ns];
  }

  /**
   * A TCP connection attempt to `host:port` from namespace `ns` (undefined: this host): 'connected',
   * or the error's code (ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, ...). Gives up after 10 s ('timeout').
   */
  async probe(ns: string | undefined, host: string, port: number): Promise<string> {
    const script = `const s = require('net').connect(${port}, ${JSON.stringify(host)}, () => { console.log('connected'); process.exit(0); });
      s.on('error', (e) => { console.log(e.code || e.message); process.exit(0); });
      setTimeout(() => { console.log('timeout'); process.exit(0); }, 10000);`;
    const r = ns ? await run('ip', ['netns', 'exec', ns, process.execPath, '-e', script]) : await run(process.execPath, ['-e', script]);
    if (r.code !== 0) throw new Error(`the connection probe failed: ${r.stderr}`);
    return r.stdout.trim();
  }

  /** Removes the lab's namespaces (killing what runs in them), links, route and lock. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    removeNetwork(this.prefix, this.n);
    fs.rmSync(lockFile(this.n), { force: true });
  }
}

/** Removes the labs the tests of run `id` left (their lock files name the run) and says what they were. */
export function removeLabsOfRun(id: string): string[] {
  const removed: string[] = [];
  for (const file of fs.readdirSync(LOCK_DIR)) {
    const n = Number(LOCK_NAME.exec(file)?.[1]);
    const owner = n ? lockOwner(n) : undefined;
    if (owner?.run !== id) continue;
    removed.push(`network lab ${lockFile(n)}`, ...removeNetwork(owner.prefix, n));
    fs.rmSync(lockFile(n), { force: true });
  }
  return removed;
}
