/**
 * Asking the user for secrets: from a terminal without echo, or, when stdin
 * is not a TTY (scripts, tests), one line per question from stdin.
 */
import { Readable, Writable } from 'node:stream';
import { BadParameterError } from '../utils/errors';

/** Reads lines from a non-TTY stream one at a time, keeping what it read past the line. */
export class LineReader {
  private buf = '';
  private ended = false;
  private waiter?: () => void;

  constructor(private readonly input: Readable) {
    input.setEncoding('utf8');
    input.on('data', (d: string) => {
      this.buf += d;
      this.wake();
    });
    input.on('end', () => {
      this.ended = true;
      this.wake();
    });
    input.pause();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** The next line without its newline, or undefined at end of input. */
  async line(): Promise<string | undefined> {
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl >= 0) {
        const l = this.buf.slice(0, nl).replace(/\r$/, '');
        this.buf = this.buf.slice(nl + 1);
        return l;
      }
      if (this.ended) {
        if (this.buf === '') return undefined;
        const l = this.buf;
        this.buf = '';
        return l;
      }
      this.input.resume();
      await new Promise<void>((r) => (this.waiter = r));
      this.input.pause();
    }
  }
}

/**
 * Reads a line from a TTY in raw mode, echoing nothing when `hidden`.
 * `pending` is what was typed ahead; what follows the line is returned as `rest`.
 */
function readTtyLine(input: NodeJS.ReadStream, output: Writable, hidden: boolean, pending: string): Promise<{ value: string; rest: string }> {
  return new Promise((resolve, reject) => {
    let value = '';
    let finished = false;
    const done = (rest: string, err?: Error) => {
      finished = true;
      input.setRawMode(false);
      input.pause();
      input.off('data', onData);
      output.write('\n');
      if (err) reject(err);
      else resolve({ value, rest });
    };
    const onData = (chunk: string) => {
      const chars = [...chunk];
      for (let i = 0; i < chars.length; i++) {
        const ch = chars[i];
        const rest = () => chars.slice(i + 1).join('');
        if (ch === '\r' || ch === '\n') return done(rest());
        if (ch === '\u0003') return done('', new BadParameterError('interrupted'));
        if (ch === '\u0004' && value === '') return done('', new BadParameterError('no input: end of input at the prompt'));
        if (ch === '\u007f' || ch === '\b') {
          if (value.length && !hidden) output.write('\b \b');
          value = value.slice(0, -1);
        } else {
          value += ch;
          if (!hidden) output.write(ch);
        }
      }
    };
    input.setRawMode(true);
    input.setEncoding('utf8');
    if (pending) onData(pending);
    if (finished) return;
    input.on('data', onData);
    input.resume();
  });
}

/** Prompts on stderr and reads answers from stdin (a TTY: no echo for secrets; otherwise one line each). */
export class Prompter {
  private lines?: LineReader;
  private typedAhead = '';

  constructor(
    private readonly input: NodeJS.ReadStream = process.stdin,
    private readonly output: Writable = process.stderr,
  ) {}

  async ask(question: string, opts: { hidden: boolean }): Promise<string> {
    this.output.write(question);
    if (this.input.isTTY) {
      const { value, rest } = await readTtyLine(this.input, this.output, opts.hidden, this.typedAhead);
      this.typedAhead = rest;
      return value;
    }
    this.lines ??= new LineReader(this.input);
    const l = await this.lines.line();
    this.output.write('\n');
    if (l === undefined) throw new BadParameterError(`${question.replace(/:\s*$/, '')}: stdin ended before an answer was given`);
    return l;
  }
}
