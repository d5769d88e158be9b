/**
 * Audit durability on a full disk, with real processes and small tmpfs disks filled on purpose:
 * - a node that cannot record audit events refuses sessions (ssh_service.audit_failure: refuse,
 *   the default), tells the user why, runs nothing and leaves no empty recording behind;
 * - an auth server whose disk fills while nodes deliver events keeps an audit file that parses
 *   completely, stores each event once, and has every acknowledged event once space returns.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createAuth, startAuth, TestAuth, TestNode } from '../helpers/cluster';
import { SshUser, sshTo } from '../helpers/openssh';
import { tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { SmallDisk } from '../helpers/tmpfs';

const REFUSED = 'session refused: the node cannot record audit events (disk full)';

describe('audit on a full disk', () => {
  let work: string;
  /** A directory for one cluster's user keys and known_hosts (each describe has its own cluster). */
  const keysDir = (name: string): string => {
    const d = path.join(work, name);
    fs.mkdirSync(d, { recursive: true });
    return d;
  };
  beforeAll(() => {
    work = tempDir('audit-disk-');
    fs.chmodSync(work, 0o777);
  });
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  describe('GIVEN a node whose data dir is full', () => {
    let auth: TestAuth;
    let node: TestNode;
    let disk: SmallDisk | undefined;
    let alice: SshUser;

    beforeAll(async () => {
      auth = await startAuth({ tokens: ['node:full-node-token'] });
      node = await TestNode.create(auth, { token: 'full-node-token', caPin: await auth.caPin(), nodeName: 'full-node' });
      disk = await SmallDisk.mount(node.dataDir, '32m');
      node.start();
      await node.ready();
      await auth.tctlOk('users', 'add', 'alice', LOGIN);
      alice = await SshUser.create(auth, keysDir('alice'), 'alice', LOGIN);
    }, 60_000);

    afterAll(async () => {
      await node?.daemon?.stop('SIGKILL');
      await disk?.unmount();
      await node?.cleanup();
      await auth?.cleanup();
    });

    it('WHEN a command and an interactive session are started THEN both are refused with the reason, nothing runs, and it is logged once; after space returns sessions work', async () => {
      // GIVEN a working node, then its disk filled
      expect((await sshTo(alice, node.port, 'full-node', ['echo', 'before'])).stdout).toBe('before\n');
      disk!.fill();
      const ran = path.join(work, 'ran-exec');
      const ranShell = path.join(work, 'ran-shell');

      // WHEN a command with a side effect is run
      const exec = await sshTo(alice, node.port, 'full-node', [`touch ${ran}`]);
      // THEN it is refused with the reason, and did not run
      expect(exec.code).not.toBe(0);
      expect(exec.stderr).toContain(REFUSED);
      expect(fs.existsSync(ran)).toBe(false);

      // WHEN an interactive session is opened and types a command
      const shell = await sshTo(alice, node.port, 'full-node', [], ['-tt'], `touch ${ranShell}\nexit\n`);
      // THEN it is refused the same way, nothing ran, and no recording file is left behind
      expect(shell.code).not.toBe(0);
      expect(shell.stdout + shell.stderr).toContain(REFUSED);
      expect(fs.existsSync(ranShell)).toBe(false);
      const recordings = path.join(node.dataDir, 'log', 'upload', 'sessions', 'default');
      expect(fs.existsSync(recordings) ? fs.readdirSync(recordings).filter((f) => f.includes('.session.')) : []).toEqual([]);

      // AND the operator sees one error line for the outage, not one per refusal
      const out = node.daemon!.stdout + node.daemon!.stderr;
      expect(out.match(/cannot record audit events; refusing sessions/g)).toHaveLength(1);
      expect(out).toContain('disk full');

      // WHEN space returns THEN commands and interactive sessions run again, and are audited
      disk!.free();
      const after = await sshTo(alice, node.port, 'full-node', [`touch ${ran} && echo after`]);
      expect(after.stdout).toBe('after\n');
      expect(fs.existsSync(ran)).toBe(true);
      const shellAfter = await sshTo(alice, node.port, 'full-node', [], ['-tt'], `touch ${ranShell}\nexit\n`);
      expect(shellAfter.code).toBe(0);
      expect(fs.existsSync(ranShell)).toBe(true);
      await waitFor('the exec event of the command run after space returned', async () =>
        (await auth.events(['exec'])).some((e) => e.command === `touch ${ran} && echo after`),
      );
      await node.daemon!.waitForOutput(/audit events are recorded again/);
    }, 90_000);

    it('WHEN the disk fills during an interactive session THEN the session ends with the reason as soon as its output cannot be recorded, and the node keeps serving', async () => {
      // GIVEN a shell that waits for a file before printing a lot
      const go = path.join(work, 'go');
      const script = `echo STARTED-$((1+1))\nwhile [ ! -e ${go} ]; do sleep 0.1; done; od -v -N 200000 /dev/zero; echo FINISHED-$((2+2))\nexit\n`;
      const session = sshTo(alice, node.port, 'full-node', [], ['-tt'], script);
      const recordings = path.join(node.dataDir, 'log', 'upload', 'sessions', 'default');
      await waitFor('the session recording on the node', () =>
        fs.existsSync(recordings) && fs.readdirSync(recordings).some((f) => f.endsWith('.session.bytes') && fs.readFileSync(path.join(recordings, f), 'utf8').includes('STARTED-2')),
      );
      // WHEN the disk fills and the shell prints
      disk!.fill();
      fs.writeFileSync(go, '');
      const r = await session;
      // THEN the session is ended with the reason, before its output is complete
      expect(r.stdout + r.stderr).toContain('session ended: the node cannot record audit events (disk full)');
      expect(r.stdout).not.toContain('FINISHED-4');
      // AND WHEN space returns THEN the node serves again
      disk!.free();
      expect((await sshTo(alice, node.port, 'full-node', ['echo', 'still-here'])).stdout).toBe('still-here\n');
    }, 90_000);
  });

  describe('GIVEN a node with audit_failure: continue whose data dir is full', () => {
    let auth: TestAuth;
    let node: TestNode;
    let disk: SmallDisk | undefined;

    afterAll(async () => {
      await node?.daemon?.stop('SIGKILL');
      await disk?.unmount();
      await node?.cleanup();
      await auth?.cleanup();
    });

    it('WHEN a command is run THEN it runs unaudited, and the operator is told so once', async () => {
      // GIVEN the node, its disk full
      auth = await startAuth({ tokens: ['node:continue-node-token'] });
      node = await TestNode.create(auth, { token: 'continue-node-token', caPin: await auth.caPin(), nodeName: 'cont-node', sshExtra: ['audit_failure: continue'] });
      disk = await SmallDisk.mount(node.dataDir, '32m');
      node.start();
      await node.ready();
      await auth.tctlOk('users', 'add', 'bob', LOGIN);
      const bob = await SshUser.create(auth, keysDir('bob'), 'bob', LOGIN);
      disk.fill();
      // WHEN a command is run twice
      const ran = path.join(work, 'ran-continue');
      const r = await sshTo(bob, node.port, 'cont-node', [`touch ${ran} && echo ran`]);
      await sshTo(bob, node.port, 'cont-node', ['true']);
      // THEN it ran, and the node logged the outage once
      expect(r.stdout).toBe('ran\n');
      expect(fs.existsSync(ran)).toBe(true);
      const out = node.daemon!.stdout + node.daemon!.stderr;
      expect(out.match(/cannot record audit events; sessions run unaudited/g)).toHaveLength(1);
    }, 90_000);
  });

  describe('GIVEN an auth server whose data dir fills up while a node delivers events', () => {
    let auth: TestAuth | undefined;
    let node: TestNode | undefined;
    let disk: SmallDisk | undefined;

    afterAll(async () => {
      await node?.cleanup();
      await auth?.stop();
      await disk?.unmount();
      await auth?.cleanup();
    });

    it('THEN the audit file parses completely, each event is stored once, and every event the node acknowledged arrives once space returns', async () => {
      // GIVEN an auth server on a small disk and a node in its own process (its own disk)
      auth = await createAuth({ tokens: ['node:auth-full-token'] });
      disk = await SmallDisk.mount(auth.dataDir, '32m');
      auth.start();
      await auth.ready();
      node = await TestNode.create(auth, { token: 'auth-full-token', caPin: await auth.caPin(), nodeName: 'busy-node' });
      node.start();
      await node.ready();
      await auth.tctlOk('users', 'add', 'carol', LOGIN);
      const carol = await SshUser.create(auth, keysDir('carol'), 'carol', LOGIN);
      const marker = (n: number) => `echo audit-marker-${n}`;
      for (let n = 0; n < 3; n++) expect((await sshTo(carol, node.port, 'busy-node', [marker(n)])).code).toBe(0);

      // WHEN the auth server's disk is full while more commands run (the node acknowledges them from its own disk)
      disk.fill();
      for (let n = 3; n < 20; n++) expect((await sshTo(carol, node.port, 'busy-node', [marker(n)])).code).toBe(0);
      await node.daemon!.waitForOutput(/cannot deliver audit events; will retry/);
      // AND space returns
      disk.free();

      // THEN every command's exec event arrives
      const execs = await waitFor(
        'all 20 exec events on the auth server',
        async () => {
          const got = (await auth!.events(['exec'])).filter((e) => String(e.command).startsWith('echo audit-marker-'));
          return new Set(got.map((e) => e.command)).size === 20 ? got : undefined;
        },
        60_000,
      );
      // AND each is stored once
      expect(execs).toHaveLength(20);
      // AND the day files parse completely, with every event identity once
      const logDir = path.join(auth.dataDir, 'log');
      const lines = fs
        .readdirSync(logDir)
        .filter((f) => f.endsWith('.log'))
        .flatMap((f) => fs.readFileSync(path.join(logDir, f), 'utf8').split('\n').filter(Boolean));
      const events = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      const ids = events.map((e) => `${String(e.uid)}@${String(e.server_id ?? '')}`);
      expect(new Set(ids).size).toBe(ids.length);
      expect(fs.readdirSync(logDir).filter((f) => f.endsWith('.log')).every((f) => fs.readFileSync(path.join(logDir, f), 'utf8').endsWith('\n'))).toBe(true);
    }, 150_000);
  });
});
