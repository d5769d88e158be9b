/**
 * The Lambda functions of the template (`AWS::Lambda::Function`), run from their cdk.out assets as
 * Lambda runs them: each function gets warm execution environments (`environment.ts`, up to
 * `maxEnvironments` at once, started on demand and kept) with the template's handler, timeout,
 * memory size and variables, Lambda's reserved variables, credentials of the function's role
 * (issued by the `CredentialRegistry` for each new environment, so every call the function makes
 * is attributed to that role) and the endpoint settings of the caller. The Node.js version is this
 * process's, whatever `nodejs*.x` the template names. The AWS SDK is provided as Lambda's runtime
 * provides it (this repository's `@aws-sdk`, through `NODE_PATH`); nothing else is.
 *
 * `invoke` with `RequestResponse` runs the function and returns its result or error; with `Event`
 * it queues the invocation and returns at once, and a failed run is retried as Lambda retries
 * asynchronous invocations (twice by default, one then two minutes later, divided by `timeScale`;
 * `AWS::Lambda::EventInvokeConfig` may say otherwise). Every outcome and all output are kept
 * (`invocations`, `output`) and logged.
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CredentialRegistry } from '../aws/credentials';
import { arn, type Caller, type CfnResources, type Log, REGION, type Resolve } from '../types';
import { Environment, type OutcomeKind } from './environment';
import { ResourceError } from './errors';

/** Invocation records kept, the newest. */
const MAX_RECORDS = 10_000;

/** A function of the template, resolved. */
export interface FunctionDefinition {
  readonly logicalId: string;
  readonly name: string;
  readonly arn: string;
  readonly description: string;
  /** The template's runtime (`nodejs24.x`); the functions run with this process's Node.js. */
  readonly runtime: string;
  readonly handler: string;
  /** The cdk.out asset directory. */
  readonly codeDir: string;
  readonly timeoutSeconds: number;
  readonly memoryMb: number;
  readonly architectures: readonly string[];
  /** The execution role: whom the function's calls are attributed to. */
  readonly role: Caller;
  /** The template's `Environment.Variables`. */
  readonly variables: Readonly<Record<string, string>>;
  readonly logGroup: string;
  readonly logFormat: 'Text' | 'JSON';
  readonly applicationLogLevel?: string;
  /** Retries of asynchronous invocations (`AWS::Lambda::EventInvokeConfig`, or Lambda's defaults). */
  readonly asyncRetries: number;
  readonly asyncMaxEventAgeSeconds: number;
}

/** A function name, partial ARN (`123456789012:function:name`) or ARN, each optionally with a qualifier. */
export function parseFunctionRef(nameOrArn: string): { name: string; qualifier?: string } | undefined {
  const m = /^(?:arn:[\w-]+:lambda:[\w-]+:\d{12}:function:|\d{12}:function:)?([A-Za-z0-9_-]{1,140})(?::(\$LATEST|[A-Za-z0-9_-]{1,128}))?$/.exec(nameOrArn);
  return m ? { name: m[1], ...(m[2] ? { qualifier: m[2] } : {}) } : undefined;
}

/** No such function (or version: only `$LATEST` exists). Lambda's `ResourceNotFoundException`. */
export class FunctionNotFoundError extends Error {
  constructor(readonly ref: string) {
    super(`Function not found: ${ref}`);
    this.name = 'ResourceNotFoundException';
  }
}

export type InvocationType = 'RequestResponse' | 'Event';

/** What the Invoke API answers. */
export interface InvokeResult {
  readonly requestId: string;
  /** 200 for RequestResponse, 202 for Event. */
  readonly status: 200 | 202;
  /** The result or the error as JSON text (empty for Event). */
  readonly payload: string;
  /** `Unhandled` when the function failed (error, timeout, crash). */
  readonly functionError?: 'Unhandled';
  readonly executedVersion: '$LATEST';
  /** The function's output during the invocation (empty for Event). */
  readonly logs: string;
}

/** One run of a function, kept for the report. */
export interface InvocationRecord {
  readonly function: string;
  readonly requestId: string;
  readonly type: InvocationType;
  /** 0 for the first run of an asynchronous invocation, then its retries. */
  readonly attempt: number;
  readonly startedAt: string;
  readonly durationMs: number;
  readonly outcome: OutcomeKind;
  /** The error's JSON when it failed. */
  readonly error?: string;
  readonly logs: string;
}

