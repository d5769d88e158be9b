/**
 * Benchmark: certificate issuance per second with the CA key behind each
 * signer: in process (the default) and in a PKCS#11 token (SoftHSM2, a fresh
 * temporary token). Both with ECDSA P-256 CA keys (what a token holds), SSH
 * user certificates and X.509 leaf certificates, one request at a time and 16
 * at once (the token signs one at a time on the auth server's session).
 *
 *   npx tsc -p . && node dist/bench/ca-signer.js [--seconds 3]
 */
import { spawnSync } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { localSigner, Pkcs11KeyStore, Signer } from '../runtime/keystore';
import { generateKeyPair, publicKeyBlob, signCertificateWith, userCertFields } from '../runtime/sshcert';
import { createCACert, generateTlsKey, issueCert, publicKeyPem } from '../runtime/tlsca';

const MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const i = process.argv.indexOf('--seconds');
const seconds = i >= 0 ? Number(process.argv[i + 1]) : 3;
if (!(seconds > 0)) {
  console.error('--seconds must be a positive number');
  process.exit(2);
}

const subject = publicKeyBlob(generateKeyPair('ed25519').publicKey);
const tlsSubject = publicKeyPem(generateTlsKey());

async function rate(op: () => Promise<unknown>, concurrency: number): Promise<number> {
  for (let n = 0; n < 20; n++) await op(); // warm-up
  const start = performance.now();
  const deadline = start + seconds * 1000;
  let count = 0;
  const worker = async () => {
    while (performance.now() < deadline) {
      await op();
      count++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return count / ((performance.now() - start) / 1000);
}

async function measure(name: string, ssh: Signer, tls: Signer): Promise<string[][]> {
  const caCert = await createCACert('bench', tls);
  const sshCert = () =>
    signCertificateWith(
      userCertFields({ publicKey: subject, username: 'alice', logins: ['alice'], permit: { pty: true, portForwarding: true, agentForwarding: false, x11Forwarding: false }, roles: ['admin'] }),
      ssh,
    );
  const tlsCert = () => issueCert({ ca: { cert: caCert, signer: tls }, publicKey: tlsSubject, identity: { username: 'alice', groups: ['admin'], principals: ['alice'] }, ttlMs: 3600_000 });
  const rows: string[][] = [];
  for (const concurrency of [1, 16]) {
    rows.push([name, String(concurrency), (await rate(sshCert, concurrency)).toFixed(0), (await rate(tlsCert, concurrency)).toFixed(0)]);
  }
  return rows;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('   ')).join('\n');
}

async function main(work: string): Promise<void> {
  // A fresh SoftHSM2 token of our own.
  mkdirSync(join(work, 'tokens'));
  writeFileSync(join(work, 'softhsm2.conf'), `directories.tokendir = ${join(work, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  process.env.SOFTHSM2_CONF = join(work, 'softhsm2.conf');
  const init = spawnSync('softhsm2-util', ['--init-token', '--free', '--label', 'bench', '--pin', '1234', '--so-pin', '5678'], { encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`softhsm2-util --init-token: ${init.stderr || init.error}`);
  const where = { module_path: 'module_path', token: 'token_label', pin: 'pin' };
  const token = Pkcs11KeyStore.open({ modulePath: MODULE, tokenLabel: 'bench', pin: '1234', where });
  try {
    console.log(`CA certificate issuance, ~${seconds}s per measurement; node ${process.version}; ${cpus()[0]?.model ?? 'unknown CPU'}`);
    console.log('ECDSA P-256 CA keys; subject keys ed25519 (SSH) and P-256 (TLS); signing only (no HTTP, no backend)\n');
    const rows = [['signer', 'in flight', 'SSH user certs/s', 'X.509 certs/s']];
    const local = () => localSigner(createPrivateKey(generateTlsKey()));
    rows.push(...(await measure('in-process', local(), local())));
    const ssh = await token.generate({ kind: 'ssh', algorithm: 'ecdsa-p256' }, 'bench-ssh');
    const tls = await token.generate({ kind: 'tls' }, 'bench-tls');
    rows.push(...(await measure('PKCS#11 (SoftHSM2)', ssh.signer, tls.signer)));
    console.log(table(rows));
  } finally {
    await token.close();
  }
}

const work = mkdtempSync(join(tmpdir(), 'bench-ca-signer-'));
main(work)
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => rmSync(work, { recursive: true, force: true }));
