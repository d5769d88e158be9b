/**
 * The deployment's network, as a VPC would give it: a Linux bridge whose host side
 * (`10.<net>.0.1`) serves the AWS endpoints; one network namespace per instance with its own
 * address (`10.<net>.0.N`), so every instance listens on the ports its role uses (3022, 3025,
 * 3080, ...) exactly as on EC2; the load balancers' namespace with their virtual IPs (`10.<net>.1.N`); and
 * a client namespace ("the internet", `10.<net>.2.1`) whose `/etc/hosts` holds the stack's Route 53
 * records, so users' commands resolve the cluster's domain as they would on the internet.
 * Needs root (CAP_NET_ADMIN) and iproute2.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

/** A network command failed (not root, no iproute2, a name taken by another deployment). */
export class NetworkError extends Error {
  override readonly name = 'NetworkError';
}

function ip(...args: string[]): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new NetworkError(`ip ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`);
  }
}

/** A namespace attached to the bridge. */
export interface Attachment {
  /** The network namespace's name (`ip netns exec <name> ...`). */
  readonly namespace: string;
  readonly address: string;
}

export class Network {
  readonly hostAddress: string;
  private readonly bridge: string;
  private readonly attached = new Map<string, string>();
  private nextHost = 10;
  private clientNs?: Attachment;

  private constructor(readonly net: number) {
    this.hostAddress = `10.${net}.0.1`;
    this.bridge = `tsim${net}`;
  }

  /**
   * Creates the bridge `tsim<net>` with `10.<net>.0.1/16` on the first free network number from
   * `preferred` (or exactly `net`). A number is taken by a lock file naming its owner's pid
   * (`/run/tsim<net>.pid`): a live owner's network is never touched; a dead owner's left-overs
   * (namespaces, processes, the bridge) are removed first.
   */
  static create(opts: { net?: number; preferred?: number } = {}): Network {
    const candidates = opts.net !== undefined ? [opts.net] : Array.from({ length: 24 }, (_, i) => (((opts.preferred ?? 231) + i - 1) % 254) + 1);
    for (const net of candidates) {
      if (!Number.isInteger(net) || net < 1 || net > 254) throw new NetworkError(`the network number must be 1-254, got ${net}`);
      if (!claim(net)) continue;
      const n = new Network(net);
      try {
        n.removeLeftovers();
        if (ip('-o', 'addr', 'show').includes(` 10.${net}.`)) throw new NetworkError(`10.${net}.0.0/16 is in use on this host`);
        ip('link', 'add', n.bridge, 'type', 'bridge');
        ip('addr', 'add', `${n.hostAddress}/16`, 'dev', n.bridge);
        ip('link', 'set', n.bridge, 'up');
        return n;
      } catch (err) {
        fs.rmSync(lockFile(net), { force: true });
        if (opts.net !== undefined) throw err;
      }
    }
    throw new NetworkError(`no free 10.<n>.0.0/16 network for the local deployment among ${candidates[0]}..${candidates[candidates.length - 1]}`);
  }

  /** The virtual IP of the `index`-th load balancer, added to the bridge. */
  loadBalancerAddress(index: number): string {
    return `10.${this.net}.1.${index + 1}`;
  }

  /**
   * The load balancers' namespace `tsim<net>-lb`, holding their virtual IPs: their listeners (on
   * 443, 3023, 3025, ...) never collide with what binds those ports on this host.
   */
  addLoadBalancers(count: number): Attachment {
    const lb = this.attachAt('lb', `10.${this.net}.1.254`);
    for (let i = 0; i < count; i++) ip('-n', lb.namespace, 'addr', 'add', `${this.loadBalancerAddress(i)}/32`, 'dev', 'eth0');
    return lb;
  }

  /** A new namespace `tsim<net>-<label>` attached to the bridge with the next free address. */
  attach(label: string): Attachment {
    const host = this.nextHost++;
    if (host > 250) throw new NetworkError('no addresses left on the deployment network');
    return this.attachAt(label, `10.${this.net}.0.${host}`);
  }

