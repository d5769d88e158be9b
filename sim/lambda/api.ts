/**
 * The Lambda API (REST, version 2015-03-31) as a service of the local AWS gateway, so the SDK runs
 * unchanged against it: `Invoke` (`POST /2015-03-31/functions/{name}/invocations`, invocation
 * types RequestResponse, Event and DryRun, `X-Amz-Log-Type: Tail`), `GetFunction`
 * (`GET /2015-03-31/functions/{name}`) and `GetFunctionConfiguration` (`.../configuration`), each
 * function always `Active` with its last update `Successful` (what the SDK's waiters wait for).
 * `{name}` is a name, partial ARN or ARN, with or without a qualifier (only `$LATEST` exists).
 * Each call is authorized as IAM authorizes it: `lambda:InvokeFunction`, `lambda:GetFunction` or
 * `lambda:GetFunctionConfiguration` on the function's ARN (with the qualifier when one is given).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ACCOUNT, arn } from '../types';
import { type FunctionDefinition, FunctionNotFoundError, type Functions, parseFunctionRef } from './functions';
import type { ServiceHandler, ServiceResponse } from '../aws/gateway';

const JSON_TYPE = { 'Content-Type': 'application/json' };

/** An error as the Lambda API returns it (the SDK reads the type from `x-amzn-ErrorType`). */
function apiError(status: number, type: string, message: string): ServiceResponse {
  return { status, headers: { ...JSON_TYPE, 'x-amzn-ErrorType': type }, body: JSON.stringify({ Type: status < 500 ? 'User' : 'Service', message }) };
}

/** The size and SHA-256 (base64) of a function's code, from its asset directory's files. */
function codeDigest(dir: string): { size: number; sha256: string } {
  const hash = createHash('sha256');
  let size = 0;
  const walk = (d: string) => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const file = path.join(d, entry.name);
      if (entry.isDirectory()) walk(file);
      else {
        const data = fs.readFileSync(file);
        size += data.length;
        hash.update(entry.name).update(data);
      }
    }
  };
  walk(dir);
  return { size, sha256: hash.digest('base64') };
}

/** `FunctionConfiguration` as the API returns it. */
function configuration(def: FunctionDefinition, loadedAt: Date, code: { size: number; sha256: string }): Record<string, unknown> {
  return {
    FunctionName: def.name,
    FunctionArn: def.arn,
    Runtime: def.runtime,
    Role: def.role.roleArn,
    Handler: def.handler,
    CodeSize: code.size,
    CodeSha256: code.sha256,
    Description: def.description,
    Timeout: def.timeoutSeconds,
    MemorySize: def.memoryMb,
    LastModified: loadedAt.toISOString().replace('Z', '+0000'),
    Version: '$LATEST',
    Environment: { Variables: def.variables },
    TracingConfig: { Mode: 'PassThrough' },
    State: 'Active',
    LastUpdateStatus: 'Successful',
    PackageType: 'Zip',
    Architectures: def.architectures,
    EphemeralStorage: { Size: 512 },
    LoggingConfig: { LogFormat: def.logFormat, LogGroup: def.logGroup, ...(def.applicationLogLevel ? { ApplicationLogLevel: def.applicationLogLevel } : {}) },
  };
}

type Operation = 'InvokeFunction' | 'GetFunction' | 'GetFunctionConfiguration';

const ROUTES: ReadonlyArray<readonly [string, RegExp, Operation]> = [
  ['POST', /^\/2015-03-31\/functions\/([^/]+)\/invocations\/?$/, 'InvokeFunction'],
  ['GET', /^\/2015-03-31\/functions\/([^/]+)\/?$/, 'GetFunction'],
  ['GET', /^\/2015-03-31\/functions\/([^/]+)\/configuration\/?$/, 'GetFunctionConfiguration'],
];

/** The gateway's handler for the `lambda` service. */
export function lambdaApi(functions: Functions): ServiceHandler {
  const loadedAt = new Date();
  const digests = new Map<string, { size: number; sha256: string }>();
  const config = (def: FunctionDefinition) => {
    if (!digests.has(def.name)) digests.set(def.name, codeDigest(def.codeDir));
    return configuration(def, loadedAt, digests.get(def.name)!);
  };
  return async (req, authorize) => {
    const route = ROUTES.map(([method, re, operation]) => ({ operation, m: req.method === method ? re.exec(req.path) : null })).find((r) => r.m);
    if (!route?.m) return apiError(404, 'UnknownOperationException', `no Lambda operation ${req.method} ${req.path}`);
    const { operation } = route;
    const nameOrArn = decodeURIComponent(route.m[1]);
    const ref = parseFunctionRef(nameOrArn);
    if (!ref) return apiError(400, 'ValidationException', `1 validation error detected: Value '${nameOrArn}' at 'functionName' failed to satisfy constraint`);
    const qualifier = ref.qualifier ?? req.query.get('Qualifier') ?? undefined;
    // The ARN the caller named: what IAM authorizes, and the function's invokedFunctionArn.
    const resource = arn.function(ref.name) + (qualifier ? `:${qualifier}` : '');
    const decision = authorize({ action: `lambda:${operation}`, resource });
    if (!decision.allowed) {
      const session = `arn:aws:sts::${ACCOUNT}:assumed-role/${req.caller.roleArn.split('/').pop()}/${req.caller.name}`;
      return apiError(403, 'AccessDeniedException', `User: ${session} is not authorized to perform: lambda:${operation} on resource: ${resource} because no identity-based policy allows the lambda:${operation} action`);
    }
    let def: FunctionDefinition;
    try {
      def = functions.definition(resource);
    } catch (err) {
      if (err instanceof FunctionNotFoundError) return apiError(404, 'ResourceNotFoundException', err.message);
      throw err;
    }
    switch (operation) {
      case 'GetFunctionConfiguration':
        return { status: 200, headers: JSON_TYPE, body: JSON.stringify(config(def)) };
      case 'GetFunction':
        return { status: 200, headers: JSON_TYPE, body: JSON.stringify({ Configuration: config(def), Code: { RepositoryType: 'S3', Location: `file://${def.codeDir}` } }) };
      case 'InvokeFunction':
        return invoke(functions, resource, req.headers, req.body);
    }
  };
}

async function invoke(functions: Functions, invokedArn: string, headers: Record<string, string | string[] | undefined>, body: Buffer): Promise<ServiceResponse> {
  const type = String(headers['x-amz-invocation-type'] ?? 'RequestResponse');
  if (!['RequestResponse', 'Event', 'DryRun'].includes(type)) return apiError(400, 'InvalidParameterValueException', `invalid invocation type ${type}`);
  let event: unknown = {};
  if (body.length > 0) {
    try {
      event = JSON.parse(body.toString('utf8'));
    } catch (err) {
      return apiError(400, 'InvalidRequestContentException', `Could not parse request body into json: ${(err as Error).message}`);
    }
  }
  if (type === 'DryRun') return { status: 204, body: '' };
  const result = await functions.invoke(invokedArn, event, { type: type as 'RequestResponse' | 'Event' });
  const out: Record<string, string> = { ...JSON_TYPE, 'X-Amz-Executed-Version': result.executedVersion, 'x-amzn-RequestId': result.requestId };
  if (result.functionError) out['X-Amz-Function-Error'] = result.functionError;
  if (type === 'RequestResponse' && String(headers['x-amz-log-type'] ?? '') === 'Tail') out['X-Amz-Log-Result'] = Buffer.from(result.logs).subarray(-4096).toString('base64');
  return { status: result.status, headers: out, body: result.payload };
}
