/**
 * The instance metadata service (IMDSv2 only) of every instance of the local deployment: one HTTP
 * server on the host that answers each request for the instance whose address it comes from (each
 * instance has its own address in its own network namespace), as the link-local service answers
 * each EC2 instance. A session token (`PUT /latest/api/token` with
 * `X-aws-ec2-metadata-token-ttl-seconds` 1–21600) is bound to the address that asked for it;
 * every GET needs a live one (401 without). Addresses of no instance get 404s. The hop limit is
 * not enforced.
 *
 * Served: meta-data/ (listing), instance-id, instance-type, local-ipv4, local-hostname, hostname,
 * mac, placement/availability-zone, placement/region, iam/info, iam/security-credentials/<role>,
 * tags/instance/<key>; /latest/user-data; /latest/dynamic/instance-identity/document.
 */
import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { IssuedCredentials } from '../types';
import { ACCOUNT, PARTITION, REGION } from '../types';

export interface ImdsInstance {
  /** The instance's private address: requests from it are answered for this instance. */
  readonly ip: string;
  readonly instanceId: string;
  readonly instanceType: string;
  readonly availabilityZone: string;
  readonly localHostname: string;
  /** The role of the instance profile. */
  readonly roleName: string;
  /** The role's current credentials (asked at every read, so rotation shows). */
  readonly credentials: () => IssuedCredentials;
  /** Instance tags, when tags in metadata are on. */
  readonly tags?: Readonly<Record<string, string>>;
  readonly userData?: string;
  readonly imageId?: string;
}

const MAX_TTL_SECONDS = 21600;

/** The MAC AWS would show: locally administered, the address's four bytes last. */
function macOf(ip: string): string {
  return ['02', '00', ...ip.split('.').map((b) => Number(b).toString(16).padStart(2, '0'))].join(':');
}

export class Imds {
  private readonly instances = new Map<string, ImdsInstance>();
  private readonly tokens = new Map<string, { ip: string; expires: number }>();
  private readonly launched = new Map<string, Date>();

  private constructor(
    private readonly server: http.Server,
    readonly host: string,
  ) {}

  /** Listens on `host` (the bridge's host address in the deployment). */
  static async start(opts: { host: string; port?: number }): Promise<Imds> {
    const server = http.createServer();
    const imds = new Imds(server, opts.host);
    server.on('request', (req, res) => imds.serve(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, opts.host, () => resolve());
    });
    return imds;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** The endpoint for `AWS_EC2_METADATA_SERVICE_ENDPOINT`. */
  get url(): string {
    return `http://${this.host}:${this.port}`;
  }

  addInstance(instance: ImdsInstance): void {
    this.instances.set(instance.ip, instance);
    this.launched.set(instance.ip, new Date());
  }

