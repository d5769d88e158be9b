/**
 * The local load balancers (sim/lb.ts): the template's spec with AWS's defaults, the haproxy
 * configuration made of it, and a real haproxy on loopback addresses in front of local test
 * servers (127.0.0.21 stands for the NLB's virtual address, 127.0.0.22 for the ALB's, and
 * 127.0.0.3x-5x for instances).
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { haproxyConfig, loadBalancingSpec, LoadBalancers, LoadBalancingError, targetServerArgs, type TargetHealth } from '../../sim/lb';
import { freePort, waitFor } from '../../sim/process';
import type { CfnResource, CfnResources, Resolve } from '../../sim/types';
import { selfSignedServerCert, type TlsKeyPair } from '../../runtime/tlsca';

const NLB_ADDRESS = '127.0.0.21';
const ALB_ADDRESS = '127.0.0.22';
const TIME_SCALE = 20;

// ---------------------------------------------------------------- template fixtures (the synthesized shapes)

const ref = (id: string) => ({ Ref: id });
const attributes = (pairs: Record<string, string>) => Object.entries(pairs).map(([Key, Value]) => ({ Key, Value }));

function loadBalancer(type: 'network' | 'application', extra: Record<string, unknown> = {}): CfnResource {
  return { Type: 'AWS::ElasticLoadBalancingV2::LoadBalancer', Properties: { Type: type, Scheme: 'internet-facing', Subnets: [ref('Subnet1')], ...extra } };
}

function listener(lb: string, port: number, protocol: string, action: Record<string, unknown>, extra: Record<string, unknown> = {}): CfnResource {
  return { Type: 'AWS::ElasticLoadBalancingV2::Listener', Properties: { LoadBalancerArn: ref(lb), Port: port, Protocol: protocol, DefaultActions: [action], ...extra } };
}

const forward = (group: string) => ({ Type: 'forward', TargetGroupArn: ref(group) });

function targetGroup(protocol: string, port: number, extra: Record<string, unknown> = {}): CfnResource {
  return { Type: 'AWS::ElasticLoadBalancingV2::TargetGroup', Properties: { Port: port, Protocol: protocol, TargetType: 'instance', VpcId: ref('Vpc'), ...extra } };
}

/** Resolves what the fixtures use, as sim/template.ts does: Ref is the ARN (load balancers, listeners, target groups), GetAtt DNSName the virtual address. */
function resolverOf(resources: CfnResources, addresses: Record<string, string>): Resolve {
  const arnOf = (id: string) => {
    const kind = { LoadBalancer: 'loadbalancer', Listener: 'listener', TargetGroup: 'targetgroup' }[resources[id]?.Type.split('::')[2] ?? ''];
    if (!kind) throw new Error(`no ARN for ${id}`);
    return `arn:aws:elasticloadbalancing:eu-west-1:123456789012:${kind}/${id}/0123456789abcdef`;
  };
  const resolve: Resolve = (value) => {
    if (Array.isArray(value)) return value.map(resolve);
    if (value === null || typeof value !== 'object') return value;
    const v = value as Record<string, any>;
    if ('Ref' in v) return arnOf(v.Ref);
    if ('Fn::GetAtt' in v) return addresses[v['Fn::GetAtt'][0]];
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, resolve(x)]));
  };
  return resolve;
}

const specOf = (resources: CfnResources) => loadBalancingSpec(resources, resolverOf(resources, { Nlb: NLB_ADDRESS, Alb: ALB_ADDRESS }));

// ---------------------------------------------------------------- the spec and the configuration (pure)

