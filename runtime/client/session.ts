/**
 * An interactive or batch session on a node for `tsh ssh`: runs the command
 * (or a shell), asks for a PTY when told to or when stdin is a terminal
 * (which then goes raw), pipes stdio, and reports the remote exit status
 * (255 when the remote side ended by a signal or without a status).
 */
import { Client, ClientChannel, PseudoTtyOptions } from 'ssh2';
import { ConnectionProblemError } from '../utils/errors';

export interface SessionOptions {
  command?: string;
  /** Force a PTY even when stdin is not a terminal. */
  forcePty?: boolean;
  stdin?: NodeJS.ReadStream;
  stdout?: NodeJS.WriteStream;
  stderr?: NodeJS.WriteStream;
  env?: Record<string, string>;
  /** Ask the node to forward the agent (`-A`); the connection's agent must support it. */
  forwardAgent?: boolean;
}

export const SIGNAL_EXIT_CODE = 255;

function openChannel(client: Client, command: string | undefined, pty: PseudoTtyOptions | false, env: Record<string, string>, agentForward: boolean): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    const cb = (err: Error | undefined, ch: ClientChannel) => (err ? reject(new ConnectionProblemError(`cannot start the session: ${err.message}`)) : resolve(ch));
    // ssh2 reads `agentForward` per channel (its types leave it out).
    const extra = { agentForward } as object;
    if (command !== undefined) client.exec(command, { pty, env, ...extra }, cb);
    else client.shell(pty, { env, ...extra }, cb);
  });
}

export async function runSession(client: Client, opts: SessionOptions = {}): Promise<number> {
  const stdin = opts.stdin ?? process.stdin;
  const stdout = opts.stdout ?? process.stdout;
  const stderr = opts.stderr ?? process.stderr;
  const tty = !!stdin.isTTY;
  const wantPty = !!opts.forcePty || tty;
  const pty: PseudoTtyOptions | false = wantPty ? { term: process.env.TERM || 'xterm', rows: stdout.rows || 24, cols: stdout.columns || 80 } : false;
  const env: Record<string, string> = { ...(opts.env ?? {}) };
  if (process.env.LANG) env.LANG = process.env.LANG;
  const channel = await openChannel(client, opts.command, pty, env, !!opts.forwardAgent);

  const raw = wantPty && tty;
  if (raw) stdin.setRawMode(true);
  const onResize = () => channel.setWindow(stdout.rows || 24, stdout.columns || 80, 0, 0);
  if (raw) stdout.on('resize', onResize);

  let status: number | undefined;
  let signal: string | undefined;
  channel.on('exit', (code: number | null, sig?: string) => {
    if (typeof code === 'number') status = code;
    else signal = sig ?? 'unknown';
  });
  channel.pipe(stdout, { end: false });
  channel.stderr.pipe(stderr, { end: false });
  const onInput = (d: Buffer) => channel.write(d);
  const onEnd = () => channel.end();
  stdin.on('data', onInput);
  stdin.on('end', onEnd);
  stdin.resume();

  await new Promise<void>((resolve) => channel.once('close', () => resolve()));
  stdin.off('data', onInput);
  stdin.off('end', onEnd);
  stdin.pause();
  if (raw) {
    stdin.setRawMode(false);
    stdout.off('resize', onResize);
  }
  await Promise.all([drain(stdout), drain(stderr)]);
  if (status !== undefined) return status;
  if (signal) stderr.write(`remote command terminated by signal ${signal}\n`);
  return SIGNAL_EXIT_CODE;
}

function drain(s: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => (s.writableNeedDrain ? s.once('drain', () => resolve()) : resolve()));
}
