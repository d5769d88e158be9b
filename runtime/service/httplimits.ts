/**
 * Limits on HTTP(S) connections before their request is in, for the auth
 * API (3025) and the web listener (3080): the TLS handshake must finish
 * within `handshakeMs` of the TCP connection however slowly the client
 * drips its bytes (Node's own `handshakeTimeout` only counts idle time),
 * the request headers must be in within `headersMs` and the whole request
 * within `requestMs` (Node's `headersTimeout` / `requestTimeout`).
 */
import type * as http from 'node:http';
import type { Socket } from 'node:net';

export const HTTP_LIMITS = { handshakeMs: 10_000, headersMs: 30_000, requestMs: 60_000 } as const;

/** Applies HTTP_LIMITS to `server`; `tls`: it is an https server (the handshake deadline applies). */
export function limitBeforeRequest(server: http.Server, tls: boolean): void {
  server.headersTimeout = HTTP_LIMITS.headersMs;
  server.requestTimeout = HTTP_LIMITS.requestMs;
  if (!tls) return;
  const handshaking = new Map<string, { raw: Socket; deadline: NodeJS.Timeout }>();
  const keyOf = (s: Socket) => `${s.remoteAddress}|${s.remotePort}`;
  const done = (key: string, raw?: Socket) => {
    const h = handshaking.get(key);
    if (!h || (raw && h.raw !== raw)) return;
    clearTimeout(h.deadline);
    handshaking.delete(key);
  };
  server.on('connection', (raw: Socket) => {
    const key = keyOf(raw);
    handshaking.set(key, { raw, deadline: setTimeout(() => raw.destroy(), HTTP_LIMITS.handshakeMs) });
    raw.once('close', () => done(key, raw));
  });
  server.on('secureConnection', (s: Socket) => done(keyOf(s)));
}
