/**
 * sim/lambda/functions.ts and api.ts: the template's functions run from their assets in warm
 * environments with the template's handler, environment, timeout and role, and fail as Lambda
 * fails (handler errors, timeouts, crashes, init errors); the Lambda API serves Invoke,
 * GetFunction and GetFunctionConfiguration to the SDK, authorized per call.
 */
import * as https from 'node:https';
import { GetFunctionCommand, GetFunctionConfigurationCommand, InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { lambdaApi } from '../../sim/lambda/api';
import { FunctionNotFoundError, Functions } from '../../sim/lambda/functions';
import { arn } from '../../sim/types';
import { endpointTls } from '../../sim/tls';
import { waitFor } from '../helpers/proc';
import { fixture, physicalName, serveService, type Fixture, type TestGateway } from './lambda-fixture';

const ECHO = `
let calls = 0;
exports.handler = async (event, context) => {
  calls += 1;
  console.log('echo called', calls);
  const env = {};
  for (const k of ['STACK_TABLE', 'AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_LAMBDA_FUNCTION_NAME', 'AWS_LAMBDA_FUNCTION_MEMORY_SIZE',
    'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_ENDPOINT_URL', 'HOME']) env[k] = process.env[k];
  return { event, calls, env, cwd: process.cwd(), context: { ...context, remaining: context.getRemainingTimeInMillis() } };
};`;

const FAILING = `
class QuotaError extends Error { constructor(m) { super(m); this.name = 'QuotaError'; } }
exports.handler = async () => { throw new QuotaError('out of quota'); };`;

const SLOW = `
let calls = 0;
exports.handler = async (event) => {
  calls += 1;
  if (event.hang) await new Promise(() => setInterval(() => undefined, 1000));
  return { calls };
};`;

const CRASHING = `
let calls = 0;
exports.handler = async (event) => {
  calls += 1;
  if (event.crash) process.exit(3);
  return { calls };
};`;

const LOGGING = `exports.handler = async () => { console.info('routine detail'); console.warn('worth a look'); return 1; };`;

const MODULES = `
exports.sdk = async () => typeof require('@aws-sdk/client-lambda').LambdaClient;
exports.other = async () => require('zod');`;

describe('Lambda functions', () => {
  let fx: Fixture;
  let functions: Functions;
  let gateway: TestGateway | undefined;

  beforeAll(() => {
    fx = fixture({
      Echo: { code: ECHO, variables: { EXTRA: 'x' } },
      Failing: { code: FAILING },
      Slow: { code: SLOW, timeout: 1 },
      Crashing: { code: CRASHING },
      Modules: { code: MODULES, handler: 'mods.sdk' },
      ModulesOther: { code: MODULES, handler: 'mods.other' },
      Missing: { code: 'exports.other = async () => 1;' },
      Logging: { code: LOGGING, properties: { LoggingConfig: { LogFormat: 'JSON', ApplicationLogLevel: 'WARN', LogGroup: { Ref: 'Logs' } } } },
    });
    functions = Functions.create({
      resources: fx.resources,
      resolve: fx.resolve,
      cdkOut: fx.cdkOut,
      credentials: fx.credentials,
      env: { ...fx.env, AWS_ENDPOINT_URL: 'https://10.231.0.1' },
      log: fx.log,
      workDir: fx.workDir,
      timeScale: 600,
    });
  });

  afterAll(async () => {
    await functions?.close();
    await gateway?.close();
    fx?.cleanup();
  });

  test('an invocation returns the handler result, with Lambda context, the template environment and role credentials', async () => {
    // GIVEN the Echo function of the template
    const name = physicalName('Echo');
    // WHEN it is invoked by name
    const result = await functions.invoke(name, { hello: 'world' });
    // THEN the result is the handler's, with the event and a context as Lambda builds it
    expect(result.status).toBe(200);
    expect(result.functionError).toBeUndefined();
    const out = JSON.parse(result.payload);
    expect(out.event).toEqual({ hello: 'world' });
    expect(out.context).toMatchObject({
      functionName: name,
      functionVersion: '$LATEST',
      invokedFunctionArn: arn.function(name),
      memoryLimitInMB: '256',
      awsRequestId: result.requestId,
      logGroupName: `/aws/lambda/${name}`,
    });
    expect(out.context.remaining).toBeGreaterThan(0);
    expect(out.context.remaining).toBeLessThanOrEqual(10_000);
    // AND the environment has the resolved template variables, Lambda's variables and the caller's endpoint, nothing of this process
    expect(out.env).toMatchObject({
      STACK_TABLE: physicalName('Table'),
      AWS_REGION: 'eu-west-1',
      AWS_DEFAULT_REGION: 'eu-west-1',
      AWS_LAMBDA_FUNCTION_NAME: name,
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '256',
      AWS_ENDPOINT_URL: 'https://10.231.0.1',
    });
    expect(out.env.HOME).toBeUndefined();
    expect(out.cwd).toBe(functions.definition(name).codeDir);
    // AND the credentials are the function role's, known to the registry
    expect(out.env.AWS_SECRET_ACCESS_KEY).toBeTruthy();
    expect(out.env.AWS_SESSION_TOKEN).toBeTruthy();
    expect(fx.credentials.callerOf(out.env.AWS_ACCESS_KEY_ID)).toEqual({ roleLogicalId: 'EchoRole', roleArn: arn.role(physicalName('EchoRole')), name });
    // AND the function's output is kept with the request id and logged
    expect(result.logs).toContain(`\t${result.requestId}\tINFO\techo called`);
    expect(functions.output(name)).toContain('echo called');
    expect(fx.lines.some((l) => l.startsWith(`[${name}] `) && l.includes('echo called'))).toBe(true);
    expect(functions.invocations.find((r) => r.requestId === result.requestId)).toMatchObject({ function: name, outcome: 'success', type: 'RequestResponse' });
  });

  test('the environment stays warm: the handler is loaded once and serves the next invocation', async () => {
    // GIVEN an Echo invocation already made
    const first = JSON.parse((await functions.invoke(physicalName('Echo'), {})).payload);
    // WHEN it is invoked again, by ARN
    const second = JSON.parse((await functions.invoke(arn.function(physicalName('Echo')), {})).payload);
    // THEN the same module instance counted both
    expect(second.calls).toBe(first.calls + 1);
  });

  test('a throwing handler gives FunctionError Unhandled with errorType, errorMessage and trace', async () => {
    // WHEN the Failing function is invoked
    const result = await functions.invoke(physicalName('Failing'), {});
    // THEN Lambda's error payload comes back, marked Unhandled
    expect(result.status).toBe(200);
    expect(result.functionError).toBe('Unhandled');
    const error = JSON.parse(result.payload);
    expect(error).toMatchObject({ errorType: 'QuotaError', errorMessage: 'out of quota' });
    expect(error.trace[0]).toContain('QuotaError: out of quota');
  });

  test('an invocation past the timeout fails with "Task timed out" and the next one gets a new environment', async () => {
    // GIVEN the Slow function (timeout 1 s) warmed by one invocation
    expect(JSON.parse((await functions.invoke(physicalName('Slow'), {})).payload).calls).toBe(1);
    // WHEN an invocation hangs
    const result = await functions.invoke(physicalName('Slow'), { hang: true });
    // THEN it fails as Lambda reports a timeout
    expect(result.functionError).toBe('Unhandled');
    expect(JSON.parse(result.payload)).toEqual({ errorType: 'Sandbox.Timedout', errorMessage: `RequestId: ${result.requestId} Error: Task timed out after 1.00 seconds` });
    expect(functions.invocations.find((r) => r.requestId === result.requestId)?.outcome).toBe('timeout');
    // AND the next invocation runs in a fresh environment (its module state starts over)
    expect(JSON.parse((await functions.invoke(physicalName('Slow'), {})).payload).calls).toBe(1);
  });

  test('a crash of the process fails the invocation and the next one gets a new environment', async () => {
    // GIVEN the Crashing function, warm
    expect(JSON.parse((await functions.invoke(physicalName('Crashing'), {})).payload).calls).toBe(1);
    // WHEN an invocation ends the process
    const result = await functions.invoke(physicalName('Crashing'), { crash: true });
    // THEN it fails with Lambda's exit error
    expect(result.functionError).toBe('Unhandled');
    expect(JSON.parse(result.payload)).toEqual({ errorType: 'Runtime.ExitError', errorMessage: `RequestId: ${result.requestId} Error: Runtime exited with error: exit status 3` });
    // AND the next invocation is served by a new environment
    expect(JSON.parse((await functions.invoke(physicalName('Crashing'), {})).payload).calls).toBe(1);
  });

  test('the runtime provides the AWS SDK and nothing else; a missing export is an init error', async () => {
    // WHEN handlers need the SDK, another package, and a handler that is not exported
    const sdk = await functions.invoke(physicalName('Modules'), {});
    const other = await functions.invoke(physicalName('ModulesOther'), {});
    const missing = await functions.invoke(physicalName('Missing'), {});
    // THEN the SDK loads, the other package does not (it would have to be bundled), and the export is not found
    expect(JSON.parse(sdk.payload)).toBe('function');
    expect(other.functionError).toBe('Unhandled');
    expect(JSON.parse(other.payload)).toMatchObject({ errorType: 'Error', errorMessage: expect.stringContaining("Cannot find module 'zod'") });
    expect(JSON.parse(missing.payload)).toMatchObject({ errorType: 'Runtime.HandlerNotFound', errorMessage: 'index.handler is undefined or not exported' });
  });

  test('JSON logging writes Lambda\'s JSON lines at the application log level and above', async () => {
    // GIVEN a function with LoggingConfig JSON, level WARN, and its own log group
    // WHEN it logs at INFO and WARN
    const result = await functions.invoke(physicalName('Logging'), {});
    // THEN only the WARN line is written, as JSON with the request id
    const lines = result.logs.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toEqual([{ timestamp: expect.any(String), level: 'WARN', requestId: result.requestId, message: 'worth a look' }]);
    expect(functions.definition(physicalName('Logging')).logGroup).toBe(physicalName('Logs'));
  });

  test('an unknown function is not found', async () => {
    // WHEN a function that is not in the template, or a version that does not exist, is invoked
    // THEN the invocation is refused as Lambda refuses it
    await expect(functions.invoke('nope', {})).rejects.toThrow(FunctionNotFoundError);
    await expect(functions.invoke(`${arn.function(physicalName('Echo'))}:7`, {})).rejects.toThrow(FunctionNotFoundError);
  });

  test('a failed asynchronous invocation is retried twice, at the accelerated pace', async () => {
    // WHEN the Failing function is invoked with InvocationType Event
    const result = await functions.invoke(physicalName('Failing'), { n: 1 }, { type: 'Event' });
    // THEN it is accepted at once
    expect(result.status).toBe(202);
    // AND Lambda's retries (1 and 2 minutes, at timeScale 600) run it three times in all with the same request id
    const runs = await waitFor('three runs of the asynchronous invocation', () => {
      const r = functions.invocations.filter((i) => i.requestId === result.requestId);
      return r.length === 3 && r;
    });
    expect(runs.map((r) => [r.type, r.attempt, r.outcome])).toEqual([
      ['Event', 0, 'error'],
      ['Event', 1, 'error'],
      ['Event', 2, 'error'],
    ]);
    await waitFor('the dropped invocation to be logged', () => fx.lines.some((l) => l.includes(`${result.requestId}: asynchronous invocation dropped after 3 attempt(s)`)));
  });

  describe('the Lambda API through the SDK', () => {
    let client: LambdaClient;
    const denied = new Set<string>();

    beforeAll(async () => {
      gateway = await serveService(lambdaApi(functions), fx.credentials, await endpointTls(fx.dir), (call) => (denied.has(call.action) ? { allowed: false, reason: 'test' } : { allowed: true }));
      const creds = fx.credentials.issue({ roleLogicalId: 'EchoRole', roleArn: arn.role(physicalName('EchoRole')), name: 'i-0123' });
      client = new LambdaClient({
        endpoint: gateway.url,
        region: 'eu-west-1',
        credentials: { accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey, sessionToken: creds.sessionToken },
        requestHandler: { httpsAgent: new https.Agent({ ca: gateway.tls.cert }) },
      });
    });

    afterAll(() => client?.destroy());

    test('Invoke returns the payload with the executed version, and FunctionError for a failure', async () => {
      // WHEN the SDK invokes Echo by ARN and Failing by name
      const ok = await client.send(new InvokeCommand({ FunctionName: arn.function(physicalName('Echo')), Payload: Buffer.from('{"a":1}') }));
      const failed = await client.send(new InvokeCommand({ FunctionName: physicalName('Failing'), LogType: 'Tail' }));
      // THEN the payloads and headers are Lambda's
      expect(ok.StatusCode).toBe(200);
      expect(ok.ExecutedVersion).toBe('$LATEST');
      expect(ok.FunctionError).toBeUndefined();
      expect(JSON.parse(Buffer.from(ok.Payload!).toString()).event).toEqual({ a: 1 });
      expect(failed.FunctionError).toBe('Unhandled');
      expect(JSON.parse(Buffer.from(failed.Payload!).toString()).errorType).toBe('QuotaError');
      expect(Buffer.from(failed.LogResult!, 'base64').toString()).toContain('out of quota');
      // AND each call was authorized as lambda:InvokeFunction on the function's ARN
      expect(gateway!.calls.slice(-2).map((c) => [c.action, c.resource])).toEqual([
        ['lambda:InvokeFunction', arn.function(physicalName('Echo'))],
        ['lambda:InvokeFunction', arn.function(physicalName('Failing'))],
      ]);
    });

    test('Invoke with InvocationType Event is accepted with 202', async () => {
      const out = await client.send(new InvokeCommand({ FunctionName: physicalName('Echo'), InvocationType: 'Event', Payload: Buffer.from('{"async":true}') }));
      expect(out.StatusCode).toBe(202);
      await waitFor('the queued invocation to run', () => functions.invocations.some((r) => r.type === 'Event' && r.function === physicalName('Echo') && r.outcome === 'success'));
    });

    test('GetFunction shows an active function; the configuration route is GetFunctionConfiguration', async () => {
      // WHEN the SDK reads the function, qualified with $LATEST
      const out = await client.send(new GetFunctionCommand({ FunctionName: `${arn.function(physicalName('Echo'))}:$LATEST` }));
      // THEN it is Active and its last update Successful, with the template's settings
      expect(out.Configuration).toMatchObject({ FunctionName: physicalName('Echo'), State: 'Active', LastUpdateStatus: 'Successful', Runtime: 'nodejs24.x', Timeout: 10, MemorySize: 256, Handler: 'index.handler' });
      expect(out.Configuration?.Environment?.Variables).toMatchObject({ EXTRA: 'x', STACK_TABLE: physicalName('Table') });
      expect(gateway!.calls.at(-1)).toMatchObject({ action: 'lambda:GetFunction', resource: `${arn.function(physicalName('Echo'))}:$LATEST` });
      // AND the configuration alone is read under its own IAM action
      const config = await client.send(new GetFunctionConfigurationCommand({ FunctionName: physicalName('Echo') }));
      expect(config).toMatchObject({ FunctionArn: arn.function(physicalName('Echo')), State: 'Active', LastUpdateStatus: 'Successful' });
      expect(gateway!.calls.at(-1)).toMatchObject({ action: 'lambda:GetFunctionConfiguration', resource: arn.function(physicalName('Echo')) });
    });

    test('a denied call is refused with AccessDeniedException and does not run the function', async () => {
      // GIVEN IAM denies lambda:InvokeFunction
      denied.add('lambda:InvokeFunction');
      const before = functions.invocations.length;
      try {
        // WHEN the SDK invokes a function
        // THEN the call fails with AccessDeniedException naming the action and resource
        await expect(client.send(new InvokeCommand({ FunctionName: physicalName('Echo') }))).rejects.toMatchObject({
          name: 'AccessDeniedException',
          message: expect.stringContaining(`not authorized to perform: lambda:InvokeFunction on resource: ${arn.function(physicalName('Echo'))}`),
        });
        expect(functions.invocations.length).toBe(before);
      } finally {
        denied.delete('lambda:InvokeFunction');
      }
    });

    test('an unknown function is ResourceNotFoundException', async () => {
      await expect(client.send(new InvokeCommand({ FunctionName: 'nope' }))).rejects.toMatchObject({ name: 'ResourceNotFoundException' });
    });
  });
});
