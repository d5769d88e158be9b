/**
 * How each AWS service's wire protocol answers, so that the SDK running unchanged parses the local
 * endpoints' errors as it parses AWS's: JSON (`{"__type","message"}`, DynamoDB, SSM, KMS, Step
 * Functions, ...), REST-JSON (Lambda: `x-amzn-ErrorType`), REST-XML (S3: `<Error><Code>`), query
 * (Auto Scaling, STS: `<ErrorResponse><Error>`) and EC2 (`<Response><Errors><Error>`); and the
 * errors every service gives for a missing or unknown access key and for a call IAM denies.
 */
import { randomUUID } from 'node:crypto';
import type { AwsCall, Caller, IamDecision } from '../types';
import type { Authorize } from './gateway';
import { ACCOUNT } from '../types';

export type Protocol = 'json1.0' | 'json1.1' | 'rest-json' | 'rest-xml' | 'query' | 'ec2';

/** The protocol of each service, by its SigV4 signing name; JSON 1.1 for any other. */
const PROTOCOLS: Readonly<Record<string, Protocol>> = {
  dynamodb: 'json1.0',
  states: 'json1.0',
  s3: 'rest-xml',
  lambda: 'rest-json',
  autoscaling: 'query',
  sts: 'query',
  iam: 'query',
  elasticloadbalancing: 'query',
  cloudformation: 'query',
  ec2: 'ec2',
};

/** The `__type` prefix a JSON service puts before its error codes. */
const JSON_NAMESPACES: Readonly<Record<string, string>> = { dynamodb: 'com.amazonaws.dynamodb.v20120810#' };

export function protocolOf(service: string): Protocol {
  return PROTOCOLS[service] ?? 'json1.1';
}

/** What a route answers (the gateway writes it as is). */
export interface ServiceResponse {
  status: number;
  headers?: Record<string, string>;
  body: Buffer | string;
}

/** An AWS error a route throws for the request at hand (the gateway answers it in the service's shape). */
export class AwsError extends Error {
  override readonly name = 'AwsError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const xmlEscape = (s: string) => s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * The operation and input of a JSON-protocol request (`POST /`, `X-Amz-Target: <prefix>.<Op>`,
 * a JSON object body), or the service's 400 for a request that is not one.
 */
export function jsonRequest(req: { method: string; headers: Record<string, string | string[] | undefined>; body: Buffer }, prefixes: readonly string[]): { op: string; input: Record<string, any> } {
  const target = /^([\w.]+)\.(\w+)$/.exec(String(req.headers['x-amz-target'] ?? ''));
  if (req.method !== 'POST' || !target || !prefixes.includes(target[1])) throw new AwsError(400, 'UnknownOperationException', `The X-Amz-Target header names no operation of ${prefixes.join(' or ')}.`);
  let input: unknown;
  try {
    input = JSON.parse(req.body.toString('utf8') || '{}');
  } catch {
    throw new AwsError(400, 'SerializationException', 'The request body is not valid JSON.');
  }
  if (!input || typeof input !== 'object' || Array.isArray(input)) throw new AwsError(400, 'SerializationException', 'The request body is not a JSON object.');
  return { op: target[2], input: input as Record<string, any> };
}

/** A successful JSON answer of a JSON-protocol service. */
export function jsonResponse(service: string, value: unknown, status = 200): ServiceResponse {
  const protocol = protocolOf(service);
  const contentType = protocol === 'json1.0' ? 'application/x-amz-json-1.0' : protocol === 'json1.1' ? 'application/x-amz-json-1.1' : 'application/json';
  return { status, headers: { 'content-type': contentType, 'x-amzn-requestid': randomUUID() }, body: JSON.stringify(value) };
}