export interface FunctionsOptions {
  readonly resources: CfnResources;
  readonly resolve: Resolve;
  /** The cloud assembly directory holding the `asset.<hash>` directories. */
  readonly cdkOut: string;
  readonly credentials: CredentialRegistry;
  /** Added to every function's environment: `AWS_ENDPOINT_URL`, `NODE_EXTRA_CA_CERTS`, ... */
  readonly env?: Readonly<Record<string, string>>;
  readonly log: Log;
  /** A directory of the deployment's own (the runtime's modules are linked there). */
  readonly workDir: string;
  /** How much faster than real time the retries of asynchronous invocations come. @default 1 */
  readonly timeScale?: number;
  /** Execution environments per function at most; more concurrent invocations wait. @default 4 */
  readonly maxEnvironments?: number;
  /** Kept output per function, the newest. @default 1 MiB */
  readonly outputLimit?: number;
}

/**
 * The modules Lambda's Node.js runtime provides (its `NODE_PATH`): the AWS SDK v3 and the packages
 * it is built on, here this repository's, linked into `workDir`, so that a bundle that left out
 * another dependency fails here as it would in Lambda.
 */
function runtimeModules(workDir: string): string {
  const entry = require.resolve('@aws-sdk/client-lambda');
  const repoModules = entry.slice(0, entry.lastIndexOf(`${path.sep}@aws-sdk${path.sep}`));
  const dir = path.join(workDir, 'lambda-runtime', 'node_modules');
  fs.mkdirSync(dir, { recursive: true });
  for (const scope of ['@aws-sdk', '@smithy']) {
    const link = path.join(dir, scope);
    fs.rmSync(link, { force: true });
    fs.symlinkSync(path.join(repoModules, scope), link);
  }
  return dir;
}

/** The `AWS::Lambda::Function` resources of a template, resolved, their code located in `cdkOut`. */
export function functionDefinitions(resources: CfnResources, resolve: Resolve, cdkOut: string): FunctionDefinition[] {
  return Object.entries(resources)
    .filter(([, r]) => r.Type === 'AWS::Lambda::Function')
    .map(([logicalId, r]) => {
      const p = r.Properties ?? {};
      const fail = (reason: string) => new ResourceError(logicalId, reason);
      if (p.PackageType === 'Image' || p.Code?.ImageUri) throw fail('container image functions are not supported');
      if (!/^nodejs\d+\.x$/.test(p.Runtime ?? '')) throw fail(`runtime ${p.Runtime} is not supported (Node.js only)`);
      const name: string = resolve({ Ref: logicalId });
      const hash = /^([0-9a-f]{64})\.zip$/.exec(resolve(p.Code?.S3Key) ?? '')?.[1];
      const assetPath = (r.Metadata?.['aws:asset:path'] as string | undefined) ?? (hash ? `asset.${hash}` : undefined);
      if (!assetPath) throw fail('the code is neither a cdk.out asset (aws:asset:path) nor an asset S3 key');
      const codeDir = path.resolve(cdkOut, assetPath);
      if (!fs.statSync(codeDir, { throwIfNoEntry: false })?.isDirectory()) throw fail(`the code asset ${codeDir} is missing`);
      const invokeConfig = Object.values(resources).find((c) => c.Type === 'AWS::Lambda::EventInvokeConfig' && parseFunctionRef(resolve(c.Properties?.FunctionName))?.name === name);
      if (invokeConfig?.Properties?.DestinationConfig) throw fail('EventInvokeConfig destinations are not supported');
      const logging = resolve(p.LoggingConfig ?? {});
      return {
        logicalId,
        name,
        arn: arn.function(name),
        description: resolve(p.Description) ?? '',
        runtime: p.Runtime,
        handler: p.Handler,
        codeDir,
        timeoutSeconds: Number(resolve(p.Timeout) ?? 3),
        memoryMb: Number(resolve(p.MemorySize) ?? 128),
        architectures: resolve(p.Architectures) ?? ['x86_64'],
        role: roleOf(logicalId, name, p.Role, resources, resolve),
        variables: Object.fromEntries(Object.entries(resolve(p.Environment?.Variables ?? {})).map(([k, v]) => [k, String(v)])),
        logGroup: logging.LogGroup ?? `/aws/lambda/${name}`,
        logFormat: logging.LogFormat === 'JSON' ? 'JSON' : 'Text',
        ...(logging.ApplicationLogLevel ? { applicationLogLevel: logging.ApplicationLogLevel } : {}),
        asyncRetries: Number(resolve(invokeConfig?.Properties?.MaximumRetryAttempts) ?? 2),
        asyncMaxEventAgeSeconds: Number(resolve(invokeConfig?.Properties?.MaximumEventAgeInSeconds) ?? 6 * 3600),
      };
    });
}

