/**
 * Passing a request the gateway has authorized on to the local server that stores the data
 * (DynamoDB Local, s3rver), over plain HTTP on the host, and bringing its answer back whole.
 */
import * as http from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import { AwsError, type ServiceResponse } from './protocol';

/** Headers that belong to one connection, not to the request. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'transfer-encoding', 'expect', 'host', 'te', 'upgrade', 'proxy-connection'];

/** A local server to forward to, with its own pool of kept-alive connections. */
export class Upstream {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  private readonly base: URL;

  constructor(
    readonly name: string,
    url: string,
  ) {
    this.base = new URL(url);
  }

  /** Sends one request (`target` is the path and query) and returns the answer, body buffered. */
  send(method: string, target: string, headers: IncomingHttpHeaders, body: Buffer): Promise<ServiceResponse> {
    const out: http.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(headers)) if (value !== undefined && !HOP_BY_HOP.includes(name)) out[name] = value;
    out['content-length'] = String(body.length);
    return new Promise((resolve, reject) => {
      const req = http.request({ host: this.base.hostname, port: this.base.port, method, path: target, headers: out, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const answer: Record<string, string> = {};
          for (const [name, value] of Object.entries(res.headers)) {
            if (value === undefined || HOP_BY_HOP.includes(name) || (name === 'content-length' && method !== 'HEAD')) continue;
            answer[name] = Array.isArray(value) ? value.join(', ') : value;
          }
          resolve({ status: res.statusCode ?? 502, headers: answer, body: Buffer.concat(chunks) });
        });
      });
      req.on('error', (err) => reject(new AwsError(503, 'ServiceUnavailable', `${this.name} did not answer: ${err.message}`)));
      req.end(body);
    });
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.agent.destroy();
  }
}
