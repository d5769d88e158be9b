/**
 * One Lambda execution environment: a warm child process running the runtime (`runtime.ts`, from
 * the build) in the function's code directory with the function's environment. It serves one
 * invocation at a time. An invocation ends with the handler's result or error, or, as in Lambda,
 * with `Sandbox.Timedout` when the function's timeout passes (counted from the handing over of the
 * event; the init phase has Lambda's 10 s of its own) or `Runtime.ExitError` when the process dies; after
 * either of these, and after an init error, the environment is gone and the next invocation
 * needs a new one (`alive` is false).
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FromRuntime, LambdaError, ToRuntime } from './runtime';

export interface EnvironmentSpec {
  /** The function's code directory (`LAMBDA_TASK_ROOT`, the working directory). */
  readonly codeDir: string;
  /** The process's whole environment. */
  readonly env: Readonly<Record<string, string>>;
  readonly timeoutSeconds: number;
  /** The process's output (stdout and stderr) as it comes. */
  readonly onOutput: (text: string) => void;
}

/** How an invocation ended: the handler's result, its error (or an init error), the timeout, or the death of the process. */
export type OutcomeKind = 'success' | 'error' | 'timeout' | 'crash';

export interface Outcome {
  readonly kind: OutcomeKind;
  /** The result as JSON text, or the `LambdaError` as JSON text. */
  readonly payload: string;
  /** What the function wrote during the invocation. */
  readonly logs: string;
}

/** The compiled runtime: next to this module when it runs from dist/, else in dist/ (`npm run build`). */
function runtimeFile(): string {
  const candidates = [path.join(__dirname, 'runtime.js'), path.resolve(__dirname, '..', '..', 'dist', 'sim', 'lambda', 'runtime.js')];
  const found = candidates.find((f) => fs.existsSync(f));
  if (!found) throw new Error(`the Lambda runtime is not built (${candidates.join(' or ')} is missing): run "npm run build"`);
  return found;
}

/** Lambda's limit on the init phase (loading the handler), apart from the function's timeout. */
const INIT_TIMEOUT_SECONDS = 10;

interface Running {
  readonly requestId: string;
  readonly logs: string[];
  finish(kind: OutcomeKind, payload: string): void;
}

export class Environment {
  private readonly child: ChildProcess;
  /** Resolves when the init phase is over: with nothing when the handler is loaded, else with how it failed. */
  private readonly initialized: Promise<{ kind: OutcomeKind; error: LambdaError } | undefined>;
  private running?: Running;
  private dead = false;
  private readonly closed: Promise<void>;

  constructor(private readonly spec: EnvironmentSpec) {
    this.child = spawn(process.execPath, [runtimeFile()], { cwd: spec.codeDir, env: spec.env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    for (const stream of [this.child.stdout, this.child.stderr]) stream?.on('data', (d: Buffer) => this.output(d.toString()));
    let initDone: (v: { kind: OutcomeKind; error: LambdaError } | undefined) => void = () => undefined;
    this.initialized = new Promise((resolve) => (initDone = resolve));
    this.child.on('message', (msg: FromRuntime) => {
      if (msg.kind === 'log') this.output(msg.text);
      else if (msg.kind === 'ready') initDone(undefined);
      else if (msg.kind === 'init-error') initDone({ kind: 'error', error: msg.error });
      else if (msg.requestId === this.running?.requestId) this.running.finish(msg.kind === 'result' ? 'success' : 'error', msg.kind === 'result' ? msg.payload : JSON.stringify(msg.error));
    });
    this.closed = new Promise((resolve) => {
      const end = (how: string) => {
        this.dead = true;
        const error = (id: string) => ({ errorType: 'Runtime.ExitError', errorMessage: `RequestId: ${id} Error: Runtime exited with error: ${how}` });
        initDone({ kind: 'crash', error: error('') });
        this.running?.finish('crash', JSON.stringify(error(this.running.requestId)));
        resolve();
      };
      this.child.on('close', (code, signal) => end(signal ? `signal: ${signal}` : `exit status ${code}`));
      this.child.on('error', (err) => end(err.message));
    });
  }

  /** Whether the environment can take another invocation. */
  get alive(): boolean {
    return !this.dead;
  }

  /** Runs one invocation; never rejects: failures are outcomes. */
  invoke(requestId: string, event: string, invokedFunctionArn: string): Promise<Outcome> {
    if (this.running) throw new Error(`environment busy with ${this.running.requestId}`);
    return new Promise((resolve) => {
      const logs: string[] = [];
      let timer: NodeJS.Timeout | undefined;
      const running: Running = {
        requestId,
        logs,
        finish: (kind, payload) => {
          if (this.running !== running) return;
          clearTimeout(timer);
          this.running = undefined;
          resolve({ kind, payload, logs: logs.join('') });
        },
      };
      const timeOut = (seconds: number, what: string) =>
        setTimeout(() => {
          const message = `RequestId: ${requestId} Error: ${what} timed out after ${seconds.toFixed(2)} seconds`;
          running.finish('timeout', JSON.stringify({ errorType: 'Sandbox.Timedout', errorMessage: message }));
          void this.kill();
        }, seconds * 1000);
      this.running = running;
      timer = timeOut(INIT_TIMEOUT_SECONDS, 'Init');
      void this.initialized.then((failed) => {
        if (this.running !== running) return;
        clearTimeout(timer);
        if (failed) {
          running.finish(failed.kind, JSON.stringify(failed.error));
          void this.kill();
          return;
        }
        timer = timeOut(this.spec.timeoutSeconds, 'Task');
        const msg: ToRuntime = { kind: 'invoke', requestId, event, deadlineMs: Date.now() + this.spec.timeoutSeconds * 1000, invokedFunctionArn };
        this.child.send(msg);
      });
    });
  }

  /** Ends the process (SIGKILL, as Lambda ends a timed-out sandbox) and waits until it is gone. */
  async kill(): Promise<void> {
    this.dead = true;
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.closed;
  }

  private output(text: string): void {
    this.running?.logs.push(text);
    this.spec.onOutput(text);
  }
}
