/**
 * What the sim/lambda tests share: a temp directory laid out like cdk.out with small handler
 * assets (plain JS written by the test), an inline template of those functions and their roles, a
 * resolver following sim/template.ts's conventions (Ref of a function = its name, GetAtt Arn =
 * the `arn.*` ARN, GetAtt StreamArn = the stream ARN the test gives), and a tiny HTTPS stand-in
 * for the AWS gateway that serves one service handler, naming the caller from the SigV4 access key.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { CredentialRegistry, accessKeyOf } from '../../sim/aws/credentials';
import type { ServiceHandler } from '../../sim/aws/gateway';
import type { EndpointTls } from '../../sim/tls';
import { arn, type AwsCall, type CfnResource, type IamDecision } from '../../sim/types';
import { RUN_ENV, runId } from '../helpers/leftovers';
import { ROOT, tempDir } from '../helpers/proc';

export interface TestFunction {
  /** The handler module's source (CommonJS). */
  readonly code: string;
  readonly handler?: string;
  readonly timeout?: number;
  /** Template values (resolved by the fixture's resolver). */
  readonly variables?: Record<string, unknown>;
  /** Extra files of the asset, by name. */
  readonly files?: Record<string, string>;
  /** Other properties of the function resource. */
  readonly properties?: Record<string, unknown>;
}

export interface Fixture {
  readonly dir: string;
  readonly cdkOut: string;
  readonly workDir: string;
  readonly resources: Record<string, CfnResource>;
  readonly resolve: (value: unknown) => any;
  readonly credentials: CredentialRegistry;
  /** Every line logged. */
  readonly lines: string[];
  readonly log: (line: string) => void;
  /** The environment every test function gets: the run id, so the run's leftover check sees the processes. */
  readonly env: Record<string, string>;
  cleanup(): void;
}

/** The physical name of a resource of the fixture's template. */
export const physicalName = (logicalId: string) => `acme-${logicalId}`;

/**
 * Writes each function's code as a cdk.out asset and builds the template: `<Id>` is the function,
 * `<Id>Role` its role; `extra` adds resources (rules, permissions, mappings, custom resources).
 */
export function fixture(functions: Record<string, TestFunction>, extra: Record<string, CfnResource> = {}, streamArns: Record<string, string> = {}): Fixture {
  const dir = tempDir('sim-lambda-');
  const cdkOut = path.join(dir, 'cdk.out');
  const workDir = path.join(dir, 'work');
  fs.mkdirSync(workDir, { recursive: true });
  const resources: Record<string, CfnResource> = {};
  for (const [id, fn] of Object.entries(functions)) {
    const hash = createHash('sha256').update(id + fn.code).digest('hex');
    const assetDir = path.join(cdkOut, `asset.${hash}`);
    fs.mkdirSync(assetDir, { recursive: true });
    const moduleName = (fn.handler ?? 'index.handler').split('.')[0];
    fs.writeFileSync(path.join(assetDir, `${moduleName}.js`), fn.code);
    for (const [name, text] of Object.entries(fn.files ?? {})) fs.writeFileSync(path.join(assetDir, name), text);
    resources[`${id}Role`] = { Type: 'AWS::IAM::Role', Properties: { AssumeRolePolicyDocument: {} } };
    resources[id] = {
      Type: 'AWS::Lambda::Function',
      Properties: {
        Code: { S3Bucket: 'cdk-assets', S3Key: `${hash}.zip` },
        Handler: fn.handler ?? 'index.handler',
        Runtime: 'nodejs24.x',
        MemorySize: 256,
        Timeout: fn.timeout ?? 10,
        Role: { 'Fn::GetAtt': [`${id}Role`, 'Arn'] },
        Environment: { Variables: { STACK_TABLE: { Ref: 'Table' }, ...fn.variables } },
        ...fn.properties,
      },
      Metadata: { 'aws:asset:path': `asset.${hash}` },
    };
  }
  Object.assign(resources, extra);
  const resolve = (value: unknown): any => {
    if (Array.isArray(value)) return value.map(resolve);
    if (!value || typeof value !== 'object') return value;
    const obj = value as Record<string, any>;
    if ('Ref' in obj) return physicalName(obj.Ref);
    if ('Fn::GetAtt' in obj) {
      const [id, attr] = obj['Fn::GetAtt'] as [string, string];
      if (attr === 'StreamArn') return streamArns[id];
      const type = resources[id]?.Type;
      const build = { 'AWS::Lambda::Function': arn.function, 'AWS::IAM::Role': arn.role, 'AWS::Events::Rule': arn.rule }[type ?? ''];
      if (!build) throw new Error(`fixture cannot resolve GetAtt ${id}.${attr}`);
      return build(physicalName(id));
    }
    if ('Fn::Join' in obj) return (resolve(obj['Fn::Join'][1]) as string[]).join(obj['Fn::Join'][0]);
    return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, resolve(v)]));
  };
  const lines: string[] = [];
  return {
    dir,
    cdkOut,
    workDir,
    resources,
    resolve,
    credentials: new CredentialRegistry(),
    lines,
    log: (line) => lines.push(line),
    env: { [RUN_ENV]: runId() },
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/** The source of the CDK custom-resource provider framework (the asset `Provider` deploys), from aws-cdk-lib. */
export const PROVIDER_FRAMEWORK_DIR = path.join(ROOT, 'node_modules', 'aws-cdk-lib', 'custom-resources', 'lib', 'provider-framework', 'runtime');

/** An HTTPS stand-in for the AWS gateway serving one service; every authorized call is kept. */
export interface TestGateway {
  readonly url: string;
  readonly tls: EndpointTls;
  readonly calls: AwsCall[];
  close(): Promise<void>;
}

/** Serves `handler` on 127.0.0.1 with `tls`; `decide` is the IAM decision (every call allowed unless it says otherwise). */
export async function serveService(
  handler: ServiceHandler,
  credentials: CredentialRegistry,
  tls: EndpointTls,
  decide: (call: AwsCall) => IamDecision = () => ({ allowed: true }),
): Promise<TestGateway> {
  const calls: AwsCall[] = [];
  const server = https.createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      const caller = credentials.callerOf(accessKeyOf(req.headers.authorization)?.accessKeyId ?? '');
      if (!caller) {
        res.writeHead(403).end('{"message":"unknown access key"}');
        return;
      }
      const url = new URL(req.url ?? '/', 'https://gateway');
      const authorize = (call: Omit<AwsCall, 'caller'>) => {
        const full = { ...call, caller };
        calls.push(full);
        return decide(full);
      };
      handler({ caller, method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, headers: req.headers, body: Buffer.concat(chunks), url: req.url ?? '/' }, authorize).then(
        (out) => res.writeHead(out.status, out.headers).end(out.body),
        (err: Error) => res.writeHead(500).end(JSON.stringify({ message: err.message })),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    tls,
    calls,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
