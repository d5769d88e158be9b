/**
 * The local deployment's TLS: one self-signed server certificate for every local AWS endpoint
 * (the gateway, the CloudFormation response receiver), trusted by instances and functions through
 * `NODE_EXTRA_CA_CERTS`, as the real endpoints' certificates are trusted through the system store.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { selfSignedServerCert, type TlsKeyPair } from '../runtime/tlsca';

/** The host side of the deployment's bridge: where instances and functions reach the endpoints. */
export const HOST_ADDRESS = '10.231.0.1';

export interface EndpointTls extends TlsKeyPair {
  /** The certificate's file, for `NODE_EXTRA_CA_CERTS`. */
  readonly certFile: string;
}

/** A certificate for the endpoints' addresses, written to `dir/endpoints.crt` (and the key, 0600). */
export async function endpointTls(dir: string, names: readonly string[] = [HOST_ADDRESS, '127.0.0.1', 'localhost']): Promise<EndpointTls> {
  const pair = await selfSignedServerCert([...names]);
  const certFile = path.join(dir, 'endpoints.crt');
  fs.writeFileSync(certFile, pair.cert, { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'endpoints.key'), pair.key, { mode: 0o600 });
  return { ...pair, certFile };
}
