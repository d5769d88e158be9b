#!/usr/bin/env node
// Builds the node service's native helpers into build/; this never fails the install. Run it again
// (node scripts/build-native.js) after installing what a helper needs.
//   build/pam-launch     (native/pam-launch.c) PAM for node sessions: needs libpam's headers (Debian: libpam0g-dev);
//                        without it a node with ssh_service.pam.enabled refuses to start.
//   build/passwd-lookup  (native/passwd-lookup.c) OS account look-ups without a process each: needs only a C compiler;
//                        without it the node forks `getent passwd` for every login (slower, same answers).
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
fs.mkdirSync(path.join(root, 'build'), { recursive: true });

function build(name, libs, missing) {
  const out = path.join(root, 'build', name);
  const args = ['-O2', '-Wall', '-Wextra', '-o', out, path.join(root, 'native', `${name}.c`), ...libs];
  const r = spawnSync(process.env.CC || 'cc', args, { encoding: 'utf8' });
  if (r.status === 0) console.log(`built ${path.relative(root, out)}`);
  else console.log(`${name} not built (${missing}): ${(r.stderr || String(r.error)).split('\n')[0]}`);
}

build('pam-launch', ['-lpam'], 'no C compiler or libpam headers: install libpam0g-dev for PAM support');
build('passwd-lookup', [], 'no C compiler: the node forks getent for each login instead');