/** An error of `service`, shaped as its protocol shapes errors. */
export function errorResponse(service: string, status: number, code: string, message: string): ServiceResponse {
  const requestId = randomUUID();
  switch (protocolOf(service)) {
    case 'rest-xml':
      return {
        status,
        headers: { 'content-type': 'application/xml', 'x-amz-request-id': requestId },
        body: `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${xmlEscape(code)}</Code><Message>${xmlEscape(message)}</Message><RequestId>${requestId}</RequestId></Error>`,
      };
    case 'query':
      return {
        status,
        headers: { 'content-type': 'text/xml', 'x-amzn-requestid': requestId },
        body: `<ErrorResponse><Error><Type>${status < 500 ? 'Sender' : 'Receiver'}</Type><Code>${xmlEscape(code)}</Code><Message>${xmlEscape(message)}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
      };
    case 'ec2':
      return {
        status,
        headers: { 'content-type': 'text/xml' },
        body: `<Response><Errors><Error><Code>${xmlEscape(code)}</Code><Message>${xmlEscape(message)}</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`,
      };
    case 'rest-json':
      return { ...jsonResponse(service, { Type: 'User', message }, status), headers: { 'content-type': 'application/json', 'x-amzn-errortype': code, 'x-amzn-requestid': requestId } };
    default:
      return jsonResponse(service, { __type: `${JSON_NAMESPACES[service] ?? ''}${code}`, message }, status);
  }
}

/** A request without a SigV4 `Authorization` header. */
export function missingAuthentication(service: string): ServiceResponse {
  switch (protocolOf(service)) {
    case 'rest-xml':
      return errorResponse(service, 403, 'AccessDenied', 'Access Denied');
    case 'query':
    case 'ec2':
      return errorResponse(service, 403, 'MissingAuthenticationToken', 'Request is missing Authentication Token');
    case 'rest-json':
      return errorResponse(service, 403, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
    default:
      return errorResponse(service, 400, 'MissingAuthenticationTokenException', 'Request is missing Authentication Token');
  }
}

/** A request signed with an access key id no caller holds (never issued, or revoked). */
export function unrecognizedClient(service: string): ServiceResponse {
  switch (protocolOf(service)) {
    case 'rest-xml':
      return errorResponse(service, 403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
    case 'query':
      return errorResponse(service, 403, 'InvalidClientTokenId', 'The security token included in the request is invalid.');
    case 'ec2':
      return errorResponse(service, 401, 'AuthFailure', 'AWS was not able to validate the provided access credentials');
    case 'rest-json':
      return errorResponse(service, 403, 'UnrecognizedClientException', 'The security token included in the request is invalid.');
    default:
      return errorResponse(service, 400, 'UnrecognizedClientException', 'The security token included in the request is invalid.');
  }
}

/** The session ARN AWS names a role's caller by in its messages. */
export function assumedRoleArn(caller: Caller): string {
  return `arn:aws:sts::${ACCOUNT}:assumed-role/${caller.roleArn.replace(/^.*:role\/(?:.*\/)?/, '')}/${caller.name}`;
}

/** IAM's refusal of `call`, as `service` reports it (AccessDeniedException, AccessDenied, UnauthorizedOperation). */
export function accessDenied(service: string, caller: Caller, call: Pick<AwsCall, 'action' | 'resource'>, decision: IamDecision): ServiceResponse {
  const because = decision.reason ?? `no identity-based policy allows the ${call.action} action`;
  const message = `User: ${assumedRoleArn(caller)} is not authorized to perform: ${call.action} on resource: ${call.resource} because ${because}`;
  switch (protocolOf(service)) {
    case 'rest-xml':
    case 'query':
      return errorResponse(service, 403, 'AccessDenied', message);
    case 'ec2':
      return errorResponse(service, 403, 'UnauthorizedOperation', message);
    case 'rest-json':
      return errorResponse(service, 403, 'AccessDeniedException', message);
    default:
      return errorResponse(service, 400, 'AccessDeniedException', message);
  }
}

/** The AccessDenied answer for the first of `calls` IAM denies `caller`, or undefined when it allows them all. */
export function refusal(service: string, caller: Caller, authorize: Authorize, calls: readonly Omit<AwsCall, 'caller'>[]): ServiceResponse | undefined {
  for (const call of calls) {
    const decision = authorize(call);
    if (!decision.allowed) return accessDenied(service, caller, call, decision);
  }
  return undefined;
}
