/**
 * Local HTTP imitations of AWS endpoints that cannot run here: the instance metadata service
 * (IMDSv2 only: PUT a session token, then GETs carrying it), which an AMI instance reads at boot;
 * SSM Parameter Store's GetParameter and PutParameter (the JSON protocol the SDK speaks), which
 * instances read and the control plane writes; CloudFormation's SignalResource (the query
 * protocol), which instances call once healthy; and Elastic Load Balancing v2's
 * DescribeTargetHealth (the query protocol), which they ask before that.
 * Point the SDK at them with `AWS_EC2_METADATA_SERVICE_ENDPOINT`, `AWS_ENDPOINT_URL_SSM`,
 * `AWS_ENDPOINT_URL_CLOUDFORMATION` and `AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2` (or
 * `AWS_ENDPOINT_URL`).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Imitation {
  readonly url: string;
  /** Requests served, as `METHOD path` (IMDS), or the SSM parameter name asked for (`PutParameter <name>` for a write). */
  readonly requests: string[];
  close(): Promise<void>;
}

async function listen(handler: (req: http.IncomingMessage, body: string, res: http.ServerResponse) => void): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => handler(req, body, res));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

/** IMDSv2: `meta` maps paths under /latest/meta-data/ to answers; others are 404. Requests without a token get 401. */
export async function startImds(meta: Record<string, string>): Promise<Imitation> {
  const token = 'imds-session-token';
  const requests: string[] = [];
  const srv = await listen((req, _body, res) => {
    requests.push(`${req.method} ${req.url}`);
    if (req.method === 'PUT' && req.url === '/latest/api/token') {
      if (!req.headers['x-aws-ec2-metadata-token-ttl-seconds']) return void res.writeHead(400).end();
      return void res.writeHead(200, { 'content-type': 'text/plain' }).end(token);
    }
    if (req.headers['x-aws-ec2-metadata-token'] !== token) return void res.writeHead(401).end('<html>401 Unauthorized</html>');
    const key = (req.url ?? '').replace(/^\/latest\/meta-data\//, '');
    if (req.method !== 'GET' || !Object.hasOwn(meta, key)) return void res.writeHead(404).end('<html>404 Not Found</html>');
    res.writeHead(200, { 'content-type': 'text/plain' }).end(meta[key]);
  });
  return { ...srv, requests };
}

/** One PutParameter the SSM imitation accepted. */
export interface SsmWrite {
  Name: string;
  Value: string;
  Type: string;
  Overwrite: boolean;
  KeyId?: string;
}

export interface SsmImitation extends Imitation {
  /** Accepted PutParameter calls, in order. */
  readonly writes: SsmWrite[];
  /** Refuses the next `count` writes of `name` with `error`, as SSM refuses a write while another write of the parameter is in flight. */
  refuseWrites(name: string, count: number, error?: string): void;
}

/**
 * SSM Parameter Store over `params` (changeable while running): GetParameter (a missing name is
 * ParameterNotFound) and PutParameter (an existing name without `Overwrite` is
 * ParameterAlreadyExists), in the JSON protocol the SDK speaks (`X-Amz-Target: AmazonSSM.<Action>`).
 */
export async function startSsm(params: Map<string, string>): Promise<SsmImitation> {
  const requests: string[] = [];
  const writes: SsmWrite[] = [];
  const types = new Map<string, string>();
  const versions = new Map<string, number>();
  const refusals = new Map<string, { count: number; error: string }>();
  const srv = await listen((req, body, res) => {
    const target = String(req.headers['x-amz-target'] ?? '');
    const reply = (status: number, json: object) =>
      res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' }).end(JSON.stringify(json));
    if (target === 'AmazonSSM.GetParameter') {
      const { Name } = JSON.parse(body) as { Name: string };
      requests.push(Name);
      const value = params.get(Name);
      if (value === undefined) return reply(400, { __type: 'ParameterNotFound', message: '' });
      return reply(200, { Parameter: { Name, Value: value, Type: types.get(Name) ?? 'String', Version: versions.get(Name) ?? 1 } });
    }
    if (target === 'AmazonSSM.PutParameter') {
      const input = JSON.parse(body) as SsmWrite;
      requests.push(`PutParameter ${input.Name}`);
      const refusal = refusals.get(input.Name);
      if (refusal && refusal.count > 0) {
        refusal.count--;
        return reply(400, { __type: refusal.error, message: 'There are concurrent updates for a resource that supports one update at a time.' });
      }
      if (params.has(input.Name) && !input.Overwrite) return reply(400, { __type: 'ParameterAlreadyExists', message: 'The parameter already exists.' });
      params.set(input.Name, input.Value);
      types.set(input.Name, input.Type);
      const version = (versions.get(input.Name) ?? 0) + 1;
      versions.set(input.Name, version);
      writes.push({ Name: input.Name, Value: input.Value, Type: input.Type, Overwrite: input.Overwrite === true, ...(input.KeyId ? { KeyId: input.KeyId } : {}) });
      return reply(200, { Version: version, Tier: 'Standard' });
    }
    reply(400, { __type: 'InvalidAction', message: `not imitated: ${target}` });
  });
  return {
    ...srv,
    requests,
    writes,
    refuseWrites: (name, count, error = 'TooManyUpdates') => void refusals.set(name, { count, error }),
  };
}

/** One SignalResource the CloudFormation imitation answered with success. */
export interface CfnSignal {
  StackName: string;
  LogicalResourceId: string;
  UniqueId: string;
  Status: string;
}

/** An error answer, as CloudFormation's query protocol sends it. */
export interface CfnError {
  status: number;
  code: string;
  message: string;
}

export interface CloudFormationImitation extends Imitation {
  /** Signals answered with success, in order. */
  readonly signals: CfnSignal[];
  /** Answers the next `count` requests with `error` instead. */
  failNext(count: number, error: CfnError): void;
}

const CFN_NS = 'http://cloudformation.amazonaws.com/doc/2010-05-15/';
const xmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * CloudFormation's SignalResource in the query protocol (`Action=SignalResource&Version=2010-05-15&
 * StackName=...&LogicalResourceId=...&UniqueId=...&Status=...`, form-encoded): an XML
 * `SignalResourceResponse`, or the queued errors as an XML `ErrorResponse`. Every request
 * (`requests`) is recorded as `Action Status`.
 */
export async function startCloudFormation(): Promise<CloudFormationImitation> {
  const requests: string[] = [];
  const signals: CfnSignal[] = [];
  const failures: { count: number; error: CfnError }[] = [];
  let next = 0;
  const srv = await listen((req, body, res) => {
    const params = Object.fromEntries(new URLSearchParams(body));
    requests.push(`${params.Action ?? '(no Action)'} ${params.Status ?? ''}`.trim());
    const requestId = `req-${++next}`;
    const xml = (status: number, text: string) => res.writeHead(status, { 'content-type': 'text/xml', 'x-amzn-requestid': requestId }).end(text);
    const failure = failures[0];
    if (failure) {
      if (--failure.count <= 0) failures.shift();
      const { status, code, message } = failure.error;
      return xml(
        status,
        `<ErrorResponse xmlns="${CFN_NS}"><Error><Type>${status >= 500 ? 'Receiver' : 'Sender'}</Type><Code>${xmlEscape(code)}</Code>` +
          `<Message>${xmlEscape(message)}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
      );
    }
    if (req.method !== 'POST' || params.Action !== 'SignalResource' || params.Version !== '2010-05-15') {
      return xml(400, `<ErrorResponse xmlns="${CFN_NS}"><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>not imitated: ${xmlEscape(String(params.Action))}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`);
    }
    const missing = ['StackName', 'LogicalResourceId', 'UniqueId', 'Status'].filter((k) => !params[k]);
    if (missing.length > 0 || !['SUCCESS', 'FAILURE'].includes(params.Status)) {
      return xml(400, `<ErrorResponse xmlns="${CFN_NS}"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>invalid request: ${xmlEscape(missing.join(', ') || params.Status)}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`);
    }
    signals.push({ StackName: params.StackName, LogicalResourceId: params.LogicalResourceId, UniqueId: params.UniqueId, Status: params.Status });
    xml(200, `<SignalResourceResponse xmlns="${CFN_NS}"><ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></SignalResourceResponse>`);
  });
  return { ...srv, requests, signals, failNext: (count, error) => void failures.push({ count, error }) };
}

