/**
 * Limits on connections that have not authenticated yet, for the SSH
 * listeners (node and proxy), as sshd's `LoginGraceTime` and `MaxStartups`:
 * a connection not authenticated within the grace time is closed, and once
 * too many are pending (in all, or from one source address) new ones are
 * dropped early, before the server's version line. An authenticated
 * connection no longer counts and is never touched.
 */
import type { Socket } from 'node:net';
import type { MaxStartups, PreAuthLimits } from '../config/startups';
import type { Logger } from '../utils/logger';

export type { PreAuthLimits };

/** The remote end of a connection, as ssh2 reports it (`info.ip`, `info.port`). */
export interface Remote {
  ip: string;
  port: number;
}

export class PreAuthGate {
  private readonly pending = new Map<string, { sock: Socket; release: () => void }>();
  private readonly perSource = new Map<string, number>();

  constructor(
    private readonly limits: PreAuthLimits,
    private readonly log: Logger,
    private readonly random: () => number = Math.random,
  ) {}

  /** Admits a new socket (true) or destroys it (false). */
  admit(sock: Socket): boolean {
    const source = sock.remoteAddress;
    if (source === undefined || sock.remotePort === undefined) {
      sock.destroy();
      return false;
    }
    const key = keyOf({ ip: source, port: sock.remotePort });
    const fromSource = this.perSource.get(source) ?? 0;
    if (shouldDrop(this.limits.maxStartups, this.pending.size, this.random) || (this.limits.perSourceMaxStartups !== undefined && shouldDrop(this.limits.perSourceMaxStartups, fromSource, this.random))) {
      this.log.warn('too many unauthenticated connections, dropping a connection', { remote: source, pending: this.pending.size, pending_from_source: fromSource });
      sock.destroy();
      return false;
    }
    this.perSource.set(source, fromSource + 1);
    const grace =
      this.limits.loginGraceMs > 0
        ? setTimeout(() => {
            this.log.info('connection not authenticated within the login grace time, closing it', { remote: source });
            sock.destroy();
          }, this.limits.loginGraceMs)
        : undefined;
    const release = () => {
      if (this.pending.get(key)?.release !== release) return;
      this.pending.delete(key);
      clearTimeout(grace);
      const n = (this.perSource.get(source) ?? 1) - 1;
      if (n === 0) this.perSource.delete(source);
      else this.perSource.set(source, n);
    };
    this.pending.set(key, { sock, release });
    sock.once('close', release);
    return true;
  }

  /** How many connections are not authenticated yet. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** The connection from `remote` authenticated: it stops counting and its grace timer stops. */
  authenticated(remote: Remote): void {
    this.pending.get(keyOf(remote))?.release();
  }

  /** Closes every connection not authenticated yet (the listener is shutting down). */
  destroyPending(): void {
    for (const { sock } of [...this.pending.values()]) sock.destroy();
  }
}

function keyOf(r: Remote): string {
  return `${r.ip}|${r.port}`;
}

/** sshd's drop decision for a new connection while `pending` others are unauthenticated; `random` is uniform in [0, 1). */
export function shouldDrop(limit: MaxStartups, pending: number, random: () => number = Math.random): boolean {
  if (pending < limit.start) return false;
  if (pending >= limit.full) return true;
  const p = limit.rate + ((100 - limit.rate) * (pending - limit.start)) / (limit.full - limit.start);
  return random() * 100 < p;
}
