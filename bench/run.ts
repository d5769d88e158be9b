/**
 * `npm run bench`: runs every benchmark in turn, each in its own process
 * (`node dist/bench/<name>.js`), or only those named on the command line:
 * `npm run bench -- proxy-ssh`. Arguments that start with `--` (`--nodes=3000`)
 * go to each benchmark run. Each prints its own table and a JSON line.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const BENCHES = ['cert-issuance', 'ca-signer', 'node-ssh', 'proxy-ssh', 'backend', 'kex', 'access', 'deploy-local', 'tunnel-agents', 'web-echo', 'scale', 'cache-range'];

const wanted = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const passed = process.argv.slice(2).filter((a) => a.startsWith('--'));
const unknown = wanted.filter((w) => !BENCHES.includes(w));
if (unknown.length) {
  process.stderr.write(`unknown benchmark ${unknown.join(', ')}; there are: ${BENCHES.join(', ')}\n`);
  process.exit(2);
}
let failed = 0;
for (const name of wanted.length ? wanted : BENCHES) {
  process.stdout.write(`\n=== ${name} ===\n`);
  const r = spawnSync(process.execPath, [path.join(__dirname, `${name}.js`), ...passed], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
