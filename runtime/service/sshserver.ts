/**
 * ssh2's server as every SSH listener here makes it: the host key with its certificate, the
 * listener's version string, algorithms and keepalives. A host CA rotation makes another for the
 * connections that come next (ssh2 fixes a server's host keys when it is made); open ones go on.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { Server, type Connection, type ClientInfo } from 'ssh2';
import { hostKeyWithCertificate, serverAlgorithms, type SshAlgorithms } from '../sshcert';
import { Logger } from '../utils/logger';

export interface SshServerSettings {
  ident: string;
  algorithms: SshAlgorithms;
  keepaliveInterval: number;
  keepaliveCountMax: number;
}

export function sshServer(
  host: { key: KeyObject | string; cert: string },
  settings: SshServerSettings,
  onConnection: (client: Connection, info: ClientInfo) => void,
  log: Logger,
): Server {
  const key = typeof host.key === 'string' ? createPrivateKey(host.key) : host.key;
  const server = new Server(
    {
      hostKeys: [hostKeyWithCertificate(key, host.cert)],
      ident: settings.ident,
      algorithms: serverAlgorithms(settings.algorithms),
      keepaliveInterval: settings.keepaliveInterval,
      keepaliveCountMax: settings.keepaliveCountMax,
    } as ConstructorParameters<typeof Server>[0],
    onConnection,
  );
  server.on('error', (err: Error) => log.warn('ssh server error', { error: err }));
  return server;
}