/** The execution role of a function: a role of the template (by `Fn::GetAtt [role, Arn]`, or its ARN). */
function roleOf(logicalId: string, functionName: string, role: unknown, resources: CfnResources, resolve: Resolve): Caller {
  const roleArn: string = resolve(role);
  const roleLogicalId = Object.keys(resources).find(
    (id) => resources[id].Type === 'AWS::IAM::Role' && (id === (role as { 'Fn::GetAtt'?: string[] })?.['Fn::GetAtt']?.[0] || resolve({ 'Fn::GetAtt': [id, 'Arn'] }) === roleArn),
  );
  if (!roleLogicalId) throw new ResourceError(logicalId, `the execution role ${roleArn} is not a role of the template (its policies could not be checked)`);
  return { roleLogicalId, roleArn, name: functionName };
}

/** A function's environments: up to `max` processes, each serving one invocation at a time. */
class Pool {
  private readonly idle: Environment[] = [];
  private readonly all = new Set<Environment>();
  private readonly waiting: Array<() => void> = [];

  constructor(
    private readonly start: () => Environment,
    private readonly max: number,
  ) {}

  async acquire(): Promise<Environment> {
    for (;;) {
      const env = this.idle.pop();
      if (env?.alive) return env;
      if (env) {
        this.all.delete(env); // died while idle
        continue;
      }
      if (this.all.size < this.max) {
        const fresh = this.start();
        this.all.add(fresh);
        return fresh;
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
  }

  release(env: Environment): void {
    if (env.alive) this.idle.push(env);
    else this.all.delete(env);
    this.waiting.shift()?.();
  }

  async close(): Promise<void> {
    await Promise.all([...this.all].map((e) => e.kill()));
  }
}

export class Functions {
  private readonly byName: Map<string, FunctionDefinition>;
  private readonly pools = new Map<string, Pool>();
  private readonly outputs = new Map<string, string>();
  private readonly records: InvocationRecord[] = [];
  private readonly stopping = new AbortController();
  private readonly modulesDir: string;

  private constructor(
    definitions: FunctionDefinition[],
    private readonly opts: FunctionsOptions,
  ) {
    this.byName = new Map(definitions.map((d) => [d.name, d]));
    this.modulesDir = runtimeModules(opts.workDir);
  }

  /** Reads the functions of the template; their environments start with their first invocation. */
  static create(opts: FunctionsOptions): Functions {
    const functions = new Functions(functionDefinitions(opts.resources, opts.resolve, opts.cdkOut), opts);
    for (const d of functions.byName.values()) opts.log(`lambda ${d.name}: ${d.runtime} ${d.handler} from ${d.codeDir}, run with Node.js ${process.version}`);
    return functions;
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  /** The function a name or ARN refers to; only `$LATEST` exists. */
  definition(nameOrArn: string): FunctionDefinition {
    const ref = parseFunctionRef(nameOrArn);
    const def = ref && this.byName.get(ref.name);
    if (!def || (ref.qualifier && ref.qualifier !== '$LATEST')) throw new FunctionNotFoundError(nameOrArn.startsWith('arn:') ? nameOrArn : arn.function(nameOrArn));
    return def;
  }

  /** The runs so far (the newest 10000), oldest first. */
  get invocations(): readonly InvocationRecord[] {
    return this.records;
  }

  /** What a function's environments wrote (the newest `outputLimit` characters). */
  output(name: string): string {
    return this.outputs.get(name) ?? '';
  }

  /** Invokes a function with `event` (any JSON value). Rejects only when there is no such function. */
  async invoke(nameOrArn: string, event: unknown, opts: { type?: InvocationType } = {}): Promise<InvokeResult> {
    if (this.stopping.signal.aborted) throw new Error('the functions are closed');
    const def = this.definition(nameOrArn);
    const requestId = randomUUID();
    const payload = JSON.stringify(event ?? {});
    const invokedArn = nameOrArn.startsWith('arn:') ? nameOrArn : arn.function(nameOrArn);
    if (opts.type === 'Event') {
      this.runAsync(def, requestId, payload, invokedArn).catch((err: Error) => this.opts.log(`lambda ${def.name} ${requestId}: asynchronous invocation lost: ${err.message}`));
      return { requestId, status: 202, payload: '', executedVersion: '$LATEST', logs: '' };
    }
    const outcome = await this.run(def, requestId, payload, invokedArn, 'RequestResponse', 0);
    return {
      requestId,
      status: 200,
      payload: outcome.payload,
      executedVersion: '$LATEST',
      logs: outcome.logs,
      ...(outcome.kind === 'success' ? {} : { functionError: 'Unhandled' as const }),
    };
  }

  /** Stops retries of asynchronous invocations and ends every environment. */
  async close(): Promise<void> {
    this.stopping.abort();
    await Promise.all([...this.pools.values()].map((p) => p.close()));
  }

  /** An asynchronous invocation: the first run, then Lambda's retries of a failure, one then two minutes apart (scaled). */
  private async runAsync(def: FunctionDefinition, requestId: string, payload: string, invokedArn: string): Promise<void> {
    const scale = this.opts.timeScale ?? 1;
    const queuedAt = Date.now();
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.run(def, requestId, payload, invokedArn, 'Event', attempt);
      if (outcome.kind === 'success' || this.stopping.signal.aborted) return;
      const delayMs = (attempt === 0 ? 60_000 : 120_000) / scale;
      if (attempt >= def.asyncRetries || Date.now() + delayMs - queuedAt > (def.asyncMaxEventAgeSeconds * 1000) / scale) {
        this.opts.log(`lambda ${def.name} ${requestId}: asynchronous invocation dropped after ${attempt + 1} attempt(s)`);
        return;
      }
      try {
        await sleep(delayMs, undefined, { signal: this.stopping.signal });
      } catch {
        return; // closed
      }
    }
  }

  private async run(def: FunctionDefinition, requestId: string, payload: string, invokedArn: string, type: InvocationType, attempt: number) {
    const pool = this.poolOf(def);
    const env = await pool.acquire();
    const startedAt = new Date();
    try {
      const outcome = await env.invoke(requestId, payload, invokedArn);
      const durationMs = Date.now() - startedAt.getTime();
      if (this.records.length >= MAX_RECORDS) this.records.shift();
      this.records.push({
        function: def.name,
        requestId,
        type,
        attempt,
        startedAt: startedAt.toISOString(),
        durationMs,
        outcome: outcome.kind,
        ...(outcome.kind === 'success' ? {} : { error: outcome.payload }),
        logs: outcome.logs,
      });
      const how = outcome.kind === 'success' ? 'succeeded' : `failed (${outcome.kind}): ${outcome.payload.slice(0, 500)}`;
      this.opts.log(`lambda ${def.name} ${requestId}${attempt ? ` retry ${attempt}` : ''}: ${how} in ${durationMs} ms`);
      return outcome;
    } finally {
      pool.release(env);
    }
  }

  private poolOf(def: FunctionDefinition): Pool {
    let pool = this.pools.get(def.name);
    if (!pool) {
      pool = new Pool(() => this.startEnvironment(def), this.opts.maxEnvironments ?? 4);
      this.pools.set(def.name, pool);
    }
    return pool;
  }

  /** A new execution environment with fresh credentials of the function's role. */
  private startEnvironment(def: FunctionDefinition): Environment {
    const creds = this.opts.credentials.issue(def.role);
    const stream = `${new Date().toISOString().slice(0, 10).replace(/-/g, '/')}/[$LATEST]${randomUUID().replace(/-/g, '')}`;
    let partial = '';
    return new Environment({
      codeDir: def.codeDir,
      timeoutSeconds: def.timeoutSeconds,
      env: {
        PATH: '/usr/local/bin:/usr/bin:/bin',
        LANG: 'en_US.UTF-8',
        TZ: ':UTC',
        ...def.variables,
        ...this.opts.env,
        NODE_PATH: this.modulesDir,
        LAMBDA_TASK_ROOT: def.codeDir,
        _HANDLER: def.handler,
        AWS_EXECUTION_ENV: `AWS_Lambda_${def.runtime}`,
        AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
        AWS_LAMBDA_FUNCTION_NAME: def.name,
        AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(def.memoryMb),
        AWS_LAMBDA_LOG_GROUP_NAME: def.logGroup,
        AWS_LAMBDA_LOG_STREAM_NAME: stream,
        AWS_LAMBDA_LOG_FORMAT: def.logFormat,
        ...(def.applicationLogLevel ? { AWS_LAMBDA_LOG_LEVEL: def.applicationLogLevel } : {}),
        AWS_REGION: REGION,
        AWS_DEFAULT_REGION: REGION,
        AWS_ACCESS_KEY_ID: creds.accessKeyId,
        AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
        AWS_SESSION_TOKEN: creds.sessionToken,
      },
      onOutput: (text) => {
        const kept = (this.outputs.get(def.name) ?? '') + text;
        this.outputs.set(def.name, kept.slice(-(this.opts.outputLimit ?? 1 << 20)));
        const lines = (partial + text).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) this.opts.log(`[${def.name}] ${line}`);
      },
    });
  }
}
