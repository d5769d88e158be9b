/**
 * `teleport.connection_limits.max_connections` on an SSH listener (node and
 * proxy): at most that many connections are open at once. One more is
 * refused with the server's version line and an SSH disconnect, reason 12
 * "too many connections", which OpenSSH shows the user ("Received disconnect
 * from ...: 12: too many connections"). Open connections are not touched.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Logger } from '../utils/logger';

const SSH_MSG_DISCONNECT = 1;
/** RFC 4253 §11.1. */
export const SSH_DISCONNECT_TOO_MANY_CONNECTIONS = 12;
export const TOO_MANY_CONNECTIONS = 'too many connections';
/** How long a refused client has to read the refusal and close before its socket is destroyed. */
const REFUSAL_LINGER_MS = 5000;

export class ConnectionLimit {
  private open = 0;

  constructor(
    readonly max: number,
    /** The software version in the server's version line, e.g. `Teleport` for `SSH-2.0-Teleport`. */
    private readonly ident: string,
    private readonly log: Logger,
  ) {}

  /** Counts the socket until it closes (true), or refuses it with a message when the limit is reached (false). */
  admit(sock: Socket): boolean {
    if (this.open >= this.max) {
      this.log.warn('connection limit reached, refusing a connection', { remote: sock.remoteAddress, max_connections: this.max });
      refuse(sock, this.ident);
      return false;
    }
    this.open++;
    sock.once('close', () => this.open--);
    return true;
  }
}

/** An SSH_MSG_DISCONNECT packet as sent before key exchange: unencrypted, no MAC, 8-byte aligned (RFC 4253 §6). */
export function disconnectPacket(reason: number, description: string): Buffer {
  const desc = Buffer.from(description);
  // byte type, uint32 reason, string description, string language tag (empty)
  const payload = Buffer.alloc(1 + 4 + 4 + desc.length + 4);
  payload[0] = SSH_MSG_DISCONNECT;
  payload.writeUInt32BE(reason, 1);
  payload.writeUInt32BE(desc.length, 5);
  desc.copy(payload, 9);
  let padding = 8 - ((4 + 1 + payload.length) % 8);
  if (padding < 4) padding += 8;
  const head = Buffer.alloc(5);
  head.writeUInt32BE(1 + payload.length + padding, 0);
  head[4] = padding;
  return Buffer.concat([head, payload, randomBytes(padding)]);
}

function refuse(sock: Socket, ident: string): void {
  sock.on('error', () => undefined);
  // Read and drop what the client sends (its version line): closing with unread data would reset the connection
  // and could discard the refusal before the client reads it.
  sock.resume();
  sock.setTimeout(REFUSAL_LINGER_MS, () => sock.destroy());
  sock.end(Buffer.concat([Buffer.from(`SSH-2.0-${ident}\r\n`), disconnectPacket(SSH_DISCONNECT_TOO_MANY_CONNECTIONS, TOO_MANY_CONNECTIONS)]));
}
