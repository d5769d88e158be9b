/**
 * The contract between the local AWS gateway (`sim/aws/gateway.ts`) and the services it routes to:
 * the gateway terminates TLS, authenticates the SigV4 signature to a `Caller`, and hands the request
 * to the service's handler with an `authorize` function that checks one IAM action of that caller
 * (and records it for the audit). Defined here until the gateway's branch is merged, where these
 * types live; the shapes are the same.
 */
import type * as http from 'node:http';
import type { AwsCall, Caller, IamDecision } from '../types';

export interface ServiceRequest {
  readonly caller: Caller;
  readonly method: string;
  /** The request path without the query, still percent-encoded. */
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface ServiceResponse {
  readonly status: number;
  readonly headers?: Record<string, string>;
  readonly body: string | Buffer;
}

export type ServiceHandler = (req: ServiceRequest, authorize: (call: Omit<AwsCall, 'caller'>) => IamDecision) => Promise<ServiceResponse>;