/** A target's health as DescribeTargetHealth reports it (`TargetHealth`), and the port it is registered on. */
export interface TargetHealthAnswer {
  State: 'initial' | 'healthy' | 'unhealthy' | 'unhealthy.draining' | 'unused' | 'draining' | 'unavailable';
  Reason?: string;
  Description?: string;
  /** @default 3025 */
  Port?: number;
}

export interface LoadBalancingImitation extends Imitation {
  /** Sets what a target group answers for an instance from now on (the first answer registers the group). */
  setHealth(targetGroupArn: string, instanceId: string, health: TargetHealthAnswer): void;
  /** Answers the next `count` requests with `error` instead. */
  failNext(count: number, error: CfnError): void;
}

const ELB_NS = 'http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/';

/** What AWS answers while a target registers, passes its first checks, or fails them. */
export const TargetHealths = {
  initial: { State: 'initial', Reason: 'Elb.RegistrationInProgress', Description: 'Target registration is in progress' },
  healthy: { State: 'healthy' },
  unhealthy: { State: 'unhealthy', Reason: 'Target.FailedHealthChecks', Description: 'Health checks failed' },
} as const satisfies Record<string, TargetHealthAnswer>;

/**
 * Elastic Load Balancing v2's DescribeTargetHealth in the query protocol (`Action=DescribeTargetHealth&
 * Version=2015-12-01&TargetGroupArn=...&Targets.member.1.Id=...`, form-encoded): an XML
 * `DescribeTargetHealthResponse` with one `TargetHealthDescriptions` member per target asked for (all
 * the group's without `Targets`), a target the group does not have being `unused`
 * (`Target.NotRegistered`) as in AWS; an unknown group is `TargetGroupNotFound`. Every request
 * (`requests`) is recorded as `DescribeTargetHealth <arn> <id>[,<id>...]`.
 */
