/**
 * The local deployment's AWS endpoint: one HTTPS server (the endpoint certificate of `sim/tls.ts`)
 * that instances and functions reach through `AWS_ENDPOINT_URL`, for every service.
 *
 * Each request names its caller by the access key id of its SigV4 `Authorization` header
 * (presigned URLs are not served): the key is looked up in the `CredentialRegistry`, and the
 * service in the credential scope picks the route. Signatures are NOT verified: the key only
 * attributes the call to a role (every caller runs on this machine and holds only its own keys).
 * A route turns the request into IAM calls and asks `authorize` for each; a denied call is
 * answered with the service's AccessDenied error and never reaches the data. Built-in routes:
 * DynamoDB and DynamoDB Streams (to DynamoDB Local) and S3 (to s3rver), when their stores are
 * given; other modules add theirs with `route()` (SSM, Lambda, Auto Scaling, ...).
 *
 * Every call carries `aws:SecureTransport = "true"` (the endpoint is HTTPS only); `aws:SourceIp`
 * is left out. A request a route cannot read gets a 400 of its own; nothing secret is logged.
 */
import * as https from 'node:https';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AwsCall, CallAuditor, Caller, IamDecision, Log } from '../types';
import { accessKeyOf, type CredentialRegistry } from './credentials';
import { dynamodbRoute } from './dynamodb-route';
import { AwsError, errorResponse, missingAuthentication, unrecognizedClient, type ServiceResponse } from './protocol';
import { s3Route } from './s3-route';

export type { ServiceResponse } from './protocol';

/** One request to a service, from an identified caller. */
export interface ServiceRequest {
  readonly caller: Caller;
  readonly method: string;
  /** The path, still percent-encoded. */
  readonly path: string;
  readonly query: URLSearchParams;
  /** Lower-case names. */
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  /** The request target as sent (path and query string). */
  readonly url: string;
}

/** Decides (and records) one IAM call of the request's caller. */
export type Authorize = (call: Omit<AwsCall, 'caller'>) => IamDecision;

/** Serves one service's requests; throws `AwsError` for a request it refuses. */
export type ServiceHandler = (req: ServiceRequest, authorize: Authorize) => Promise<ServiceResponse>;

/** Where the built-in routes' data is served (from `sim/aws/stores.ts`). */
export interface GatewayStores {
  /** DynamoDB Local's URL. */
  readonly dynamodbEndpoint: string;
  /** s3rver's URL. */
  readonly s3Endpoint: string;
  /** The default SSE-KMS key ARN of each bucket encrypted with `aws:kms`, by bucket name. */
  readonly bucketKeys: ReadonlyMap<string, string>;
}

export interface GatewayOptions {
  readonly tls: { readonly cert: string; readonly key: string };
  readonly registry: CredentialRegistry;
  readonly auditor: CallAuditor;
  /** The address to listen on (the bridge's host address in the deployment). */
  readonly host: string;
  /** @default a free port */
  readonly port?: number;
  readonly stores?: GatewayStores;
  readonly log?: Log;
}

export class Gateway {
  private readonly routes = new Map<string, ServiceHandler>();
  private readonly closers: (() => void)[] = [];

  private constructor(
    private readonly server: https.Server,
    private readonly opts: GatewayOptions,
  ) {}

  /** Listens on `host` and serves the stores' services. */
  static async start(opts: GatewayOptions): Promise<Gateway> {
    const server = https.createServer({ cert: opts.tls.cert, key: opts.tls.key });
    const gateway = new Gateway(server, opts);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => gateway.serve(req, res));
    if (opts.stores) {
      const dynamodb = dynamodbRoute(opts.stores.dynamodbEndpoint);
      const s3 = s3Route(opts.stores.s3Endpoint, opts.stores.bucketKeys);
      gateway.route('dynamodb', dynamodb.handler);
      gateway.route('s3', s3.handler);
      gateway.closers.push(dynamodb.close, s3.close);
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, opts.host, () => resolve());
    });
    return gateway;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** The endpoint URL for `AWS_ENDPOINT_URL`. */
  get url(): string {
    return `https://${this.opts.host}:${this.port}`;
  }

  /** Serves `service` (its SigV4 signing name: `ssm`, `lambda`, `autoscaling`, ...) with `handler`. */
  route(service: string, handler: ServiceHandler): void {
    this.routes.set(service, handler);
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    for (const close of this.closers) close();
    await closed;
  }

  private serve(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => res.destroy());
    req.on('end', () => {
      this.answer(req, Buffer.concat(chunks)).then(
        (answer) => {
          const headers = { ...answer.headers };
          if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-length')) headers['content-length'] = String(Buffer.byteLength(answer.body));
          res.writeHead(answer.status, headers).end(answer.body);
        },
        () => res.destroy(),
      );
    });
  }

  private async answer(req: IncomingMessage, body: Buffer): Promise<ServiceResponse> {
    const url = new URL(req.url ?? '/', 'https://gateway');
    const signed = accessKeyOf(req.headers.authorization);
    // Unsigned: the service is unknown; a JSON protocol's error when the request names a JSON target, else S3's.
    if (!signed) return missingAuthentication(req.headers['x-amz-target'] ? 'json' : 's3');
    const { service } = signed;
    const caller = this.opts.registry.callerOf(signed.accessKeyId);
    if (!caller) {
      this.opts.log?.(`gateway: ${service} request with an unknown access key refused`);
      return unrecognizedClient(service);
    }
    const handler = this.routes.get(service);
    if (!handler) return errorResponse(service, 501, 'NotImplemented', `The local deployment does not serve ${service}.`);
    const authorize: Authorize = (call) => {
      const decision = this.opts.auditor.check({ ...call, caller, context: { 'aws:SecureTransport': 'true', ...call.context } });
      if (!decision.allowed) this.opts.log?.(`gateway: ${caller.name} (${caller.roleLogicalId}) denied ${call.action} on ${call.resource}`);
      return decision;
    };
    const request: ServiceRequest = { caller, method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, headers: req.headers, body, url: req.url ?? '/' };
    try {
      return await handler(request, authorize);
    } catch (err) {
      if (err instanceof AwsError) return errorResponse(service, err.status, err.code, err.message);
      this.opts.log?.(`gateway: ${service} request of ${caller.name} failed: ${(err as Error).message}`);
      return errorResponse(service, 500, 'InternalFailure', 'The request processing has failed because of an unknown error.');
    }
  }
}
