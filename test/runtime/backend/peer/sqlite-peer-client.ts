/**
 * Starts sqlite-peer.ts as a real child process on a given SQLite file and talks to it:
 * `call` sends a command and resolves with its result; `nextEvent` returns the watch events the
 * peer streams back.
 */

import { ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { within } from '../helpers';
import type { PeerCommand, PeerMessage } from './sqlite-peer';

type PeerEvent = Extract<PeerMessage, { event: unknown }>['event'];
type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;

export class SqlitePeer {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private readonly events: PeerEvent[] = [];
  private eventWaiter?: () => void;
  private stderr = '';

  private constructor(private readonly child: ChildProcess) {}

  static async start(file: string): Promise<SqlitePeer> {
    const child = spawn(
      process.execPath,
      ['-r', path.join(__dirname, 'register.js'), path.join(__dirname, 'sqlite-peer.ts'), file],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    const peer = new SqlitePeer(child);
    child.stderr!.on('data', (d: Buffer) => (peer.stderr += d.toString()));
    let onReady!: () => void;
    const ready = new Promise<void>((resolve, reject) => {
      onReady = resolve;
      child.once('exit', (code) => reject(new Error(`sqlite peer exited with ${code}: ${peer.stderr}`)));
    });
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      const msg = JSON.parse(line) as PeerMessage;
      if ('ready' in msg) onReady();
      else if ('event' in msg) {
        peer.events.push(msg.event);
        peer.eventWaiter?.();
      } else {
        const p = peer.pending.get(msg.id);
        peer.pending.delete(msg.id);
        if (msg.ok) p?.resolve(msg.result);
        else p?.reject(Object.assign(new Error(msg.message), { reason: msg.reason }));
      }
    });
    await within(ready, 'the sqlite peer process to start', 20_000);
    return peer;
  }

  call(cmd: DistributiveOmit<PeerCommand, 'id'>): Promise<unknown> {
    const id = this.nextId++;
    const reply = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.child.stdin!.write(JSON.stringify({ ...cmd, id }) + '\n');
    return within(reply, `the peer's answer to ${cmd.op}`, 20_000);
  }

  async nextEvent(label: string): Promise<PeerEvent> {
    const ready = () => this.events.length > 0;
    if (!ready()) await within(new Promise<void>((resolve) => (this.eventWaiter = resolve)), label);
    this.eventWaiter = undefined;
    return this.events.shift()!;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.stdin!.end();
    await within(exited, 'the sqlite peer to exit');
  }
}
