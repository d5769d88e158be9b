/**
 * Benchmark: SSH user certificate issuance per second on one core, signUserCert
 * (in process) against `ssh-keygen -s` signing N public keys in one process, for
 * each CA key type. Prints an aligned table with the ratio.
 *
 *   npx tsc -p . && node dist/bench/cert-issuance.js [--seconds 3] [--algs ed25519,rsa]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  encodeOpenSSHPrivateKey,
  formatAuthorizedKey,
  generateKeyPair,
  KeyAlgorithm,
  publicKeyBlob,
  signUserCert,
} from '../runtime/sshcert';

const ALL: KeyAlgorithm[] = ['ed25519', 'ecdsa-p256', 'ecdsa-p384', 'rsa'];
/** ssh-keygen is given at most this many keys per invocation (argument list size). */
const MAX_BATCH = 2000;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const seconds = Number(arg('seconds') ?? 3);
const algs = (arg('algs')?.split(',') ?? ALL) as KeyAlgorithm[];
for (const a of algs) {
  if (!ALL.includes(a)) {
    console.error(`unknown algorithm "${a}" (want ${ALL.join(', ')})`);
    process.exit(2);
  }
}
if (!(seconds > 0)) {
  console.error('--seconds must be a positive number');
  process.exit(2);
}

const work = mkdtempSync(join(tmpdir(), 'bench-cert-'));
const subject = generateKeyPair('ed25519');
const subjectBlob = publicKeyBlob(subject.publicKey);
const subjectLine = formatAuthorizedKey(subjectBlob, 'bench') + '\n';

function oursPerSecond(caKey: ReturnType<typeof generateKeyPair>): number {
  const params = {
    caPrivateKey: caKey.privateKey,
    publicKey: subjectBlob,
    username: 'alice',
    logins: ['alice', 'root'],
    permit: { pty: true, portForwarding: true, agentForwarding: true, x11Forwarding: false },
    roles: ['admin'],
  };
  for (let i = 0; i < 20; i++) signUserCert(params); // warm-up
  const deadline = performance.now() + seconds * 1000;
  let count = 0;
  const start = performance.now();
  let now = start;
  while (now < deadline) {
    for (let i = 0; i < 10; i++) signUserCert(params);
    count += 10;
    now = performance.now();
  }
  return count / ((now - start) / 1000);
}

function keygenBatch(caPath: string, n: number): number {
  const files: string[] = [];
  for (let i = 0; i < n; i++) {
    const f = join(work, `user${i}.pub`);
    writeFileSync(f, subjectLine);
    files.push(f);
  }
  const t0 = performance.now();
  const r = spawnSync('ssh-keygen', ['-q', '-s', caPath, '-I', 'alice', '-n', 'alice,root', '-V', '-1m:+12h', ...files], {
    encoding: 'utf8',
  });
  const elapsed = (performance.now() - t0) / 1000;
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`ssh-keygen -s exited ${r.status}: ${r.stderr}`);
  return elapsed;
}

function keygenPerSecond(alg: KeyAlgorithm, caKey: ReturnType<typeof generateKeyPair>): { rate: number; n: number } {
  const caPath = join(work, `ca-${alg}`);
  writeFileSync(caPath, encodeOpenSSHPrivateKey(caKey.privateKey, 'bench-ca'), { mode: 0o600 });
  const probe = 50;
  const probeRate = probe / keygenBatch(caPath, probe);
  let total = 0;
  let elapsed = 0;
  while (elapsed < seconds) {
    const n = Math.max(50, Math.min(MAX_BATCH, Math.ceil(probeRate * (seconds - elapsed))));
    elapsed += keygenBatch(caPath, n);
    total += n;
  }
  return { rate: total / elapsed, n: total };
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('   '))
    .join('\n');
}

function main(): void {
  const version = spawnSync('ssh', ['-V'], { encoding: 'utf8' }).stderr.trim();
  console.log(`cert issuance, one core, ~${seconds}s per measurement`);
  console.log(`node ${process.version}; ${version}; ${cpus()[0]?.model ?? 'unknown CPU'}`);
  console.log('subject key ed25519; ours = signUserCert in process; ssh-keygen = one `ssh-keygen -s` process per batch of N keys (process and file I/O included)\n');
  const rows: string[][] = [['CA key', 'signUserCert certs/s', 'ssh-keygen -s certs/s', 'N (ssh-keygen)', 'ratio ours/ssh-keygen']];
  for (const alg of algs) {
    const caKey = generateKeyPair(alg);
    const ours = oursPerSecond(caKey);
    const theirs = keygenPerSecond(alg, caKey);
    const label = alg === 'rsa' ? 'rsa-3072 (rsa-sha2-512)' : alg;
    rows.push([label, ours.toFixed(0), theirs.rate.toFixed(0), String(theirs.n), `${(ours / theirs.rate).toFixed(2)}x`]);
  }
  console.log(table(rows));
}

try {
  main();
} finally {
  rmSync(work, { recursive: true, force: true });
}