  /** Forgets the instance at `ip` and its tokens. */
  removeInstance(ip: string): void {
    this.instances.delete(ip);
    this.launched.delete(ip);
    for (const [token, t] of this.tokens) if (t.ip === ip) this.tokens.delete(token);
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private serve(req: http.IncomingMessage, res: http.ServerResponse): void {
    req.resume();
    req.on('end', () => {
      const [status, body, type] = this.answer(req);
      res.writeHead(status, { 'content-type': type ?? 'text/plain', 'content-length': Buffer.byteLength(body) }).end(body);
    });
  }

  private answer(req: http.IncomingMessage): [number, string, string?] {
    const ip = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    const instance = this.instances.get(ip);
    const path = new URL(req.url ?? '/', 'http://imds').pathname;
    if (!instance) return page(404, 'Not Found');
    if (path === '/latest/api/token') {
      if (req.method !== 'PUT') return page(405, 'Method Not Allowed');
      const ttl = Number(req.headers['x-aws-ec2-metadata-token-ttl-seconds']);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL_SECONDS) return page(400, 'Bad Request');
      const token = randomBytes(32).toString('base64url');
      this.tokens.set(token, { ip, expires: Date.now() + ttl * 1000 });
      return [200, token];
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return page(405, 'Method Not Allowed');
    const session = this.tokens.get(String(req.headers['x-aws-ec2-metadata-token'] ?? ''));
    if (!session || session.ip !== ip || session.expires < Date.now()) return page(401, 'Unauthorized');
    const answer = this.read(instance, path.replace(/^\/latest\//, ''));
    return answer === undefined ? page(404, 'Not Found') : [200, answer.text, answer.json ? 'application/json' : 'text/plain'];
  }

  private read(i: ImdsInstance, path: string): { text: string; json?: boolean } | undefined {
    const text = (t: string | undefined) => (t === undefined ? undefined : { text: t });
    const json = (v: unknown) => ({ text: JSON.stringify(v, null, 2), json: true });
    const tags = i.tags ?? {};
    const credentialsPath = /^meta-data\/iam\/security-credentials\/(.+)$/.exec(path);
    if (credentialsPath) {
      if (credentialsPath[1] !== i.roleName) return undefined;
      const c = i.credentials();
      return json({ Code: 'Success', LastUpdated: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), Type: 'AWS-HMAC', AccessKeyId: c.accessKeyId, SecretAccessKey: c.secretAccessKey, Token: c.sessionToken, Expiration: c.expiration.replace(/\.\d+Z$/, 'Z') });
    }
    const tag = /^meta-data\/tags\/instance\/(.+)$/.exec(path);
    if (tag) return text(Object.hasOwn(tags, tag[1]) ? tags[tag[1]] : undefined);
    switch (path.replace(/\/$/, '')) {
      case 'meta-data':
        return text(['hostname', 'iam/', 'instance-id', 'instance-type', 'local-hostname', 'local-ipv4', 'mac', 'placement/', ...(i.imageId ? ['ami-id'] : []), ...(i.tags ? ['tags/'] : [])].sort().join('\n'));
      case 'meta-data/ami-id':
        return text(i.imageId);
      case 'meta-data/instance-id':
        return text(i.instanceId);
      case 'meta-data/instance-type':
        return text(i.instanceType);
      case 'meta-data/local-ipv4':
        return text(i.ip);
      case 'meta-data/local-hostname':
      case 'meta-data/hostname':
        return text(i.localHostname);
      case 'meta-data/mac':
        return text(macOf(i.ip));
      case 'meta-data/placement':
        return text('availability-zone\nregion');
      case 'meta-data/placement/availability-zone':
        return text(i.availabilityZone);
      case 'meta-data/placement/region':
        return text(REGION);
      case 'meta-data/iam':
        return text('info\nsecurity-credentials/');
      case 'meta-data/iam/info':
        return json({ Code: 'Success', LastUpdated: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), InstanceProfileArn: `arn:${PARTITION}:iam::${ACCOUNT}:instance-profile/${i.roleName}`, InstanceProfileId: 'AIPA' + i.instanceId.replace(/\W/g, '').toUpperCase().slice(-17) });
      case 'meta-data/iam/security-credentials':
        return text(i.roleName);
      case 'meta-data/tags':
        return i.tags ? text('instance') : undefined;
      case 'meta-data/tags/instance':
        return i.tags ? text(Object.keys(tags).join('\n')) : undefined;
      case 'user-data':
        return text(i.userData);
      case 'dynamic/instance-identity/document':
        return json({
          accountId: ACCOUNT,
          architecture: 'x86_64',
          availabilityZone: i.availabilityZone,
          imageId: i.imageId ?? null,
          instanceId: i.instanceId,
          instanceType: i.instanceType,
          pendingTime: (this.launched.get(i.ip) ?? new Date()).toISOString().replace(/\.\d+Z$/, 'Z'),
          privateIp: i.ip,
          region: REGION,
          version: '2017-09-30',
        });
      default:
        return undefined;
    }
  }
}

function page(status: number, title: string): [number, string, string] {
  return [status, `<?xml version="1.0" encoding="iso-8859-1"?>\n<html><head><title>${status} - ${title}</title></head><body><h1>${status} - ${title}</h1></body></html>\n`, 'text/html'];
}
