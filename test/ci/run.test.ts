/**
 * `.ci/run`, the CI entry point, on this machine with its PATH rebuilt: every system command is there
 * except the ones a case hides, and the ones with side effects (apt-get, sudo, npm; ssh for
 * `.ci/openssh-pq`) are stubs that record how they were called. It runs as root and as an
 * unprivileged account, with and without sudo.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { testOsAccount } from '../helpers/osusers';
import { ROOT, run, RunResult } from '../helpers/proc';
import { scratchDir } from '../helpers/scratch';

/** Where a fresh Debian keeps its commands, plus the directory of the node running the tests. */
const SYSTEM_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
const NODE_DIR = path.dirname(process.execPath);

/** Stub bodies (after the line that records the call in $CALLS). */
const STUBS: Record<string, string> = {
  'apt-get': '',
  npm: '',
  sudo: 'exec "$@"',
  // .ci/openssh-pq: the system's ssh already speaks mlkem768x25519-sha256, so there is nothing to unpack
  ssh: 'echo mlkem768x25519-sha256',
};

const user = testOsAccount('ci');

interface Case {
  /** Commands that are not on PATH. */
  hide?: string[];
  /** Stubs replacing real commands (name → body). */
  stubs?: Record<string, string>;
  asUser?: boolean;
}

/** Runs .ci/run from a copy of .ci/ with a PATH of stubs over symlinks to every other system command. */
async function ciRun(c: Case): Promise<RunResult & { calls: string[] }> {
  const dir = scratchDir('ci-run-');
  fs.chmodSync(dir, 0o755);
  const stubs = { ...STUBS, ...c.stubs };
  const hidden = new Set([...(c.hide ?? []), ...Object.keys(stubs)]);
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  for (const d of [NODE_DIR, ...SYSTEM_PATH]) {
    if (!fs.existsSync(d)) continue;
    for (const name of fs.readdirSync(d)) {
      if (hidden.has(name) || fs.existsSync(path.join(bin, name))) continue;
      fs.symlinkSync(path.join(d, name), path.join(bin, name));
    }
  }
  const stubDir = path.join(dir, 'stubs');
  fs.mkdirSync(stubDir);
  for (const [name, body] of Object.entries(stubs)) {
    if (c.hide?.includes(name)) continue;
    fs.writeFileSync(path.join(stubDir, name), `#!/bin/sh\necho "${name} $*" >> "$CALLS"\n${body}\n`, { mode: 0o755 });
  }
  const checkout = path.join(dir, 'checkout');
  fs.cpSync(path.join(ROOT, '.ci'), path.join(checkout, '.ci'), { recursive: true });
  const calls = path.join(dir, 'calls');
  fs.writeFileSync(calls, '');
  fs.chmodSync(calls, 0o666); // the stubs record into it as whichever user runs .ci/run
  const env = { PATH: `${stubDir}:${bin}`, CALLS: calls, HOME: dir };
  const script = path.join(checkout, '.ci', 'run');
  const r = c.asUser
    ? await run('/usr/bin/setpriv', ['--reuid', String(user.uid), '--regid', String(user.gid), '--clear-groups', '--', '/bin/bash', script], { env })
    : await run('/bin/bash', [script], { env });
  return { ...r, calls: fs.readFileSync(calls, 'utf8').split('\n').filter(Boolean) };
}

const INSTALL_SSLSCAN = ['apt-get update -qq', 'apt-get install -y -qq --no-install-recommends sslscan'];
/** .ci/openssh-pq --check asks the system's ssh; then the tests run. */
const TESTS = ['ssh -Q kex', 'npm ci --no-audit --no-fund', 'npm test'];

describe('.ci/run checks Node.js and npm first', () => {
  test('GIVEN Node.js 18 WHEN .ci/run runs THEN it exits 1 naming the version it found and the one it needs, and installs nothing', async () => {
    // GIVEN / WHEN
    const r = await ciRun({ stubs: { node: 'echo v18.19.0' }, hide: ['sslscan'] });

    // THEN
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^\.ci\/run: Node\.js >= 20 is needed, \S+\/node is v18\.19\.0: install a newer one from https:\/\/nodejs\.org/);
    expect(r.calls).toEqual(['node --version']);
  });

  test('GIVEN no node WHEN .ci/run runs THEN it exits 1 saying Node.js >= 20 is needed and installs nothing', async () => {
    const r = await ciRun({ hide: ['node', 'sslscan'] });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^\.ci\/run: Node\.js >= 20 is needed and there is no node on PATH/);
    expect(r.calls).toEqual([]);
  });

  test('GIVEN no npm WHEN .ci/run runs THEN it exits 1 saying npm is needed and installs nothing', async () => {
    const r = await ciRun({ hide: ['npm', 'sslscan'] });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^\.ci\/run: npm is needed and there is no npm on PATH/);
    expect(r.calls).toEqual([]);
  });
});

describe('.ci/run installs what is missing, as root or through sudo', () => {
  test('GIVEN root and no C/C++ toolchain, Python or git WHEN .ci/run runs THEN apt-get installs them without sudo, then npm ci and npm test run', async () => {
    // GIVEN / WHEN
    const r = await ciRun({ hide: ['cc', 'c++', 'make', 'python3', 'git'] });

    // THEN
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.calls).toEqual(['apt-get update -qq', 'apt-get install -y -qq --no-install-recommends build-essential python3 git', ...TESTS]);
  });

  test('GIVEN an unprivileged user with sudo and a missing package WHEN .ci/run runs THEN apt-get runs through sudo and the tests as the user', async () => {
    // GIVEN / WHEN
    const r = await ciRun({ asUser: true, hide: ['sslscan'] });

    // THEN
    expect(r.code).toBe(0);
    expect(r.calls).toEqual([
      'sudo apt-get update -qq',
      'apt-get update -qq',
      'sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends sslscan',
      'apt-get install -y -qq --no-install-recommends sslscan',
      ...TESTS,
    ]);
    expect(r.stderr).toBe(`.ci/run: running the tests as ${user.name}, not root: tests that create OS accounts need root\n`);
  });

  test('GIVEN an unprivileged user without sudo and a missing package WHEN .ci/run runs THEN it exits 1 saying root is needed for what, and installs nothing', async () => {
    // GIVEN / WHEN
    const r = await ciRun({ asUser: true, hide: ['sslscan', 'sudo'] });

    // THEN
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`.ci/run: root is needed to install sslscan, and ${user.name} is not root and has no sudo: run .ci/run as root, or install sudo\n`);
    expect(r.calls).toEqual([]);
  });

  test('GIVEN an unprivileged user without sudo and nothing missing WHEN .ci/run runs THEN it runs npm ci and npm test', async () => {
    const r = await ciRun({ asUser: true, hide: ['sudo'] });
    expect(r.code).toBe(0);
    expect(r.calls).toEqual(TESTS);
  });

  test('GIVEN root and a missing package WHEN .ci/run runs THEN the apt-get install is non-interactive', async () => {
    const r = await ciRun({ hide: ['sslscan'], stubs: { 'apt-get': 'echo "DEBIAN_FRONTEND=$DEBIAN_FRONTEND" >> "$CALLS"' } });
    expect(r.code).toBe(0);
    expect(r.calls).toEqual([INSTALL_SSLSCAN[0], 'DEBIAN_FRONTEND=noninteractive', INSTALL_SSLSCAN[1], 'DEBIAN_FRONTEND=noninteractive', ...TESTS]);
  });
});
