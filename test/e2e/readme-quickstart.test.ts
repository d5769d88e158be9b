/**
 * The README's Quickstart, run as a newcomer runs it: every command of its
 * ```bash blocks, in order, as written, as a non-root user with a clean home
 * directory, in a copy of the project — with the browser sign-up the README
 * asks for done in headless Chromium. So the README cannot drift from what the
 * software does.
 *
 * The README's placeholders are the person's: `joe` is their OS user and
 * `box` their host. The harness answers the prompts a person answers (the
 * password and one-time code for `tsh login`, commands typed into `tsh ssh`)
 * and provides the dependencies `npm ci` installs (the checkout's own,
 * hard-linked), the one command it does not run.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { totp } from '../../runtime/auth/totp';
import { goto, launchChromium, newContext } from '../helpers/browser';
import { createOsAccount, removeOsAccount } from '../helpers/osusers';
import { run, ROOT, RunResult, tempDir, waitFor } from '../helpers/proc';
import { ReadmeCommand, readmeCommands, readmeOutputLines } from '../helpers/readme';

/** The Quickstart builds the whole project (npm start runs tsc) before anything else: minutes on a busy 2-core machine. */
jest.setTimeout(180_000);

const HOST = os.hostname();
const PASSWORD = 'a long quickstart password';

interface Person {
  name: string;
  /** The account running the tests (not root), whose home in the password database is not `home`. */
  ownAccount: boolean;
  uid: number;
  gid: number;
  home: string;
  /** Removes what was made for this person. */
  remove(): Promise<void>;
}

/** A non-root user with a new, empty home: a new OS account when the tests run as root, else the current user. */
async function newPerson(): Promise<Person> {
  if (process.getuid?.() !== 0) {
    const me = os.userInfo();
    const home = tempDir('readme-home-');
    return { name: me.username, ownAccount: true, uid: me.uid, gid: me.gid, home, remove: async () => fs.rmSync(home, { recursive: true, force: true }) };
  }
  const account = createOsAccount('readme');
  return { ...account, ownAccount: false, remove: () => removeOsAccount(account.name) };
}

/** The project as the person has it after `npm ci`: the tracked files, their own, and the checkout's dependencies. */
async function copyProject(to: string, person: Person): Promise<void> {
  const files = (await run('git', ['ls-files', '-z'], { cwd: ROOT })).stdout.split('\0').filter(Boolean);
  if (files.length === 0) throw new Error('git ls-files listed nothing: the README test needs a git checkout');
  for (const f of files) {
    const dest = path.join(to, f);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    if (fs.existsSync(path.join(ROOT, f))) fs.copyFileSync(path.join(ROOT, f), dest);
  }
  for (const dir of ['build']) if (fs.existsSync(path.join(ROOT, dir))) fs.cpSync(path.join(ROOT, dir), path.join(to, dir), { recursive: true });
  await run('chown', ['-R', `${person.uid}:${person.gid}`, to]);
  // Hard links (read-only for the person) when the file system allows, a copy otherwise.
  const linked = await run('cp', ['-al', path.join(ROOT, 'node_modules'), path.join(to, 'node_modules')]);
  if (linked.code !== 0) await run('cp', ['-a', path.join(ROOT, 'node_modules'), path.join(to, 'node_modules')]);
}

