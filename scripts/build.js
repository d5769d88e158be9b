#!/usr/bin/env node
// Builds dist/ with the TypeScript compiler (`npm run build`), and records what it was built from
// (scripts/build-stamp.js). With --if-stale it builds only when a compiler input changed since the last
// successful build (`npm start`, `npm run bench`, `npm run deploy:local`): an unchanged checkout starts at
// once, any change rebuilds. --project <dir> builds another project with this checkout's compiler.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const stamp = require('./build-stamp');

function usage(msg) {
  process.stderr.write(`build: ${msg}\nusage: node scripts/build.js [--if-stale] [--project <dir>]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = { ifStale: false, project: stamp.ROOT };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--if-stale') o.ifStale = true;
    else if (a === '--project') {
      if (!argv[i + 1]) usage('--project needs a directory');
      o.project = path.resolve(argv[++i]);
    } else if (a.startsWith('--project=')) o.project = path.resolve(a.slice('--project='.length));
    else usage(`unknown argument "${a}"`);
  }
  return o;
}

function main() {
  const o = parseArgs(process.argv.slice(2));
  const stampFile = path.join(o.project, 'dist', '.build-stamp.json');
  const sources = stamp.sourceHash(o.project);
  if (o.ifStale) {
    if (stamp.stampedHash(stampFile) === sources) return 0;
    process.stderr.write('build: the sources changed since the last build (or there is none): compiling…\n');
  }
  stamp.clearStamp(stampFile);
  const tsc = require.resolve('typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(o.project, 'tsconfig.json')], { cwd: o.project, stdio: 'inherit' });
  if (r.error) throw r.error;
  if (r.status !== 0) return r.status ?? 1;
  stamp.writeStamp(sources, stampFile);
  return 0;
}

process.exitCode = main();
