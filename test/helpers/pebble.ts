/**
 * Pebble, Let's Encrypt's ACME test server (Debian package `pebble`), for the
 * proxy's ACME certificates: `pebble-challtestsrv` is its DNS server and
 * answers every name with 127.0.0.1, and Pebble validates TLS-ALPN-01 by
 * dialing that address on `tlsPort` (the proxy's web port under test).
 * Pebble's own HTTPS uses a certificate made here; `caFile` is that
 * certificate, for the ACME client's NODE_EXTRA_CA_CERTS (the runtime has no
 * way to skip TLS verification). `issuingRoot()` is the root Pebble signs
 * with, fetched from its management API, for a test client to verify the
 * proxy's chain.
 */
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import { selfSignedServerCert } from '../../runtime/tlsca';
import { Daemon, freePort, tempDir } from './proc';

export interface Pebble {
  /** The ACME directory URL. */
  directoryUrl: string;
  /** Pebble's own HTTPS certificate: trust it with NODE_EXTRA_CA_CERTS. */
  caFile: string;
  /** The environment for a process that talks to Pebble. */
  env: NodeJS.ProcessEnv;
  /** The root of the chains Pebble issues (regenerated at every Pebble start). */
  issuingRoot(): Promise<string>;
  stop(): Promise<void>;
}

function get(url: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET ${url}: ${res.statusCode} ${body}`))));
      })
      .on('error', reject);
  });
}

/** Starts challtestsrv and Pebble; Pebble validates TLS-ALPN-01 on 127.0.0.1:`tlsPort`. */
export async function startPebble(tlsPort: number): Promise<Pebble> {
  const dir = tempDir('pebble-');
  const daemons: Daemon[] = [];
  const stop = async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const [dnsPort, dnsMgmt, acmePort, acmeMgmt, httpPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    const pair = await selfSignedServerCert(['localhost', '127.0.0.1']);
    const caFile = path.join(dir, 'pebble-cert.pem');
    fs.writeFileSync(caFile, pair.cert);
    fs.writeFileSync(path.join(dir, 'pebble-key.pem'), pair.key, { mode: 0o600 });
    const config = {
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${acmeMgmt}`,
        certificate: caFile,
        privateKey: path.join(dir, 'pebble-key.pem'),
        httpPort,
        tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    };
    fs.writeFileSync(path.join(dir, 'pebble.json'), JSON.stringify(config));
    const dns = Daemon.spawn('pebble-challtestsrv', [
      '-defaultIPv4', '127.0.0.1',
      '-defaultIPv6', '',
      '-dns01', `127.0.0.1:${dnsPort}`,
      '-management', `127.0.0.1:${dnsMgmt}`,
      '-http01', '',
      '-https01', '',
      '-tlsalpn01', '',
    ]);
    daemons.push(dns);
    await dns.waitForOutput(/Starting challenge servers/);
    const pebble = Daemon.spawn('pebble', ['-config', path.join(dir, 'pebble.json'), '-dnsserver', `127.0.0.1:${dnsPort}`], {
      // No random sleeps before validation, no deliberately rejected nonces, and a fresh validation for every order.
      PEBBLE_VA_NOSLEEP: '1',
      PEBBLE_WFE_NONCEREJECT: '0',
      PEBBLE_AUTHZREUSE: '0',
    });
    daemons.push(pebble);
    await pebble.waitForOutput(/Listening on: 127\.0\.0\.1:\d+/);
    const caPem = pair.cert;
    return {
      directoryUrl: `https://127.0.0.1:${acmePort}/dir`,
      caFile,
      env: { NODE_EXTRA_CA_CERTS: caFile },
      issuingRoot: () => get(`https://127.0.0.1:${acmeMgmt}/roots/0`, caPem),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