export async function startLoadBalancing(): Promise<LoadBalancingImitation> {
  const requests: string[] = [];
  const groups = new Map<string, Map<string, TargetHealthAnswer>>();
  const failures: { count: number; error: CfnError }[] = [];
  let next = 0;
  const srv = await listen((req, body, res) => {
    const params = Object.fromEntries(new URLSearchParams(body));
    const ids = Object.keys(params)
      .filter((k) => /^Targets\.member\.\d+\.Id$/.test(k))
      .sort((a, b) => Number(a.split('.')[2]) - Number(b.split('.')[2]))
      .map((k) => params[k]);
    requests.push([params.Action ?? '(no Action)', params.TargetGroupArn, ids.join(',')].filter(Boolean).join(' '));
    const requestId = `elb-req-${++next}`;
    const xml = (status: number, text: string) => res.writeHead(status, { 'content-type': 'text/xml', 'x-amzn-requestid': requestId }).end(text);
    const error = (status: number, code: string, message: string) =>
      xml(
        status,
        `<ErrorResponse xmlns="${ELB_NS}"><Error><Type>${status >= 500 ? 'Receiver' : 'Sender'}</Type><Code>${xmlEscape(code)}</Code>` +
          `<Message>${xmlEscape(message)}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
      );
    const failure = failures[0];
    if (failure) {
      if (--failure.count <= 0) failures.shift();
      return error(failure.error.status, failure.error.code, failure.error.message);
    }
    if (req.method !== 'POST' || params.Action !== 'DescribeTargetHealth' || params.Version !== '2015-12-01') {
      return error(400, 'InvalidAction', `not imitated: ${String(params.Action)}`);
    }
    const group = groups.get(params.TargetGroupArn ?? '');
    if (!group) return error(400, 'TargetGroupNotFound', `Target groups '${String(params.TargetGroupArn)}' not found`);
    const unused: TargetHealthAnswer = { State: 'unused', Reason: 'Target.NotRegistered', Description: 'Target is not registered to the target group' };
    const members = (ids.length > 0 ? ids : [...group.keys()]).map((id) => {
      const h = group.get(id) ?? unused;
      const port = h.Port ?? 3025;
      const health =
        `<State>${h.State}</State>` + (h.Reason ? `<Reason>${xmlEscape(h.Reason)}</Reason>` : '') + (h.Description ? `<Description>${xmlEscape(h.Description)}</Description>` : '');
      return `<member><Target><Id>${xmlEscape(id)}</Id><Port>${port}</Port></Target><HealthCheckPort>${port}</HealthCheckPort><TargetHealth>${health}</TargetHealth></member>`;
    });
    xml(
      200,
      `<DescribeTargetHealthResponse xmlns="${ELB_NS}"><DescribeTargetHealthResult><TargetHealthDescriptions>${members.join('')}</TargetHealthDescriptions>` +
        `</DescribeTargetHealthResult><ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></DescribeTargetHealthResponse>`,
    );
  });
  return {
    ...srv,
    requests,
    setHealth: (arn, id, health) => {
      if (!groups.has(arn)) groups.set(arn, new Map());
      groups.get(arn)!.set(id, health);
    },
    failNext: (count, error) => void failures.push({ count, error }),
  };
}
