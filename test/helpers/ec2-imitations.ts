/**
 * Local HTTP imitations of the two AWS endpoints an AMI instance talks to at boot and that
 * cannot run here: the instance metadata service (IMDSv2 only: PUT a session token, then GETs
 * carrying it) and SSM Parameter Store's GetParameter (the JSON protocol the SDK speaks).
 * Point the SDK at them with `AWS_EC2_METADATA_SERVICE_ENDPOINT` and `AWS_ENDPOINT_URL_SSM`.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Imitation {
  readonly url: string;
  /** Requests served, as `METHOD path` (IMDS) or the SSM parameter name asked for. */
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

/** SSM GetParameter over parameters in `params` (changeable while running); a missing name is ParameterNotFound. */
export async function startSsm(params: Map<string, string>): Promise<Imitation> {
  const requests: string[] = [];
  const srv = await listen((req, body, res) => {
    const target = String(req.headers['x-amz-target'] ?? '');
    const reply = (status: number, json: object) =>
      res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' }).end(JSON.stringify(json));
    if (target !== 'AmazonSSM.GetParameter') return reply(400, { __type: 'InvalidAction', message: `not imitated: ${target}` });
    const { Name } = JSON.parse(body) as { Name: string };
    requests.push(Name);
    const value = params.get(Name);
    if (value === undefined) return reply(400, { __type: 'ParameterNotFound', message: '' });
    reply(200, { Parameter: { Name, Value: value, Type: 'String', Version: 1 } });
  });
  return { ...srv, requests };
}
