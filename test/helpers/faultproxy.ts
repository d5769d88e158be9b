/**
 * An HTTP proxy in front of a real service (DynamoDB Local, s3rver) that
 * injects the faults AWS clients must survive: every `every`-th request is
 * answered with a throttling error, has its connection reset before it is
 * forwarded, or is forwarded and then has its answer lost (reset after the
 * service applied it). The other requests pass through unchanged.
 */
import * as http from 'node:http';
import { AddressInfo } from 'node:net';

export type Fault = 'throttle' | 'reset' | 'lose-answer';

export interface FaultProxyOptions {
  /** e.g. `http://127.0.0.1:8000` */
  target: string;
  /** The faults to inject, in turn. */
  faults: Fault[];
  /** One request in `every` gets a fault. @default 3 */
  every?: number;
}

export class FaultProxy {
  requests = 0;
  readonly injected: Record<Fault, number> = { throttle: 0, reset: 0, 'lose-answer': 0 };
  private constructor(
    private readonly server: http.Server,
    readonly endpoint: string,
  ) {}

  static async start(opts: FaultProxyOptions): Promise<FaultProxy> {
    const target = new URL(opts.target);
    const every = opts.every ?? 3;
    let faultTurn = 0;
    let proxy: FaultProxy;
    const server = http.createServer((req, res) => {
      const n = ++proxy.requests;
      const fault = n % every === 0 ? opts.faults[faultTurn++ % opts.faults.length] : undefined;
      if (fault) proxy.injected[fault]++;
      if (fault === 'throttle') {
        req.resume();
        const body = JSON.stringify({ __type: 'com.amazonaws.dynamodb.v20120810#ThrottlingException', message: 'Rate of requests exceeds the allowed throughput.' });
        res.writeHead(400, { 'content-type': 'application/x-amz-json-1.0', 'content-length': Buffer.byteLength(body), 'x-amzn-errortype': 'ThrottlingException' });
        return void res.end(body);
      }
      if (fault === 'reset') return void req.socket.destroy();
      const upstream = http.request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
        (up) => {
          if (fault === 'lose-answer') {
            up.resume();
            up.on('end', () => req.socket.destroy());
            return;
          }
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on('error', () => req.socket.destroy());
      req.pipe(upstream);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    proxy = new FaultProxy(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    return proxy;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