  /** The client namespace ("the internet"), whose /etc/hosts maps `hosts` names to addresses. */
  client(hosts: Record<string, string>): Attachment {
    if (!this.clientNs) {
      this.clientNs = this.attachAt('client', `10.${this.net}.2.1`);
      fs.mkdirSync(`/etc/netns/${this.clientNs.namespace}`, { recursive: true });
    }
    const lines = ['127.0.0.1 localhost', ...Object.entries(hosts).map(([name, addr]) => `${addr} ${name}`)];
    fs.writeFileSync(`/etc/netns/${this.clientNs.namespace}/hosts`, `${lines.join('\n')}\n`);
    return this.clientNs;
  }

  /** Removes an instance's namespace (its processes must be gone) and its link. */
  detach(a: Attachment): void {
    const veth = this.attached.get(a.namespace);
    this.attached.delete(a.namespace);
    try {
      ip('netns', 'del', a.namespace);
    } catch {
      // already gone
    }
    if (veth) {
      try {
        ip('link', 'del', veth);
      } catch {
        // deleting the namespace removed the pair
      }
    }
  }

  /** Pids of the processes in a namespace. */
  static pids(namespace: string): number[] {
    try {
      return ip('netns', 'pids', namespace).split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  }

  /** Removes every namespace, the client's hosts file and the bridge. */
  close(): void {
    for (const ns of [...this.attached.keys()]) this.detach({ namespace: ns, address: '' });
    fs.rmSync(`/etc/netns/tsim${this.net}-client`, { recursive: true, force: true });
    try {
      ip('link', 'del', this.bridge);
    } catch {
      // already gone
    }
    fs.rmSync(lockFile(this.net), { force: true });
  }

  private attachAt(label: string, address: string): Attachment {
    const namespace = `tsim${this.net}-${label}`;
    const veth = `tv${this.net}x${address.split('.').slice(2).join('x')}`.slice(0, 15);
    ip('netns', 'add', namespace);
    this.attached.set(namespace, veth);
    ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', namespace);
    ip('link', 'set', veth, 'master', this.bridge, 'up');
    ip('-n', namespace, 'addr', 'add', `${address}/16`, 'dev', 'eth0');
    ip('-n', namespace, 'link', 'set', 'eth0', 'up');
    ip('-n', namespace, 'link', 'set', 'lo', 'up');
    ip('-n', namespace, 'route', 'add', 'default', 'via', this.hostAddress);
    return { namespace, address };
  }

  private removeLeftovers(): void {
    for (const line of ip('netns', 'list').split('\n')) {
      const ns = line.split(' ')[0];
      if (ns.startsWith(`tsim${this.net}-`)) {
        for (const pid of Network.pids(ns)) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone
          }
        }
        ip('netns', 'del', ns);
      }
    }
    if (ip('-o', 'link', 'show').includes(` ${this.bridge}:`)) ip('link', 'del', this.bridge);
    fs.rmSync(`/etc/netns/tsim${this.net}-client`, { recursive: true, force: true });
  }
}

const lockFile = (net: number) => `/run/tsim${net}.pid`;

/** Takes network `net` for this process: a new lock file, or one whose owner is gone. */
function claim(net: number): boolean {
  return claimLock(lockFile(net));
}

/**
 * Takes the lock file `file` for this process (its content: this pid, then ` ${note}` when given):
 * a new file, or one whose owner (the pid it starts with) is gone. False while a live process, this
 * one included, holds it.
 */
export function claimLock(file: string, note?: string): boolean {
  const content = note ? `${process.pid} ${note}` : String(process.pid);
  try {
    fs.writeFileSync(file, content, { flag: 'wx' });
    return true;
  } catch {
    const owner = Number(fs.readFileSync(file, 'utf8').split(' ')[0]);
    if (owner === process.pid) return false;
    if (Number.isInteger(owner) && owner > 0) {
      try {
        process.kill(owner, 0);
        return false; // its owner is alive
      } catch {
        // its owner died: take it over
      }
    }
    fs.writeFileSync(file, content);
    return true;
  }
}
