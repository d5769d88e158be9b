/** Requests to a proxy's web listener from tests, trusting exactly its (self-signed) certificate. */
import * as https from 'node:https';

export interface WebAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The body parsed as JSON; undefined when it is not JSON. */
  json: any;
}

export interface WebRequestOptions {
  /** An object is sent as JSON, a string as it is (with the JSON content type). */
  body?: string | object;
  token?: string;
  headers?: Record<string, string>;
}

export function webApiRequest(base: string, ca: string, method: string, p: string, opts: WebRequestOptions = {}): Promise<WebAnswer> {
  return new Promise<WebAnswer>((resolve, reject) => {
    const body = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    const req = https.request(
      `${base}${p}`,
      {
        method,
        ca,
        headers: {
          ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}),
          ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
          ...opts.headers,
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode!, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
