/**
 * haproxy's runtime API on its stats socket: one connection per command line (haproxy answers
 * and closes), commands checked for success, and `show servers state` parsed.
 */
import * as net from 'node:net';
import { LoadBalancingError } from './errors';

/** What haproxy answers to commands that succeed with something to say. */
const SUCCESS = /^(New server registered\.|Server deleted\.)$/;

/** One server of a backend as `show servers state` reports it (format version 1). */
export interface ServerState {
  readonly name: string;
  /** srv_op_state: 0 stopped (down), 1 starting, 2 running (up), 3 stopping. */
  readonly operational: number;
  /** srv_admin_state: a mask; 0x01 forced maintenance, 0x08 forced drain. */
  readonly admin: number;
  /** srv_check_result: 0 unknown, 1 neutral, 2 failed, 3 passed, 4 conditionally passed. */
  readonly checkResult: number;
  /** srv_check_health: the rise/fall counter. */
  readonly checkHealth: number;
}

export const OP_STOPPED = 0;
export const CHECK_FAILED = 2;

export class HaproxyCli {
  constructor(readonly socket: string) {}

  /** Sends one line (commands separated by ';') and returns haproxy's whole answer. */
  send(line: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const conn = net.createConnection(this.socket);
      let answer = '';
      conn.setEncoding('utf8');
      conn.on('data', (d) => (answer += d));
      conn.on('error', (err) => reject(new LoadBalancingError('haproxy', `haproxy's socket ${this.socket}: ${err.message}`)));
      conn.on('end', () => resolve(answer));
      conn.end(`${line}\n`);
    });
  }

  /** Runs commands in one line, back to back; fails naming haproxy's complaint when any answers other than success. */
  async run(...commands: string[]): Promise<void> {
    const answer = await this.send(commands.join('; '));
    const complaints = answer
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !SUCCESS.test(l));
    if (complaints.length) throw new LoadBalancingError('haproxy', `haproxy refused "${commands.join('; ')}": ${complaints.join(' ')}`);
  }

  /** The servers of a backend. */
  async serversState(backend: string): Promise<ServerState[]> {
    const answer = await this.send(`show servers state ${backend}`);
    const [version, ...lines] = answer.split('\n');
    if (version.trim() !== '1') throw new LoadBalancingError('haproxy', `"show servers state ${backend}" answered: ${answer.trim()}`);
    const rows = lines.filter((l) => l.trim() && !l.startsWith('#'));
    return rows.map((row) => {
      const f = row.trim().split(/\s+/);
      if (f.length < 13 || f[1] !== backend) throw new LoadBalancingError('haproxy', `unexpected line in "show servers state ${backend}": ${row}`);
      return { name: f[3], operational: Number(f[5]), admin: Number(f[6]), checkResult: Number(f[11]), checkHealth: Number(f[12]) };
    });
  }
}
