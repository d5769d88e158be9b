/**
 * What an SSH connection negotiated, in the server's debug log (as OpenSSH's
 * `kex: algorithm: …` / `kex: client->server cipher: …` debug lines).
 */
import type { Connection, NegotiatedAlgorithms } from 'ssh2';
import type { Logger } from '../utils/logger';

/** Logs each (re)key exchange of `client` at debug level. */
export function logNegotiated(client: Connection, log: Logger, remote: string): void {
  client.on('handshake', (n: NegotiatedAlgorithms) => {
    log.debug('ssh key exchange done', {
      remote,
      kex: n.kex,
      host_key: n.serverHostKey,
      cipher: n.cs.cipher,
      mac: n.cs.mac || 'implicit',
      compression: n.cs.compress,
    });
  });
}
