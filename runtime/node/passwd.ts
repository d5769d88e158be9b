/**
 * OS account look-ups through NSS (files, LDAP, sssd... as getent and sshd see
 * them) without a process per look-up: one long-lived `build/passwd-lookup`
 * (native/passwd-lookup.c) answers them in order over a pipe, off the event
 * loop. Where that helper was not built, `getent passwd` runs per look-up (the
 * same answers, a fork each). Nothing is cached on either path: an account
 * created or removed is seen by the next look-up. A helper that fails, answers
 * out of form or stays silent past the timeout fails every look-up waiting on it
 * (the caller refuses the login) and is replaced on the next one.
 */
import { type ChildProcessWithoutNullStreams, execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { findNativeHelper } from './native';

const execFileP = promisify(execFile);

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

/** The look-up itself failed (not "no such account"): the answer is unknown, so nothing may be allowed on it. */
export class PasswdLookupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PasswdLookupError';
  }
}

const DEFAULT_TIMEOUT_MS = 5000;
/** A name the helper's line protocol can carry. Callers check login syntax before; this is the protocol's own guard. */
const SENDABLE = /^[^\t\n\r\0]{1,256}$/;

interface Pending {
  name: string;
  resolve(e: PasswdEntry | undefined): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** build/passwd-lookup when it was built and can run here. */
export const findPasswdHelper = (): string | undefined => findNativeHelper('passwd-lookup');

/** Parses a passwd entry's numeric id; throws on anything but a 32-bit unsigned integer. */
function parseId(s: string, what: string): number {
  if (!/^\d{1,10}$/.test(s) || Number(s) > 0xffffffff) throw new PasswdLookupError(`the account look-up answered a malformed ${what} "${s}"`);
  return Number(s);
}

export class PasswdResolver {
  private child?: ChildProcessWithoutNullStreams;
  private readonly pending: Pending[] = [];
  private buffered = '';

  /** `helper`: the passwd-lookup binary, or undefined to fork `getent passwd` per look-up. */
  constructor(
    readonly helper: string | undefined,
    private readonly timeoutMs = DEFAULT_TIMEOUT_MS,
  ) {}

  /** The running helper's process id (one for every look-up while it lives), if one runs. */
  get helperPid(): number | undefined {
    return this.child?.pid;
  }

  /** The account named `name`, or undefined when there is none; rejects with PasswdLookupError when the look-up fails. */
  lookup(name: string): Promise<PasswdEntry | undefined> {
    if (!SENDABLE.test(name)) return Promise.reject(new PasswdLookupError('malformed account name'));
    return this.helper ? this.ask(name) : this.getent(name);
  }

  /** Stops the helper; look-ups waiting on it fail. */
  close(): void {
    this.fail(new PasswdLookupError('the account look-up was stopped'));
  }

  private ask(name: string): Promise<PasswdEntry | undefined> {
    return new Promise((resolve, reject) => {
      const child = this.child ?? this.start();
      const timer = setTimeout(() => this.fail(new PasswdLookupError(`the account look-up did not answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      this.pending.push({ name, resolve, reject, timer });
      child.stdin.write(`${name}\n`);
    });
  }

  private start(): ChildProcessWithoutNullStreams {
    const child = spawn(this.helper!, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    this.buffered = '';
    // An idle helper does not keep the process alive; a waiting look-up's timer does.
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr] as unknown as { unref?: () => void }[]) s.unref?.();
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => this.onData(child, chunk));
    child.stderr.resume();
    child.stdin.on('error', () => undefined); // the exit below reports it
    const gone = (why: string) => {
      if (this.child === child) this.fail(new PasswdLookupError(why));
    };
    child.on('error', (err) => gone(`the account look-up helper failed: ${err.message}`));
    child.on('exit', (code, signal) => gone(`the account look-up helper exited (${signal ?? code})`));
    return child;
  }

  private onData(child: ChildProcessWithoutNullStreams, chunk: string): void {
    if (this.child !== child) return;
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      const p = this.pending.shift();
      if (!p) return this.fail(new PasswdLookupError('the account look-up answered a question nobody asked'));
      clearTimeout(p.timer);
      try {
        p.resolve(this.parse(line, p.name));
      } catch (err) {
        p.reject(err as Error);
      }
    }
  }

  private parse(line: string, name: string): PasswdEntry | undefined {
    const f = line.split('\t');
    if (f[0] === 'none' && f.length === 1) return undefined;
    if (f[0] === 'error') throw new PasswdLookupError(`the account look-up failed: ${f.slice(1).join(' ')}`);
    if (f[0] !== 'ok' || f.length !== 6) throw new PasswdLookupError('the account look-up answered out of form');
    // NSS may match names loosely (case, aliases); only the account of exactly this name counts.
    if (f[1] !== name) return undefined;
    return { name: f[1], uid: parseId(f[2], 'uid'), gid: parseId(f[3], 'gid'), home: f[4] || '/', shell: f[5] || '/bin/sh' };
  }

  /** Fails every waiting look-up and drops the helper (the next look-up starts a new one). */
  private fail(err: Error): void {
    const child = this.child;
    this.child = undefined;
    this.buffered = '';
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer);
      p.reject(err);
    }
  }

  private async getent(name: string): Promise<PasswdEntry | undefined> {
    let out: string;
    try {
      out = (await execFileP('getent', ['passwd', name], { timeout: this.timeoutMs })).stdout;
    } catch (err) {
      // getent exits 2 for "no such key"; anything else is a failed look-up.
      if ((err as { code?: unknown }).code === 2) return undefined;
      throw new PasswdLookupError(`getent passwd failed: ${(err as Error).message.split('\n')[0]}`);
    }
    const f = out.trim().split('\n')[0].split(':');
    if (f.length < 7 || f[0] !== name) return undefined;
    return { name: f[0], uid: parseId(f[2], 'uid'), gid: parseId(f[3], 'gid'), home: f[5] || '/', shell: f[6] || '/bin/sh' };
  }
}
