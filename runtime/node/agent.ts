/**
 * Agent forwarding on the node: a Unix socket in a private directory owned
 * by the login user (SSH_AUTH_SOCK); each connection to it becomes an
 * `auth-agent@openssh.com` channel back to the user's client.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ServerChannel } from 'ssh2';
import { Logger } from '../utils/logger';
import { spliceChannel } from './forwarding';
import { OsUser } from './osuser';

/** Socket directories of live forwarders, removed when the process exits however its sessions ended. */
const liveDirs = new Set<string>();
let exitHookSet = false;
function track(dir: string): void {
  liveDirs.add(dir);
  if (exitHookSet) return;
  exitHookSet = true;
  process.once('exit', () => {
    for (const d of liveDirs) fs.rmSync(d, { recursive: true, force: true });
  });
}

export type AgentChannelOpener = (cb: (err: Error | undefined, channel?: ServerChannel) => void) => void;

export class AgentForwarder {
  private dir?: string;
  private server?: net.Server;
  private closed = false;
  socketPath = '';

  constructor(
    private readonly user: OsUser,
    private readonly open: AgentChannelOpener,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    if (this.closed) throw new Error('the session ended before agent forwarding started');
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'teleport-agent-'));
    track(this.dir);
    this.socketPath = path.join(this.dir, `agent.${process.pid}`);
    const asRoot = process.getuid?.() === 0;
    if (asRoot) fs.chownSync(this.dir, this.user.uid, this.user.gid);
    this.server = net.createServer((sock) => {
      this.open((err, channel) => {
        if (err || !channel) {
          this.log.debug('agent channel refused by the client', { error: err });
          sock.destroy();
          return;
        }
        spliceChannel(sock, channel);
      });
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.once('close', () => reject(new Error('the session ended while agent forwarding started')));
      this.server!.listen(this.socketPath, () => resolve());
    });
    if (this.closed) {
      this.close();
      throw new Error('the session ended while agent forwarding started');
    }
    fs.chmodSync(this.socketPath, 0o600);
    if (asRoot) fs.chownSync(this.socketPath, this.user.uid, this.user.gid);
  }

  close(): void {
    this.closed = true;
    this.server?.close();
    if (this.dir) {
      fs.rmSync(this.dir, { recursive: true, force: true });
      liveDirs.delete(this.dir);
    }
  }
}
