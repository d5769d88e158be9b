/**
 * The run-level leftover check (test/helpers/testrun.ts) and the OS account fixture
 * (test/helpers/osusers.ts): a process, an account or a temp file a test leaves is reported and
 * removed; a clean run reports nothing; a fixture account lives exactly as long as its file.
 * The runs here are made up (their own id and temp directory), so the real run is not touched.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { accountsOfRun, ACCOUNT_MARKER, findProcesses, RUN_ENV, runId } from './leftovers';
import { createOsAccount, testOsAccount } from './osusers';
import { tempDir, waitFor } from './proc';
import { NetLab } from './netns';
import { endRun, Run } from './testrun';

const fixture = testOsAccount('fixture');

function fakeRun(): Run {
  return { id: `fake${randomBytes(4).toString('hex')}`, tmp: tempDir('tpt-run-') };
}

const alive = (child: ChildProcess) => findProcesses((p) => p.pid === child.pid).length === 1;

describe('endRun', () => {
  const started: ChildProcess[] = [];
  afterAll(() => {
    for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  test('GIVEN a run whose tests left a process, an account with a process of its own and a temp file WHEN it ends THEN each is named and removed', async () => {
    // GIVEN
    const run = fakeRun();
    const withId = spawn('sleep', ['1000'], { env: { ...process.env, [RUN_ENV]: run.id }, stdio: 'ignore' });
    const account = createOsAccount('leftover', run.id);
    const asAccount = spawn('setpriv', ['--reuid', String(account.uid), '--regid', String(account.gid), '--clear-groups', '--', 'sleep', '1001'], { env: {}, stdio: 'ignore' });
    started.push(withId, asAccount);
    await waitFor('both sleeps to run', () => alive(withId) && findProcesses((p) => p.uid === account.uid && p.command === 'sleep 1001').length === 1);
    fs.writeFileSync(path.join(run.tmp, 'forgotten'), 'x');

    // WHEN
    const left = await endRun(run, 200);

    // THEN
    expect(left.sort()).toEqual(
      [
        `process ${withId.pid} (uid 0): sleep 1000`,
        `process ${asAccount.pid} (uid ${account.uid}): sleep 1001`,
        `OS account ${account.name}`,
        `temp file ${path.join(run.tmp, 'forgotten')}`,
      ].sort(),
    );
    await waitFor('the killed processes to be gone', () => !alive(withId) && !alive(asAccount));
    expect(accountsOfRun(run.id)).toEqual([]);
    expect(fs.existsSync(account.home)).toBe(false);
    expect(fs.existsSync(run.tmp)).toBe(false);
  });

  test('GIVEN a run whose tests cleaned up WHEN it ends THEN nothing is reported and its temp directory is gone', async () => {
    // GIVEN
    const run = fakeRun();

    // WHEN
    const left = await endRun(run, 200);

    // THEN
    expect(left).toEqual([]);
    expect(fs.existsSync(run.tmp)).toBe(false);
  });
});

describe('endRun and network labs', () => {
  test('GIVEN a run whose test left a network lab (namespace, host link, route) WHEN it ends THEN each is named and removed', async () => {
    // GIVEN a lab of the run, never closed
    const run = fakeRun();
    const lab = NetLab.create('tleftover', run.id);
    try {
      const ns = lab.namespace('left');
      lab.veth({ dev: lab.hostDev('h'), addr: `${lab.addr(1)}/30` }, { ns, dev: 'eth0', addr: `${lab.addr(2)}/30` });
      const exists = () => ({
        ns: execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(ns),
        link: execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).includes(` ${lab.hostDev('h')}@`),
        route: execFileSync('ip', ['route', 'show', 'type', 'unreachable'], { encoding: 'utf8' }).includes(`${lab.addr(0)}/24`),
        lock: fs.existsSync(`/run/tnetlab${lab.n}.pid`),
      });
      expect(exists()).toEqual({ ns: true, link: true, route: true, lock: true });

      // WHEN
      const left = await endRun(run, 200);

      // THEN
      expect(left.sort()).toEqual(
        [
          `network lab /run/tnetlab${lab.n}.pid`,
          `network namespace ${ns}`,
          `route unreachable ${lab.addr(0)}/24`,
        ].sort(),
      );
      expect(exists()).toEqual({ ns: false, link: false, route: false, lock: false });
    } finally {
      lab.close();
    }
  });
});

describe('testOsAccount', () => {
  test('GIVEN the fixture WHEN the file runs THEN its account exists with a home, marked with this run, under a name of its own', () => {
    const entry = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${fixture.name}:`));
    expect(fixture.name).toMatch(/^tpt-fixture-[0-9a-f]{6}$/);
    expect(entry?.split(':')[4]).toBe(`${ACCOUNT_MARKER} ${runId()}`);
    expect(fs.statSync(fixture.home).uid).toBe(fixture.uid);
  });
});

// Declared after the fixture, so it runs after the fixture's own afterAll.
let fixtureName = '';
beforeAll(() => (fixtureName = fixture.name));
afterAll(() => {
  expect(fs.readFileSync('/etc/passwd', 'utf8')).not.toContain(`${fixtureName}:`);
});