describe('the load balancers of a template', () => {
  test('GIVEN target groups without health-check settings THEN AWS defaults apply, per kind of load balancer', () => {
    const spec = specOf({
      Nlb: loadBalancer('network'),
      Alb: loadBalancer('application'),
      Tcp: targetGroup('TCP', 3025),
      HttpChecked: targetGroup('TCP', 3080, { HealthCheckProtocol: 'HTTP' }),
      Web: targetGroup('HTTPS', 3080),
      TcpListener: listener('Nlb', 3025, 'TCP', forward('Tcp')),
      WebListener: listener('Alb', 443, 'HTTPS', forward('Web'), { Certificates: [{ CertificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/x' }] }),
    });
    const group = (id: string) => spec.targetGroups.find((g) => g.logicalId === id)!;
    // NLB TCP: interval 30 s, thresholds 5/2, timeout 10 s, TCP on the traffic port.
    expect(group('Tcp')).toMatchObject({
      kind: 'network',
      deregistrationDelaySeconds: 300,
      closeConnectionsWhenUnhealthy: true,
      healthCheck: { protocol: 'TCP', port: 'traffic-port', intervalSeconds: 30, timeoutSeconds: 10, healthyThreshold: 5, unhealthyThreshold: 2 },
    });
    // NLB with an HTTP check: 6 s timeout, 200-399 succeed.
    expect(group('HttpChecked').healthCheck).toMatchObject({ protocol: 'HTTP', path: '/', timeoutSeconds: 6, successCodes: '200-399' });
    // ALB: HTTP checks on / expecting 200, 5 s timeout, thresholds 5/2.
    expect(group('Web')).toMatchObject({
      kind: 'application',
      healthCheck: { protocol: 'HTTP', port: 'traffic-port', path: '/', intervalSeconds: 30, timeoutSeconds: 5, healthyThreshold: 5, unhealthyThreshold: 2, successCodes: '200' },
    });
    expect(spec.loadBalancers.map((lb) => [lb.logicalId, lb.address, lb.idleTimeoutSeconds])).toEqual([
      ['Nlb', NLB_ADDRESS, 350],
      ['Alb', ALB_ADDRESS, 60],
    ]);
    expect(spec.loadBalancers[1].listeners[0]).toMatchObject({ protocol: 'HTTPS', port: 443, minTlsVersion: 'TLSv1.2', action: { type: 'forward', targetGroups: [{ arn: group('Web').arn, weight: 1 }] } });
  });

  test("GIVEN the stack's web target group THEN its health check is the template's: HTTPS /webapi/ping on 3080 every 15 s, 2 up, 3 down", () => {
    const spec = specOf({
      Nlb: loadBalancer('network'),
      Web: targetGroup('TCP', 3080, {
        HealthCheckIntervalSeconds: 15,
        HealthCheckPath: '/webapi/ping',
        HealthCheckPort: '3080',
        HealthCheckProtocol: 'HTTPS',
        HealthyThresholdCount: 2,
        UnhealthyThresholdCount: 3,
        TargetGroupAttributes: attributes({ 'deregistration_delay.timeout_seconds': '30' }),
      }),
      Port443: listener('Nlb', 443, 'TCP', forward('Web')),
    });
    const [web] = spec.targetGroups;
    expect(web.healthCheck).toEqual({ protocol: 'HTTPS', port: 3080, path: '/webapi/ping', intervalSeconds: 15, timeoutSeconds: 10, healthyThreshold: 2, unhealthyThreshold: 3, successCodes: '200-399' });
    expect(web.deregistrationDelaySeconds).toBe(30);
  });

  test('GIVEN a changed interval or thresholds THEN the generated server lines change; the time scale divides intervals down to a floor', () => {
    const tcp = (props: Record<string, unknown>) => specOf({ Nlb: loadBalancer('network'), G: targetGroup('TCP', 3025, props), L: listener('Nlb', 3025, 'TCP', forward('G')) }).targetGroups[0];
    const args = (props: Record<string, unknown>, timeScale = 1) => targetServerArgs(tcp(props), '10.231.0.5', 3025, timeScale).join(' ');
    expect(args({ HealthCheckIntervalSeconds: 10, HealthyThresholdCount: 2, UnhealthyThresholdCount: 2 })).toMatch(/check inter 10000 .* rise 2 fall 2 port 3025/);
    expect(args({ HealthCheckIntervalSeconds: 20, HealthyThresholdCount: 4, UnhealthyThresholdCount: 3 })).toMatch(/check inter 20000 .* rise 4 fall 3 port 3025/);
    expect(args({ HealthCheckIntervalSeconds: 10 }, 10)).toMatch(/check inter 1000 /);
    expect(args({ HealthCheckIntervalSeconds: 5 }, 1000)).toMatch(/check inter 200 /);
    expect(args({})).toMatch(/check inter 30000 .* rise 5 fall 2 /);
    // An HTTPS check on another port: TLS without verification, on that port.
    expect(args({ HealthCheckProtocol: 'HTTPS', HealthCheckPort: '3080' })).toMatch(/port 3080 check-ssl verify none/);
  });

  test('GIVEN HTTP checks, an HTTPS listener and a timeout THEN the config carries them, scaled', () => {
    const resources = {
      Alb: loadBalancer('application', { LoadBalancerAttributes: attributes({ 'idle_timeout.timeout_seconds': '120' }) }),
      Web: targetGroup('HTTPS', 3080, { HealthCheckProtocol: 'HTTPS', HealthCheckPath: '/webapi/ping', HealthCheckTimeoutSeconds: 4, Matcher: { HttpCode: '200,204' } }),
      Https: listener('Alb', 443, 'HTTPS', forward('Web'), { SslPolicy: 'ELBSecurityPolicy-TLS13-1-2-2021-06' }),
    };
    const config = haproxyConfig(specOf(resources), { socket: '/run/x.sock', certificateFile: (id) => `/certs/${id}.pem`, timeScale: 2 });
    expect(config).toContain(`bind ${ALB_ADDRESS}:443 ssl crt /certs/Https.pem ssl-min-ver TLSv1.2 alpn h2,http/1.1`);
    expect(config).toContain('http-check send meth GET uri /webapi/ping ver HTTP/1.1');
    expect(config).toContain('http-check expect status 200,204');
    expect(config).toContain('timeout check 2000ms');
    expect(config).toContain('timeout client 120s');
    expect(config).toContain('option forwardfor');
  });

  test('GIVEN weighted forwarding and redirects THEN haproxy accepts the config, which draws once per connection or request', async () => {
    // GIVEN
    const weighted = (groups: [string, number][]) => ({ Type: 'forward', ForwardConfig: { TargetGroups: groups.map(([g, Weight]) => ({ TargetGroupArn: ref(g), Weight })) } });
    const resources = {
      Nlb: loadBalancer('network'),
      Alb: loadBalancer('application'),
      A: targetGroup('TCP', 3025),
      B: targetGroup('TCP', 3026),
      C: targetGroup('HTTP', 8080),
      D: targetGroup('HTTP', 8081),
      Tcp: listener('Nlb', 3025, 'TCP', weighted([['A', 1], ['B', 3]])),
      Http: listener('Alb', 80, 'HTTP', weighted([['C', 2], ['D', 0]])),
      Split: listener('Alb', 81, 'HTTP', weighted([['C', 1], ['D', 1]])),
      Moved: listener('Alb', 82, 'HTTP', { Type: 'redirect', RedirectConfig: { Host: 'www.#{host}', Query: 'from=old', StatusCode: 'HTTP_302' } }),
    };
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'lb-config-'));
    try {
      const file = path.join(scratch, 'haproxy.cfg');
      const config = haproxyConfig(specOf(resources), { socket: path.join(scratch, 's.sock'), certificateFile: () => '', timeScale: 1 });
      fs.writeFileSync(file, config);
      // WHEN
      const check = spawnSync('haproxy', ['-c', '-f', file], { encoding: 'utf8' });
      // THEN
      expect(check.stderr + check.stdout).toMatch(/Configuration file is valid/);
      expect(check.status).toBe(0);
      expect(config).toContain('tcp-request content set-var(sess.tg) rand(4)\n  use_backend A if { var(sess.tg) -m int lt 1 }\n  default_backend B');
      expect(config).toMatch(/frontend Http\n(.*\n)*?  default_backend C\n/);
      expect(config).toContain('http-request set-var(txn.tg) rand(2)');
      expect(config).toContain(`http-request redirect location '%[ssl_fc,iif(https,http)]://www.%[req.hdr(host),field(1,:)]:%[dst_port]/%[path,regsub(^/,)]?from=old' code 302`);
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  });

  test('GIVEN routing the local deployment does not emulate THEN the spec refuses it with a reason', () => {
    const base = { Nlb: loadBalancer('network'), G: targetGroup('TCP', 3025) };
    const refusal = (resources: CfnResources) => {
      try {
        specOf(resources);
      } catch (err) {
        return err as LoadBalancingError;
      }
      throw new Error('accepted');
    };
    expect(refusal({ ...base, L: listener('Nlb', 53, 'UDP', forward('G')) })).toMatchObject({ reason: 'unsupported', message: expect.stringMatching(/listener L \(UDP/) });
    expect(refusal({ ...base, R: { Type: 'AWS::ElasticLoadBalancingV2::ListenerRule', Properties: {} } })).toMatchObject({ reason: 'unsupported' });
    expect(refusal({ ...base, L: listener('Nlb', 3025, 'TCP', forward('Missing')) })).toBeInstanceOf(Error);
  });
});

// ---------------------------------------------------------------- a running haproxy

/** A TCP target: greets each connection with its name, then echoes. */
class TcpTarget {
  connections = 0;
  private readonly sockets = new Set<net.Socket>();
  private readonly server: net.Server;

  private constructor(readonly name: string) {
    this.server = net.createServer((s) => {
      this.connections++;
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => undefined);
      s.write(`${name}\n`);
      s.pipe(s);
    });
  }

  static async listen(name: string, address: string, port: number): Promise<TcpTarget> {
    const t = new TcpTarget(name);
    await new Promise<void>((resolve) => t.server.listen(port, address, resolve));
    return t;
  }

  /** Stops answering: no more connections, and the open ones end. */
  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** An HTTP(S) target: its check path answers `readyStatus`, anything else its name; remembers the requests. */
class HttpTarget {
  readyStatus = 200;
  checkPath = '/ready';
  readonly requests: http.IncomingMessage[] = [];
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    readonly name: string,
    private readonly server: http.Server,
  ) {
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.requests.push(req);
      if (req.url === this.checkPath) res.writeHead(this.readyStatus).end();
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name, headers: req.headers }));
    });
    server.on('connection', (s: net.Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    // WebSocket-style upgrade: agree, then echo.
    server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
      const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      socket.pipe(socket);
    });
  }

  static async listen(name: string, address: string, port: number, tls?: TlsKeyPair): Promise<HttpTarget> {
    const t = new HttpTarget(name, tls ? https.createServer({ cert: tls.cert, key: tls.key }) : http.createServer());
    await new Promise<void>((resolve) => t.server.listen(port, address, resolve));
    return t;
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Connects to a listener and reads the greeting: which target served the connection. */
function greeting(port: number, address = NLB_ADDRESS): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, address);
    let data = '';
    s.setEncoding('utf8');
    s.on('data', (d) => {
      data += d;
      if (data.includes('\n')) {
        s.destroy();
        resolve(data.trim());
      }
    });
    s.on('error', reject);
    s.on('close', () => reject(new Error(`connection to ${address}:${port} closed with ${JSON.stringify(data)}`)));
  });
}

