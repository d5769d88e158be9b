/**
 * The template's CloudFormation custom resources (`Custom::*`, `AWS::CloudFormation::CustomResource`)
 * backed by Lambda: `create`, `update` and `delete` invoke the `ServiceToken` function as
 * CloudFormation does (asynchronously, as the deploying principal: no IAM check for that hop) with
 * CloudFormation's request (`RequestType`, `ResponseURL`, `StackId`, `RequestId`, `ResourceType`,
 * `LogicalResourceId`, `ResourceProperties` with `ServiceToken` and every scalar as a string,
 * `PhysicalResourceId` and `OldResourceProperties` where they apply), then wait for the JSON `PUT`
 * to the response URL: an HTTPS endpoint of this module, on port 443 because the CDK provider
 * framework sends the response to the URL's host on the default port. `SUCCESS` gives the physical
 * id and `Data`; `FAILED`, an invalid response or no response within `ServiceTimeout` (else
 * `timeoutMs`) fails with a `CustomResourceError`. An update that changes the physical id is
 * followed by the delete of the old resource, as CloudFormation's cleanup does.
 */
import { randomUUID } from 'node:crypto';
import * as https from 'node:https';
import { ACCOUNT, type CfnResources, type Log, REGION, type Resolve } from '../types';
import { ResourceError } from './errors';
import type { Functions } from './functions';

export interface CustomResourcesOptions {
  readonly resources: CfnResources;
  readonly resolve: Resolve;
  readonly functions: Functions;
  readonly log: Log;
  /** The response endpoint's certificate and key; the functions trust it through `NODE_EXTRA_CA_CERTS`. */
  readonly tls: { readonly cert: string; readonly key: string };
  /** The address the response endpoint listens on (a name of the certificate). */
  readonly host: string;
  /** @default 443 (the provider framework ignores the URL's port) */
  readonly port?: number;
  /** The stack's name, for `StackId`. @default 'local' */
  readonly stackName?: string;
  /** How long to wait for a response when the resource sets no `ServiceTimeout`. @default 3600000 (CloudFormation's hour) */
  readonly timeoutMs?: number;
}

/** What a successful request gives. */
export interface CustomResourceResult {
  readonly physicalResourceId: string;
  readonly data: Readonly<Record<string, unknown>>;
}

export type RequestType = 'Create' | 'Update' | 'Delete';

/** A custom resource request that failed: the function said FAILED, answered wrongly, or not in time. */
export class CustomResourceError extends Error {
  constructor(
    readonly logicalId: string,
    readonly requestType: RequestType,
    readonly reason: string,
  ) {
    super(`custom resource ${logicalId} ${requestType} failed: ${reason}`);
    this.name = 'CustomResourceError';
  }
}

/** What CloudFormation knows of a resource between requests. */
interface State {
  physicalResourceId?: string;
  properties: Record<string, unknown>;
}

interface Pending {
  readonly logicalId: string;
  readonly stackId: string;
  settle(outcome: { ok: true; result: CustomResourceResult } | { ok: false; reason: string }): void;
}

/** Resource properties as CloudFormation hands them to a custom resource: numbers and booleans become strings. */
function stringified(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stringified);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, stringified(x)]));
  return typeof v === 'number' || typeof v === 'boolean' ? String(v) : v;
}

export class CustomResources {
  private readonly pending = new Map<string, Pending>();
  private readonly states = new Map<string, State>();
  private readonly stackId: string;

