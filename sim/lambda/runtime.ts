/**
 * The Node.js runtime of one Lambda execution environment: the main module of the child process
 * that `environment.ts` starts with the function's environment (`LAMBDA_TASK_ROOT` = the asset
 * directory, `_HANDLER` = the template's `Handler`). It loads the handler once (the init phase),
 * says `ready` (or why not) over IPC, then runs one invocation per `invoke` message with Lambda's
 * context object and answers with the JSON result or the error as Lambda reports it
 * (`errorType`, `errorMessage`, `trace`). `console` writes Lambda's log lines (text, or JSON with
 * the application log level) tagged with the current request id, over the IPC channel, so that
 * they reach the parent before the result they precede (the stdout pipe gives no such order). An unhandled rejection or an
 * uncaught exception ends the process, as it ends Lambda's runtime.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { format } from 'node:util';

/** What a function returns when it fails, as the Invoke API's payload. */
export interface LambdaError {
  errorType: string;
  errorMessage: string;
  trace?: string[];
}

export type ToRuntime = { kind: 'invoke'; requestId: string; event: string; deadlineMs: number; invokedFunctionArn: string };
export type FromRuntime =
  | { kind: 'ready' }
  | { kind: 'log'; text: string }
  | { kind: 'init-error'; error: LambdaError }
  | { kind: 'result'; requestId: string; payload: string }
  | { kind: 'error'; requestId: string; error: LambdaError };

type Handler = (event: unknown, context: object) => unknown;

const env = process.env;
let requestId: string | undefined;

function send(message: FromRuntime): void {
  process.send?.(message);
}

/** The error as Lambda's Node.js runtime reports it. */
function lambdaError(err: unknown, errorType?: string): LambdaError {
  if (err instanceof Error) {
    return { errorType: errorType ?? err.name, errorMessage: err.message, trace: (err.stack ?? '').split('\n') };
  }
  return { errorType: errorType ?? typeof err, errorMessage: String(err), trace: [] };
}

/** `console` as Lambda sets it up: each line carries the time, the request id and the level. */
function patchConsole(): void {
  const levels = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];
  const json = env.AWS_LAMBDA_LOG_FORMAT === 'JSON';
  const minimum = json ? Math.max(0, levels.indexOf((env.AWS_LAMBDA_LOG_LEVEL ?? 'INFO').toUpperCase())) : 0;
  const write = (level: string, args: unknown[]) => {
    if (levels.indexOf(level) < minimum) return;
    const timestamp = new Date().toISOString();
    const message = format(...args);
    const line = json ? JSON.stringify({ timestamp, level, requestId, message }) : `${timestamp}\t${requestId ?? 'undefined'}\t${level}\t${message.replace(/\n/g, '\r')}`;
    send({ kind: 'log', text: `${line}\n` });
  };
  const methods: Record<string, string> = { trace: 'TRACE', debug: 'DEBUG', info: 'INFO', log: 'INFO', warn: 'WARN', error: 'ERROR' };
  for (const [method, level] of Object.entries(methods)) (console as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => write(level, args);
}

/** Loads `_HANDLER` (`dir/module.export.path`) from the task root, as Lambda's runtime resolves it. */
function loadHandler(): Handler {
  const spec = env._HANDLER ?? '';
  const root = env.LAMBDA_TASK_ROOT ?? process.cwd();
  const m = /^([^.]+)\.(.+)$/.exec(path.basename(spec));
  if (!m) throw Object.assign(new Error(`Bad handler ${spec}`), { name: 'Runtime.MalformedHandlerName' });
  const base = path.join(root, path.dirname(spec), m[1]);
  // ES modules (.mjs, or "type": "module") are not loaded: CDK bundles CommonJS unless told otherwise.
  const file = ['.js', '.cjs'].map((ext) => base + ext).find((f) => fs.existsSync(f));
  if (!file) throw Object.assign(new Error(`Error: Cannot find module '${m[1]}' (CommonJS .js or .cjs) in ${path.dirname(base)}`), { name: 'Runtime.ImportModuleError' });
  let mod: unknown;
  try {
    mod = require(file);
  } catch (err) {
    throw Object.assign(new Error(`${(err as Error).name}: ${(err as Error).message}`), { name: 'Runtime.ImportModuleError', stack: (err as Error).stack });
  }
  const handler = m[2].split('.').reduce<unknown>((obj, key) => (obj as Record<string, unknown> | undefined)?.[key], mod);
  if (typeof handler !== 'function') throw Object.assign(new Error(`${path.basename(spec)} is undefined or not exported`), { name: 'Runtime.HandlerNotFound' });
  return handler as Handler;
}

async function invoke(handler: Handler, msg: ToRuntime): Promise<void> {
  requestId = msg.requestId;
  const context = {
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    invokedFunctionArn: msg.invokedFunctionArn,
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    awsRequestId: msg.requestId,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, msg.deadlineMs - Date.now()),
  };
  try {
    const result = await handler(JSON.parse(msg.event), context);
    send({ kind: 'result', requestId: msg.requestId, payload: JSON.stringify(result) ?? 'null' });
  } catch (err) {
    console.error('Invoke Error', JSON.stringify(lambdaError(err)));
    send({ kind: 'error', requestId: msg.requestId, error: lambdaError(err) });
  }
}

function main(): void {
  patchConsole();
  // The parent is gone (the simulation stopped): so is this environment.
  process.on('disconnect', () => process.exit(0));
  let handler: Handler;
  try {
    handler = loadHandler();
  } catch (err) {
    console.error('Init Error', (err as Error).message);
    send({ kind: 'init-error', error: lambdaError(err) });
    return;
  }
  process.on('message', (msg: ToRuntime) => void invoke(handler, msg));
  send({ kind: 'ready' });
}

main();