/** GET through a TCP listener in front of HTTP targets: the name of the target that answered. */
function nameVia(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: NLB_ADDRESS, port, path: '/', agent: false }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(JSON.parse(body).name));
      })
      .on('error', reject);
  });
}

async function names(n: number, ask: () => Promise<string>): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < n; i++) seen.push(await ask());
  return seen;
}

describe('haproxy standing in for the load balancers', () => {
  let dir: string;
  let lbs: LoadBalancers;
  const logLines: string[] = [];
  const targets: { close(): Promise<void> }[] = [];
  const ports: Record<string, number> = {};
  let lbCert: TlsKeyPair;
  let targetCert: TlsKeyPair;
  let resources: CfnResources;
  const arn = (group: string) => lbs.spec.targetGroups.find((g) => g.logicalId === group)!.arn;
  const healthOf = async (group: string, target: string): Promise<TargetHealth | undefined> => (await lbs.health(arn(group))).get(target);
  const until = (group: string, target: string, state: TargetHealth | undefined) =>
    waitFor(`${target} in ${group} to be ${state ?? 'gone'}`, async () => (await healthOf(group, target)) === state);
  const tcpTarget = async (name: string, address: string, port: number) => {
    const t = await TcpTarget.listen(name, address, port);
    targets.push(t);
    return t;
  };
  const httpTarget = async (name: string, address: string, port: number, tls?: TlsKeyPair) => {
    const t = await HttpTarget.listen(name, address, port, tls);
    targets.push(t);
    return t;
  };

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lb-'));
    for (const p of ['forward', 'forwardTarget', 'fail', 'failTarget', 'drain', 'drainTarget', 'again', 'againTarget', 'slow', 'slowTarget', 'open', 'openTarget', 'web', 'webTarget', 'webCheck', 'https', 'httpsTarget', 'http']) ports[p] = await freePort();
    lbCert = await selfSignedServerCert(['lb.test']);
    targetCert = await selfSignedServerCert(['instance.internal']);
    const fast = { HealthCheckProtocol: 'TCP', HealthCheckIntervalSeconds: 5, HealthyThresholdCount: 2, UnhealthyThresholdCount: 2 };
    resources = {
      Nlb: loadBalancer('network'),
      Alb: loadBalancer('application', { LoadBalancerAttributes: attributes({ 'routing.http.drop_invalid_header_fields.enabled': 'true' }) }),
      ForwardGroup: targetGroup('TCP', ports.forwardTarget, fast),
      FailGroup: targetGroup('TCP', ports.failTarget, fast),
      DrainGroup: targetGroup('TCP', ports.drainTarget, { ...fast, TargetGroupAttributes: attributes({ 'deregistration_delay.timeout_seconds': '60' }) }),
      AgainGroup: targetGroup('TCP', ports.againTarget, { ...fast, TargetGroupAttributes: attributes({ 'deregistration_delay.timeout_seconds': '60' }) }),
      // Checked every second here; ten failures before an initial target is judged unhealthy.
      SlowGroup: targetGroup('TCP', ports.slowTarget, { HealthCheckProtocol: 'HTTP', HealthCheckPath: '/ready', HealthCheckIntervalSeconds: 20, HealthyThresholdCount: 2, UnhealthyThresholdCount: 10 }),
      OpenGroup: targetGroup('TCP', ports.openTarget, { ...fast, HealthCheckProtocol: 'HTTP', HealthCheckPath: '/ready' }),
      WebGroup: targetGroup('TCP', ports.webTarget, { ...fast, HealthCheckProtocol: 'HTTPS', HealthCheckPath: '/webapi/ping', HealthCheckPort: String(ports.webCheck) }),
      AlbGroup: targetGroup('HTTPS', ports.httpsTarget, { ...fast, HealthCheckProtocol: 'HTTPS', HealthCheckPath: '/ready', TargetGroupAttributes: attributes({ 'deregistration_delay.timeout_seconds': '20' }) }),
      Forward: listener('Nlb', ports.forward, 'TCP', forward('ForwardGroup')),
      Fail: listener('Nlb', ports.fail, 'TCP', forward('FailGroup')),
      Drain: listener('Nlb', ports.drain, 'TCP', forward('DrainGroup')),
      Again: listener('Nlb', ports.again, 'TCP', forward('AgainGroup')),
      Slow: listener('Nlb', ports.slow, 'TCP', forward('SlowGroup')),
      Open: listener('Nlb', ports.open, 'TCP', forward('OpenGroup')),
      Web: listener('Nlb', ports.web, 'TCP', forward('WebGroup')),
      Https: listener('Alb', ports.https, 'HTTPS', forward('AlbGroup'), { SslPolicy: 'ELBSecurityPolicy-TLS13-1-2-2021-06', Certificates: [{ CertificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/x' }] }),
      Http: listener('Alb', ports.http, 'HTTP', { Type: 'redirect', RedirectConfig: { Protocol: 'HTTPS', Port: String(ports.https), StatusCode: 'HTTP_301' } }),
    };
    lbs = await LoadBalancers.start({
      dir,
      resources,
      resolve: resolverOf(resources, { Nlb: NLB_ADDRESS, Alb: ALB_ADDRESS }),
      certificates: (id) => (id === 'Https' ? lbCert : undefined),
      timeScale: TIME_SCALE,
      log: (line) => logLines.push(line),
    });
  });

  afterAll(async () => {
    await lbs?.close();
    await Promise.all(targets.map((t) => t.close()));
    if (dir) {
      // close() removes what it wrote: nothing may be left when the directory goes.
      expect(fs.readdirSync(dir)).toEqual([]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('GIVEN the listeners THEN haproxy took the config without a warning, and describe() shows each at its address with its target groups', () => {
    expect(logLines.filter((l) => /config/.test(l))).toEqual([]);
    expect(lbs.describe()).toContainEqual({ loadBalancer: 'Nlb', type: 'network', listener: 'Web', protocol: 'TCP', address: `${NLB_ADDRESS}:${ports.web}`, targetGroups: ['WebGroup'] });
    expect(lbs.describe()).toContainEqual({ loadBalancer: 'Alb', type: 'application', listener: 'Http', protocol: 'HTTP', address: `${ALB_ADDRESS}:${ports.http}`, targetGroups: [] });
  });

  test('GIVEN two healthy targets WHEN clients connect to the TCP listener THEN both serve connections', async () => {
    // GIVEN
    await tcpTarget('a', '127.0.0.31', ports.forwardTarget);
    await tcpTarget('b', '127.0.0.32', ports.forwardTarget);
    await lbs.register(arn('ForwardGroup'), 'i-a', '127.0.0.31');
    await lbs.register(arn('ForwardGroup'), 'i-b', '127.0.0.32');
    await until('ForwardGroup', 'i-a', 'healthy');
    await until('ForwardGroup', 'i-b', 'healthy');
    // WHEN
    const seen = await names(4, () => greeting(ports.forward));
    // THEN
    expect(new Set(seen)).toEqual(new Set(['a', 'b']));
  });

  test('GIVEN a target that stops answering its checks THEN it turns unhealthy and gets no new connections', async () => {
    // GIVEN
    const a = await tcpTarget('a', '127.0.0.33', ports.failTarget);
    const b = await tcpTarget('b', '127.0.0.34', ports.failTarget);
    await lbs.register(arn('FailGroup'), 'i-a', '127.0.0.33');
    await lbs.register(arn('FailGroup'), 'i-b', '127.0.0.34');
    await until('FailGroup', 'i-a', 'healthy');
    await until('FailGroup', 'i-b', 'healthy');
    // WHEN
    await a.close();
    await until('FailGroup', 'i-a', 'unhealthy');
    const before = b.connections;
    // THEN every new connection goes to the healthy one, and haproxy's verdict reached the log.
    expect(await names(4, () => greeting(ports.fail))).toEqual(['b', 'b', 'b', 'b']);
    expect(b.connections).toBe(before + 4);
    expect(logLines.join('\n')).toMatch(/FailGroup\/i-a is DOWN/);
    expect(await healthOf('FailGroup', 'i-b')).toBe('healthy');
  });

  test('GIVEN a new target THEN it is initial, without traffic, until it passes its checks, then healthy', async () => {
    // GIVEN one healthy target, and a new one whose checks fail for now
    await httpTarget('old', '127.0.0.35', ports.slowTarget);
    await lbs.register(arn('SlowGroup'), 'i-old', '127.0.0.35');
    await until('SlowGroup', 'i-old', 'healthy');
    const fresh = await httpTarget('new', '127.0.0.36', ports.slowTarget);
    fresh.readyStatus = 503;
    // WHEN
    await lbs.register(arn('SlowGroup'), 'i-new', '127.0.0.36');
    // THEN it is initial and connections go to the healthy one
    expect(await healthOf('SlowGroup', 'i-new')).toBe('initial');
    expect(await names(3, () => nameVia(ports.slow))).toEqual(['old', 'old', 'old']);
    expect(await healthOf('SlowGroup', 'i-new')).toBe('initial');
    // WHEN its checks pass THEN it becomes healthy and serves
    fresh.readyStatus = 200;
    await until('SlowGroup', 'i-new', 'healthy');
    expect(new Set(await names(4, () => nameVia(ports.slow)))).toEqual(new Set(['old', 'new']));
    // The checks were AWS's: GET on the path, HTTP/1.1 with the target's address as Host.
    const check = fresh.requests.find((r) => r.url === '/ready')!;
    expect(check.method).toBe('GET');
    expect(check.headers.host).toBe(`127.0.0.36:${ports.slowTarget}`);
    expect(check.headers['user-agent']).toBe('ELB-HealthChecker/2.0');
  });

  test('GIVEN no healthy target in a group THEN traffic goes to the registered ones (AWS fails open)', async () => {
    // GIVEN
    const sick = await httpTarget('sick', '127.0.0.37', ports.openTarget);
    sick.readyStatus = 500;
    await lbs.register(arn('OpenGroup'), 'i-sick', '127.0.0.37');
    // WHEN
    await until('OpenGroup', 'i-sick', 'unhealthy');
    // THEN
    expect(await nameVia(ports.open)).toBe('sick');
  });

  test('GIVEN an HTTPS health check on another port and path with an untrusted certificate THEN the target is checked there and serves TCP', async () => {
    // GIVEN: target a answers /webapi/ping on the check port; target b answers 404 there
    await tcpTarget('web-a', '127.0.0.41', ports.webTarget);
    const checkA = await httpTarget('check-a', '127.0.0.41', ports.webCheck, targetCert);
    await tcpTarget('web-b', '127.0.0.42', ports.webTarget);
    const checkB = await httpTarget('check-b', '127.0.0.42', ports.webCheck, targetCert);
    checkA.checkPath = checkB.checkPath = '/webapi/ping';
    checkB.readyStatus = 404;
    // WHEN
    await lbs.register(arn('WebGroup'), 'i-a', '127.0.0.41');
    await lbs.register(arn('WebGroup'), 'i-b', '127.0.0.42');
    // THEN
    await until('WebGroup', 'i-a', 'healthy');
    await until('WebGroup', 'i-b', 'unhealthy');
    expect(checkA.requests.map((r) => r.url)).toContain('/webapi/ping');
    expect(await names(3, () => greeting(ports.web))).toEqual(['web-a', 'web-a', 'web-a']);
  });

  test('GIVEN the ALB HTTPS listener THEN it ends TLS with the given certificate and forwards to the HTTPS target with X-Forwarded-*; upgrades pass', async () => {
    // GIVEN
    const target = await httpTarget('web', '127.0.0.51', ports.httpsTarget, targetCert);
    await lbs.register(arn('AlbGroup'), 'i-web', '127.0.0.51');
    await until('AlbGroup', 'i-web', 'healthy');
    // WHEN a client that trusts only the listener's certificate asks
    const { body, clientAddress, protocol } = await new Promise<{ body: any; clientAddress: string; protocol: string }>((resolve, reject) => {
      const req = https.get({ host: ALB_ADDRESS, port: ports.https, path: '/hello', servername: 'lb.test', ca: lbCert.cert, agent: false }, (res) => {
        let data = '';
        res.on('data', (d) => (data += d));
        res.on('end', () => resolve({ body: JSON.parse(data), clientAddress: (req.socket as net.Socket).localAddress!, protocol: (req.socket as import('node:tls').TLSSocket).getProtocol()! }));
      });
      req.on('error', reject);
    });
    // THEN
    expect(body.name).toBe('web');
    expect(['TLSv1.2', 'TLSv1.3']).toContain(protocol);
    expect(body.headers['x-forwarded-for']).toBe(clientAddress);
    expect(body.headers['x-forwarded-proto']).toBe('https');
    expect(body.headers['x-forwarded-port']).toBe(String(ports.https));
    expect(target.requests.some((r) => r.url === '/hello')).toBe(true);

    // WHEN a WebSocket-style upgrade goes through THEN bytes flow both ways after it
    const echoed = await new Promise<string>((resolve, reject) => {
      const req = https.request({ host: ALB_ADDRESS, port: ports.https, path: '/ws', servername: 'lb.test', ca: lbCert.cert, agent: false, headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Key': randomBytes(16).toString('base64'), 'Sec-WebSocket-Version': '13' } });
      req.on('upgrade', (_res, socket: net.Socket) => {
        socket.once('data', (d) => {
          socket.destroy();
          resolve(d.toString());
        });
        socket.write('ping');
      });
      req.on('response', (res) => reject(new Error(`no upgrade: ${res.statusCode}`)));
      req.on('error', reject);
      req.end();
    });
    expect(echoed).toBe('ping');
  });

  test('GIVEN an ALB target that served keep-alive requests WHEN deregistered THEN it is gone after the delay', async () => {
    // GIVEN
    const target = await httpTarget('web2', '127.0.0.52', ports.httpsTarget, targetCert);
    await lbs.register(arn('AlbGroup'), 'i-web2', '127.0.0.52');
    await until('AlbGroup', 'i-web2', 'healthy');
    const agent = new https.Agent({ keepAlive: true, ca: lbCert.cert, servername: 'lb.test' });
    try {
      const get = () =>
        new Promise<string>((resolve, reject) => {
          https
            .get({ host: ALB_ADDRESS, port: ports.https, path: '/', agent }, (res) => {
              let data = '';
              res.on('data', (d) => (data += d));
              res.on('end', () => resolve(JSON.parse(data).name));
            })
            .on('error', reject);
        });
      expect(await names(4, get)).toContain('web2');
      // WHEN
      await lbs.deregister(arn('AlbGroup'), 'i-web2');
      // THEN requests go elsewhere at once, and the target is gone after 20 s / 20
      expect(await names(3, get)).toEqual(['web', 'web', 'web']);
      await until('AlbGroup', 'i-web2', undefined);
      expect(target.requests.filter((r) => r.url === '/').length).toBeGreaterThan(0);
    } finally {
      agent.destroy();
    }
  });

  test('GIVEN the ALB HTTP listener with a redirect THEN it answers 301 to the HTTPS port, keeping host, path and query', async () => {
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      http.get({ host: ALB_ADDRESS, port: ports.http, path: '/web/login?next=%2F', headers: { host: 'lb.test' }, agent: false }, resolve).on('error', reject);
    });
    res.resume();
    expect(res.statusCode).toBe(301);
    expect(res.headers.location).toBe(`https://lb.test:${ports.https}/web/login?next=%2F`);
  });

  test('GIVEN a deregistered target THEN it gets no new connections, its open one drains for the delay, then it is gone', async () => {
    // GIVEN a connection open to a, then b healthy beside it
    const a = await tcpTarget('a', '127.0.0.38', ports.drainTarget);
    await lbs.register(arn('DrainGroup'), 'i-a', '127.0.0.38');
    await until('DrainGroup', 'i-a', 'healthy');
    const open = net.connect(ports.drain, NLB_ADDRESS);
    open.setEncoding('utf8');
    let received = '';
    open.on('data', (d) => (received += d));
    const closed = new Promise((resolve) => open.on('close', resolve));
    open.on('error', () => undefined);
    await waitFor('the greeting of a', () => received === 'a\n');
    const b = await tcpTarget('b', '127.0.0.39', ports.drainTarget);
    await lbs.register(arn('DrainGroup'), 'i-b', '127.0.0.39');
    await until('DrainGroup', 'i-b', 'healthy');
    const aBefore = a.connections;
    try {
      // WHEN
      await lbs.deregister(arn('DrainGroup'), 'i-a');
      // THEN
      expect(await healthOf('DrainGroup', 'i-a')).toBe('draining');
      expect(await names(4, () => greeting(ports.drain))).toEqual(['b', 'b', 'b', 'b']);
      expect(a.connections).toBe(aBefore);
      open.write('still there\n');
      await waitFor('the open connection to echo', () => received === 'a\nstill there\n');
      // After the delay (60 s / 20) its connection is closed and it is gone.
      await until('DrainGroup', 'i-a', undefined);
      await closed;
      expect(b.connections).toBeGreaterThanOrEqual(4);
    } finally {
      open.destroy();
    }
  });

  test('GIVEN a draining target WHEN registered again THEN it is checked afresh and serves; other registrations are refused with a reason', async () => {
    // GIVEN
    await tcpTarget('again', '127.0.0.40', ports.againTarget);
    await lbs.register(arn('AgainGroup'), 'i-again', '127.0.0.40');
    await until('AgainGroup', 'i-again', 'healthy');
    await lbs.deregister(arn('AgainGroup'), 'i-again');
    expect(await healthOf('AgainGroup', 'i-again')).toBe('draining');
    // WHEN
    await lbs.register(arn('AgainGroup'), 'i-again', '127.0.0.40');
    // THEN
    expect(await healthOf('AgainGroup', 'i-again')).not.toBe('draining');
    await until('AgainGroup', 'i-again', 'healthy');
    expect(await greeting(ports.again)).toBe('again');
    // The same target elsewhere, an unknown group or target: refused, naming why.
    await expect(lbs.register(arn('AgainGroup'), 'i-again', '127.0.0.49')).rejects.toMatchObject({ reason: 'bad_parameter' });
    await expect(lbs.register('arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/nope/1', 'i-x', '127.0.0.49')).rejects.toMatchObject({ reason: 'not_found' });
    await expect(lbs.deregister(arn('AgainGroup'), 'i-unknown')).rejects.toMatchObject({ reason: 'not_found' });
    await expect(lbs.register(arn('AgainGroup'), 'i x', '127.0.0.49')).rejects.toMatchObject({ reason: 'bad_parameter' });
  });
});