describe('README Quickstart', () => {
  let person: Person;
  let project: string;
  let server: ChildProcess | undefined;
  let serverOutput = '';
  let otpSecret = '';
  let lastStep = 0;

  beforeAll(async () => {
    person = await newPerson();
    project = path.join(person.home, 'teleport-ts');
    await copyProject(project, person);
  });
  afterAll(async () => {
    if (server?.pid) {
      try {
        process.kill(-server.pid, 'SIGTERM');
      } catch {
        // already gone
      }
      await new Promise((resolve) => (server!.exitCode !== null ? resolve(undefined) : server!.once('exit', resolve)));
    }
    await person?.remove();
  });

  /** The command as this person types it: `joe` is their user, `box` their host. */
  const personal = (c: ReadmeCommand) => c.text.replace(/\bjoe\b/g, person.name).replace(/\bbox\b/g, HOST);

  const env = () => ({ HOME: person.home, USER: person.name, LOGNAME: person.name, PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8' });

  /** `bash -c <command>` as the person, in the project directory. */
  function shell(command: string, detached = false): ChildProcess {
    return spawn('setpriv', [`--reuid=${person.uid}`, `--regid=${person.gid}`, '--init-groups', '--', 'bash', '-c', command], {
      cwd: project,
      env: env(),
      detached,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  }

  function runAs(command: string, input = ''): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      const child = shell(command);
      const out: Buffer[] = [];
      let stderr = '';
      child.stdout!.on('data', (d: Buffer) => out.push(d));
      child.stderr!.on('data', (d) => (stderr += d));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString(), stderr, stdoutBytes: Buffer.concat(out) }));
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(input);
    });
  }

  /**
   * OpenSSH reads the config of the home in the password database, not $HOME: as root the harness's
   * person has the clean home there; as the current user (not root) the README's ~/.ssh/config is named.
   */
  const openSshConfigOf = (command: string) => (person.ownAccount && /^(ssh|scp|sftp) /.test(command) ? command.replace(/^(\w+) /, '$1 -F ~/.ssh/config ') : command);

  /** A one-time code for a step after the last one used (the server refuses a replayed step). */
  function nextCode(): string {
    const step = Math.max(Math.floor(Date.now() / 30_000), lastStep + 1);
    lastStep = step;
    return totp(otpSecret, { timeMs: step * 30_000 });
  }

  /** "Open that URL, choose a password and scan the QR code": the sign-up page in a browser. */
  async function signUpInBrowser(url: string): Promise<void> {
    const browser = await launchChromium();
    try {
      const page = await (await newContext(browser)).newPage();
      await goto(page, url);
      await page.locator('#otp-secret').waitFor();
      otpSecret = (await page.locator('#otp-secret').textContent())!.trim();
      await page.fill('#password', PASSWORD);
      await page.fill('#password-confirm', PASSWORD);
      await page.fill('#otp', nextCode());
      await page.click('#submit');
      await page.getByText(/signed up|log in/i).first().waitFor();
    } finally {
      await browser.close();
    }
  }

  /** Runs one README command the way a person would, and checks what the README says it does. */
  async function perform(c: ReadmeCommand): Promise<void> {
    const command = personal(c);
    const where = `README.md:${c.line}: ${c.text}`;
    if (/^npm ci\b/.test(command)) return; // the harness provided the dependencies
    if (/^npm start\b/.test(command)) {
      server = shell(command, true);
      server.stdout!.on('data', (d) => (serverOutput += d));
      server.stderr!.on('data', (d) => (serverOutput += d));
      await waitFor(`${where} to print its next steps`, () => {
        if (server!.exitCode !== null) throw new Error(`${where} exited ${server!.exitCode}:\n${serverOutput}`);
        return /Next steps/.test(serverOutput);
      }, 180_000);
      // What the README shows of that output is what it prints, for this person.
      const shown = readmeOutputLines('Quickstart').map((l) => l.replace(/\bjoe\b/g, person.name).replace(/\bbox\b/g, HOST));
      await waitFor(`${where} to print what the README shows`, () => shown.every((l) => serverOutput.includes(l))).catch(() => {
        throw new Error(`${where}: the README shows lines teleport did not print:\n${shown.filter((l) => !serverOutput.includes(l)).join('\n')}\n--- printed ---\n${serverOutput}`);
      });
      return;
    }
    const shellSession = /^(npx tsh ssh|ssh) [^ ]+$/.test(command); // a shell: the person types into it
    const input = /\btsh login\b/.test(command) ? `${PASSWORD}\n${nextCode()}\n` : shellSession ? 'echo quickstart-shell-$USER\nexit\n' : '';
    const r = await runAs(openSshConfigOf(command), input);
    expect({ where, code: r.code, stderr: r.code === 0 ? '' : r.stderr }).toEqual({ where, code: 0, stderr: '' });
    if (/\btctl users add\b/.test(command)) {
      const url = /https:\/\/\S+\/web\/newuser\/[0-9a-f]{32}/.exec(r.stdout)?.[0];
      expect({ where, url }).toEqual({ where, url: expect.stringContaining(`https://${HOST}:3080/web/newuser/`) });
      await signUpInBrowser(url!);
    }
    if (/\btsh ls\b/.test(command)) expect(r.stdout).toMatch(new RegExp(`^${HOST}\\s`, 'm'));
    if (shellSession) expect({ where, out: r.stdout }).toEqual({ where, out: expect.stringContaining(`quickstart-shell-${person.name}`) });
    const scp = /^scp (\S+) [^:]+:(\S+)$/.exec(command); // a file to the node (this host): it lands in the person's home
    if (scp) expect(fs.readFileSync(path.join(person.home, scp[2]), 'utf8')).toBe(fs.readFileSync(path.join(project, scp[1]), 'utf8'));
  }

  it('GIVEN a clean home as a non-root user WHEN every Quickstart command runs as written THEN each does what the README says', async () => {
    const commands = readmeCommands('Quickstart');
    expect(commands.map((c) => c.text)).toEqual(expect.arrayContaining(['npm start']));
    for (const c of commands) {
      try {
        await perform(c);
      } catch (err) {
        // The server's side of the story, for whoever reads the failure.
        (err as Error).message += `\n--- teleport output (last 4000 characters) ---\n${serverOutput.slice(-4000)}`;
        throw err;
      }
    }
  });
});
