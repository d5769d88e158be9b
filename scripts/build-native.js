#!/usr/bin/env node
// Builds native/pam-launch (the node service's PAM integration) into build/ when the host has libpam's
// headers (Debian: libpam0g-dev). Without them a node with ssh_service.pam.enabled refuses to start; this never
// fails the install. Run it again (node scripts/build-native.js) after installing the headers.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const out = path.join(root, 'build', 'pam-launch');
fs.mkdirSync(path.dirname(out), { recursive: true });
const r = spawnSync(process.env.CC || 'cc', ['-O2', '-Wall', '-Wextra', '-o', out, path.join(root, 'native', 'pam-launch.c'), '-lpam'], { encoding: 'utf8' });
if (r.status === 0) console.log(`built ${path.relative(root, out)}`);
else console.log(`pam-launch not built (no C compiler or libpam headers: install libpam0g-dev for PAM support): ${(r.stderr || String(r.error)).split('\n')[0]}`);
