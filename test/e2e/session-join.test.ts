/**
 * Joining a running session (`tsh join`, issue 19 item 2): alice runs an
 * interactive shell on a node with `tsh ssh -t`; the node publishes it as an
 * active session; bob, who may use the same login there, joins it with
 * `tsh join <id>`. Both see what either types; bob leaving is audited and the
 * session goes on; the recording holds the session once; a user who may not
 * see the node is not told the session exists.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fetchRecording } from '../../runtime/recordings/playback';
import { startCluster, TestAuth } from '../helpers/cluster';
import { cliPath, Daemon, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';

/** No node at all: carol's role denies every node. */
const NOWHERE = `kind: role\nversion: v3\nmetadata:\n  name: nowhere\nspec:\n  allow:\n    logins: [${LOGIN}]\n  deny:\n    node_labels:\n      '*': '*'\n`;

/** tsh as `user`, kept running with its stdin open: what it prints is collected. */
function interactive(user: TshUser, args: string[]): Daemon & { type(text: string): void } {
  const child = spawn(process.execPath, [cliPath('tsh'), ...args], { env: { ...process.env, HOME: user.home, TELEPORT_HOME: '' }, stdio: ['pipe', 'pipe', 'pipe'] });
  const d = new Daemon(child) as Daemon & { type(text: string): void };
  d.type = (text: string) => child.stdin.write(text);
  return d;
}

describe('joining a session with tsh join', () => {
  let cluster: TestAuth;
  let work: string;
  let alice: TshUser;
  let bob: TshUser;
  let carol: TshUser;
  const running: Daemon[] = [];

  beforeAll(async () => {
    work = tempDir('join-');
    cluster = await startCluster({ proxy: {} });
    fs.writeFileSync(path.join(work, 'nowhere.yaml'), NOWHERE);
    await cluster.tctlOk('create', path.join(work, 'nowhere.yaml'));
    alice = await TshUser.signUp(cluster, 'alice', [LOGIN]);
    bob = await TshUser.signUp(cluster, 'bob', [LOGIN]);
    carol = await TshUser.signUp(cluster, 'carol', [LOGIN], { roles: ['nowhere'] });
    await Promise.all([alice.login(), bob.login(), carol.login()]);
  });
  afterAll(async () => {
    for (const d of running) await d.stop('SIGKILL');
    await cluster?.cleanup();
    for (const u of [alice, bob, carol]) u?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  /** The active sessions, as an admin sees them. */
  const active = () => cluster.activeSessions();

  it('GIVEN alice in a shell WHEN bob joins THEN both see what either types, his leaving is audited, and the recording has the session once', async () => {
    // GIVEN alice's interactive shell
    const owner = interactive(alice, ['ssh', '-t', 'test-auth']);
    running.push(owner);
    owner.type('echo ready-$((40+2))\n');
    await owner.waitForOutput(/ready-42/);
    const [s] = await waitFor('the session listed as active', async () => ((await active()).length === 1 ? await active() : undefined));
    expect(s).toMatchObject({ login: LOGIN, parties: [expect.objectContaining({ user: 'alice' })] });
    // WHEN bob joins it
    const joiner = interactive(bob, ['join', s.id]);
    running.push(joiner);
    await waitFor('bob among the parties', async () => (await active())[0]?.parties.some((p) => p.user === 'bob'));
    // THEN what alice types reaches both, and what bob types reaches both
    owner.type('echo from-alice-$((1+1))\n');
    await joiner.waitForOutput(/from-alice-2/);
    joiner.type('echo from-bob-$((2+3))\n');
    await owner.waitForOutput(/from-bob-5/);
    await joiner.waitForOutput(/from-bob-5/);
    // WHEN bob leaves THEN it is audited and alice's session goes on
    await joiner.stop('SIGKILL');
    await waitFor('session.leave', async () => (await cluster.events(['session.leave'])).find((e) => e.user === 'bob' && e.sid === s.id));
    expect((await cluster.events(['session.join'])).filter((e) => e.sid === s.id).map((e) => e.user)).toEqual(['bob']);
    owner.type('echo after-bob-$((3+4))\nexit\n');
    await owner.waitForOutput(/after-bob-7/);
    expect(await owner.exited).toBe(0);
    // AND session.end names both participants; the list no longer has it
    const end = await waitFor('session.end', async () => (await cluster.events(['session.end'])).find((e) => e.sid === s.id));
    expect([...end.participants].sort()).toEqual(['alice', 'bob']);
    await waitFor('the session gone from the active list', async () => (await active()).length === 0);
    // AND the recording holds each output once
    const rec = await waitFor('the recording', async () => {
      const client = await cluster.adminClient();
      try {
        return await fetchRecording(client, s.id).catch(() => undefined);
      } finally {
        client.close();
      }
    });
    const text = rec.bytes.toString();
    for (const out of ['from-alice-2', 'from-bob-5', 'after-bob-7']) expect(text.split(out).length - 1).toBe(1);
    expect(rec.events.map((e) => e.event)).toEqual(expect.arrayContaining(['session.start', 'session.join', 'session.leave', 'session.end']));
  });

  it('GIVEN carol, who may see no node WHEN she tries to join a running session THEN she is told there is no such session', async () => {
    const owner = interactive(alice, ['ssh', '-t', 'test-auth']);
    running.push(owner);
    owner.type('echo second-$((5*5))\n');
    await owner.waitForOutput(/second-25/);
    const [s] = await waitFor('the session listed as active', async () => ((await active()).length === 1 ? await active() : undefined));
    const r = await carol.tsh(['join', s.id]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toBe(`ERROR: no active session ${s.id}\n`);
    // AND a session ID that is not one is refused before anything is asked
    const bad = await carol.tsh(['join', 'not-a-session']);
    expect(bad.stderr).toContain('"not-a-session" is not a session ID');
    owner.type('exit\n');
    expect(await owner.exited).toBe(0);
  });
});