  private constructor(
    private readonly server: https.Server,
    private readonly opts: CustomResourcesOptions,
  ) {
    this.stackId = `arn:aws:cloudformation:${REGION}:${ACCOUNT}:stack/${opts.stackName ?? 'local'}/${randomUUID()}`;
    server.on('request', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('end', () => {
        const requestId = decodeURIComponent(new URL(req.url ?? '/', 'https://x').pathname.split('/').pop() ?? '');
        const pending = this.pending.get(requestId);
        if (req.method !== 'PUT' || !pending) {
          res.writeHead(404).end();
          return;
        }
        res.writeHead(200).end();
        pending.settle(this.parseResponse(pending, requestId, Buffer.concat(chunks)));
      });
    });
  }

  /** Checks the custom resources of the template and starts the response endpoint. */
  static async create(opts: CustomResourcesOptions): Promise<CustomResources> {
    for (const [id, r] of Object.entries(opts.resources)) {
      if (!CustomResources.isCustom(r.Type)) continue;
      const token = opts.resolve(r.Properties?.ServiceToken);
      if (typeof token !== 'string' || token.split(':')[2] !== 'lambda') throw new ResourceError(id, `ServiceToken ${token} is not a Lambda function (SNS-backed custom resources are not supported)`);
      opts.functions.definition(token);
    }
    const server = https.createServer({ cert: opts.tls.cert, key: opts.tls.key });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 443, opts.host, () => resolve());
    });
    return new CustomResources(server, opts);
  }

  private static isCustom(type: string): boolean {
    return type.startsWith('Custom::') || type === 'AWS::CloudFormation::CustomResource';
  }

  /** The custom resources of the template, by logical id. */
  logicalIds(): string[] {
    return Object.keys(this.opts.resources).filter((id) => CustomResources.isCustom(this.opts.resources[id].Type));
  }

  /** The physical id of a created resource. */
  physicalId(logicalId: string): string | undefined {
    return this.states.get(logicalId)?.physicalResourceId;
  }

  async create(logicalId: string): Promise<CustomResourceResult> {
    const properties = this.opts.resolve(this.resource(logicalId).Properties ?? {});
    const state: State = { properties };
    this.states.set(logicalId, state);
    return this.request(logicalId, 'Create', properties, state);
  }

  /** Updates the resource to `newProperties` (template values, resolved here). */
  async update(logicalId: string, newProperties: Record<string, unknown>): Promise<CustomResourceResult> {
    const state = this.created(logicalId);
    const properties = this.opts.resolve(newProperties);
    const old = { ...state };
    const result = await this.request(logicalId, 'Update', properties, state, old.properties);
    state.properties = properties;
    if (result.physicalResourceId !== old.physicalResourceId) {
      this.opts.log(`custom resource ${logicalId}: replaced (${old.physicalResourceId} → ${result.physicalResourceId}); deleting the old one`);
      await this.request(logicalId, 'Delete', old.properties, { ...old }).catch((err: Error) => this.opts.log(`custom resource ${logicalId}: cleanup failed: ${err.message}`));
    }
    return result;
  }

  async delete(logicalId: string): Promise<void> {
    const state = this.created(logicalId);
    await this.request(logicalId, 'Delete', state.properties, state);
    this.states.delete(logicalId);
  }

  /** Stops the response endpoint; requests still waiting fail. */
  async close(): Promise<void> {
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.settle({ ok: false, reason: 'the deployment stopped' });
    }
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private resource(logicalId: string) {
    const r = this.opts.resources[logicalId];
    if (!r || !CustomResources.isCustom(r.Type)) throw new Error(`${logicalId} is not a custom resource of the template`);
    return r;
  }

  private created(logicalId: string): State {
    this.resource(logicalId);
    const state = this.states.get(logicalId);
    if (!state) throw new Error(`custom resource ${logicalId} was not created`);
    return state;
  }

  /** Sends one request and waits for its response; the state takes the physical id the response names. */
  private async request(logicalId: string, type: RequestType, properties: Record<string, unknown>, state: State, oldProperties?: Record<string, unknown>): Promise<CustomResourceResult> {
    const requestId = randomUUID();
    const port = this.opts.port ?? 443;
    const event = {
      RequestType: type,
      ServiceToken: properties.ServiceToken,
      ResponseURL: `https://${this.opts.host}${port === 443 ? '' : `:${port}`}/cloudformation-response/${requestId}`,
      StackId: this.stackId,
      RequestId: requestId,
      LogicalResourceId: logicalId,
      ResourceType: this.resource(logicalId).Type,
      ...(type !== 'Create' ? { PhysicalResourceId: state.physicalResourceId } : {}),
      ResourceProperties: stringified(properties),
      ...(oldProperties ? { OldResourceProperties: stringified(oldProperties) } : {}),
    };
    const timeoutMs = properties.ServiceTimeout !== undefined ? Number(properties.ServiceTimeout) * 1000 : (this.opts.timeoutMs ?? 3_600_000);
    const outcome = await new Promise<{ ok: true; result: CustomResourceResult } | { ok: false; reason: string }>((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        resolve({ ok: false, reason: `no response within ${timeoutMs / 1000} s` });
      }, timeoutMs);
      this.pending.set(requestId, {
        logicalId,
        stackId: this.stackId,
        settle: (o) => {
          clearTimeout(timer);
          this.pending.delete(requestId);
          resolve(o);
        },
      });
      this.opts.log(`custom resource ${logicalId}: ${type} (request ${requestId})`);
      this.opts.functions.invoke(String(properties.ServiceToken), event, { type: 'Event' }).catch((err: Error) => this.pending.get(requestId)?.settle({ ok: false, reason: err.message }));
    });
    if (!outcome.ok) {
      this.opts.log(`custom resource ${logicalId}: ${type} failed: ${outcome.reason}`);
      throw new CustomResourceError(logicalId, type, outcome.reason);
    }
    state.physicalResourceId = outcome.result.physicalResourceId;
    this.opts.log(`custom resource ${logicalId}: ${type} succeeded (${outcome.result.physicalResourceId})`);
    return outcome.result;
  }

  /** A response as CloudFormation checks it. */
  private parseResponse(pending: Pending, requestId: string, body: Buffer): { ok: true; result: CustomResourceResult } | { ok: false; reason: string } {
    let r: Record<string, any>;
    try {
      r = JSON.parse(body.toString('utf8'));
    } catch {
      return { ok: false, reason: 'Invalid response object: not JSON' };
    }
    if (body.length > 4096) return { ok: false, reason: `Response object is too long (${body.length} bytes, at most 4096)` };
    if (r.RequestId !== requestId || r.StackId !== pending.stackId || r.LogicalResourceId !== pending.logicalId) return { ok: false, reason: 'Invalid response object: RequestId, StackId or LogicalResourceId does not match the request' };
    if (r.Status === 'FAILED') {
      const state = this.states.get(pending.logicalId);
      if (state && r.PhysicalResourceId) state.physicalResourceId = r.PhysicalResourceId;
      return { ok: false, reason: String(r.Reason ?? 'FAILED') };
    }
    if (r.Status !== 'SUCCESS') return { ok: false, reason: `Invalid response object: Status ${JSON.stringify(r.Status)}` };
    if (typeof r.PhysicalResourceId !== 'string' || r.PhysicalResourceId === '') return { ok: false, reason: 'Invalid PhysicalResourceId' };
    return { ok: true, result: { physicalResourceId: r.PhysicalResourceId, data: r.Data ?? {} } };
  }
}
