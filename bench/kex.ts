/**
 * Key exchange cost: an SSH handshake (ssh2 client and server in one
 * process, over loopback, until both sides have the new keys) with
 * curve25519-sha256 against mlkem768x25519-sha256, interleaved, and the
 * post-quantum exchange's own computation (client keys + server reply +
 * client finish) without SSH around it. BENCH_RUNS (default 200) handshakes
 * each.
 */
import { generateKeyPairSync } from 'node:crypto';
import { AddressInfo } from 'node:net';
import { Client, Server } from 'ssh2';
import { CLIENT_ALGORITHMS, plainHostKey, serverAlgorithms } from '../runtime/sshcert';
import { DEFAULT_SSH_ALGORITHMS } from '../runtime/sshcert/algorithms';
import { clientExchange, serverExchange } from '../runtime/sshcert/mlkem768x25519';
import { envNumber, fmt, formatTable, quantile } from './common';

const KEXES = ['curve25519-sha256', 'mlkem768x25519-sha256'];

function handshake(port: number, kex: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const client = new Client();
    client.on('handshake', (n) => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      client.end();
      if (n.kex !== kex) return reject(new Error(`negotiated ${n.kex}, not ${kex}`));
      resolve(ms);
    });
    client.on('error', reject);
    client.connect({ host: '127.0.0.1', port, username: 'bench', algorithms: { ...CLIENT_ALGORITHMS, kex: [kex] as never, serverHostKey: ['ssh-ed25519'] } });
  });
}

async function main(): Promise<void> {
  const runs = envNumber('BENCH_RUNS', 200);
  const hostKey = plainHostKey(generateKeyPairSync('ed25519').privateKey);
  const server = new Server({ hostKeys: [hostKey], algorithms: serverAlgorithms(DEFAULT_SSH_ALGORITHMS) }, (conn) => {
    conn.on('error', () => undefined);
    conn.on('authentication', (ctx) => ctx.reject());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const times: Record<string, number[]> = Object.fromEntries(KEXES.map((k) => [k, []]));
  try {
    for (const k of KEXES) await handshake(port, k); // warm up
    for (let i = 0; i < runs; i++) for (const k of KEXES) times[k].push(await handshake(port, k));
  } finally {
    server.close();
  }
  const compute: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint();
    const c = clientExchange();
    c.finish(serverExchange(c.init).reply);
    compute.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  const row = (name: string, xs: number[]) => [name, fmt(quantile(xs, 0.5), 2), fmt(quantile(xs, 0.9), 2), fmt(quantile(xs, 0.99), 2)];
  console.log(
    formatTable([
      ['ms', 'p50', 'p90', 'p99'],
      ...KEXES.map((k) => row(`handshake, ${k}`, times[k])),
      row('mlkem768x25519 computation only (both sides)', compute),
    ]),
  );
  console.log(
    JSON.stringify({
      bench: 'kex',
      runs,
      ...Object.fromEntries(KEXES.map((k) => [k, { p50: quantile(times[k], 0.5), p90: quantile(times[k], 0.9) }])),
      mlkem_compute: { p50: quantile(compute, 0.5), p90: quantile(compute, 0.9) },
    }),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
