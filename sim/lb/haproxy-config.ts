/**
 * The haproxy configuration that stands in for the template's load balancers, from their spec.
 * Pure text: one frontend per listener (bound to its load balancer's address), one backend per
 * target group with the group's health check; targets are not in the file, they are added at run
 * time with the `add server` arguments built here (`targetServerArgs`, `failOpenServerArgs`).
 *
 * How AWS's behaviour maps onto haproxy:
 * - NLB TCP listener: `mode tcp`. ALB HTTP/HTTPS listener: `mode http` with X-Forwarded-For
 *   (`option forwardfor`), X-Forwarded-Proto and X-Forwarded-Port; HTTPS ends TLS with the
 *   certificate file given for the listener (standing in for ACM) at the policy's minimum version
 *   (at least TLS 1.2), ALPN h2 and http/1.1; WebSocket upgrades pass as haproxy tunnels them.
 * - HTTPS target groups: `ssl verify none` (an ALB does not verify targets' certificates).
 * - Health checks: `check inter rise fall port`, HTTP/HTTPS checks with `option httpchk`
 *   (`GET <path>` HTTP/1.1 with `Host: <target>:<port>` and ELB's User-Agent) and
 *   `http-check expect status <codes>` (haproxy takes AWS's "200,202"/"200-399" syntax as is);
 *   HTTPS checks `check-ssl verify none`. The check port is always explicit, so a check never
 *   inherits TLS from the traffic.
 * - Fail open: every target also gets a `backup` twin without checks, and `option allbackups`:
 *   when no target of a group is healthy, haproxy uses the twins, i.e. all registered targets.
 * - Time scale: health-check intervals and timeouts (and the deregistration delay, applied by
 *   the caller) are divided by `timeScale`, never below `MIN_SCALED_MS`. Idle timeouts are not
 *   scaled: they are about how long a quiet connection lives, not how long anyone waits.
 */
import { DEFAULT_IDLE_TIMEOUT_SECONDS, type HealthCheckSpec, type ListenerSpec, type LoadBalancerSpec, type LoadBalancingSpec, type RedirectSpec, type TargetGroupSpec } from './spec';
import { LoadBalancingError } from './errors';

/** The floor of scaled durations: checks more often than this would load the machine, not speed the test. */
export const MIN_SCALED_MS = 200;

/** The suffix of a target's fail-open twin among a backend's servers. */
export const FAIL_OPEN_SUFFIX = '.failopen';

/** `seconds` of the template as milliseconds at `timeScale`, never below the floor. */
export function scaledMs(seconds: number, timeScale: number): number {
  return Math.max(MIN_SCALED_MS, Math.round((seconds * 1000) / timeScale));
}

export interface ConfigOptions {
  /** The stats socket (runtime API) path. */
  readonly socket: string;
  /** The PEM file (certificate and key) of an HTTPS listener. */
  readonly certificateFile: (listenerLogicalId: string) => string;
  readonly timeScale: number;
}

/** haproxy.cfg for the whole spec. */
export function haproxyConfig(spec: LoadBalancingSpec, opts: ConfigOptions): string {
  const groups = new Map(spec.targetGroups.map((g) => [g.arn, g]));
  const sections = [
    section('global', [
      // One thread: the machine is small, and runtime commands on one line then run back to back.
      'nbthread 1',
      `stats socket ${opts.socket} mode 600 level admin`,
    ]),
    section('defaults', ['timeout connect 5s']),
    ...spec.loadBalancers.flatMap((lb) => lb.listeners.map((l) => frontend(lb, l, groups, opts))),
    ...spec.targetGroups.map((g) => backend(g, spec, opts.timeScale)),
  ];
  return sections.join('\n');
}

function section(header: string, lines: string[]): string {
  return [header, ...lines.map((l) => `  ${l}`), ''].join('\n');
}

function frontend(lb: LoadBalancerSpec, l: ListenerSpec, groups: Map<string, TargetGroupSpec>, opts: ConfigOptions): string {
  const http = l.protocol !== 'TCP';
  const tls = l.protocol === 'HTTPS' ? ` ssl crt ${opts.certificateFile(l.logicalId)} ssl-min-ver ${l.minTlsVersion} alpn h2,http/1.1` : '';
  const lines = [`mode ${http ? 'http' : 'tcp'}`, `bind ${lb.address}:${l.port}${tls}`, `timeout client ${lb.idleTimeoutSeconds}s`];
  if (http) {
    lines.push(
      'option forwardfor',
      `http-request set-header X-Forwarded-Proto ${l.protocol.toLowerCase()}`,
      `http-request set-header X-Forwarded-Port ${l.port}`,
    );
  }
  const action = l.action;
  if (action.type === 'redirect') lines.push(...redirectRules(action));
  else lines.push(...forwardRules(action.targetGroups.map((t) => ({ backend: groups.get(t.arn)!.logicalId, weight: t.weight })), http));
  return section(`frontend ${l.logicalId}`, lines);
}

/** Forwarding to one backend, or to several by weight (one random draw per connection or request). */
function forwardRules(targets: { backend: string; weight: number }[], http: boolean): string[] {
  if (targets.length === 1) return [`default_backend ${targets[0].backend}`];
  const total = targets.reduce((n, t) => n + t.weight, 0);
  const variable = http ? 'txn.tg' : 'sess.tg';
  const rules = [`${http ? 'http-request' : 'tcp-request content'} set-var(${variable}) rand(${total})`];
  let upTo = 0;
  for (const t of targets.slice(0, -1)) {
    upTo += t.weight;
    rules.push(`use_backend ${t.backend} if { var(${variable}) -m int lt ${upTo} }`);
  }
  return [...rules, `default_backend ${targets[targets.length - 1].backend}`];
}

/** AWS's redirect placeholders as haproxy sample expressions. */
const PLACEHOLDERS: Record<string, string> = {
  '#{protocol}': '%[ssl_fc,iif(https,http)]',
  '#{host}': '%[req.hdr(host),field(1,:)]',
  '#{port}': '%[dst_port]',
  '#{path}': '%[path,regsub(^/,)]',
  '#{query}': '%[query]',
};

function redirectFormat(value: string, what: string): string {
  if (/['%\s]/.test(value)) throw new LoadBalancingError('unsupported', `redirect ${what} ${JSON.stringify(value)}: quotes, percent signs and spaces are not emulated`);
  return value.replace(/#\{(protocol|host|port|path|query)\}/g, (p) => PLACEHOLDERS[p]);
}

function redirectRules(r: RedirectSpec): string[] {
  const protocol = r.protocol === '#{protocol}' ? r.protocol : r.protocol.toLowerCase();
  const base = `${redirectFormat(protocol, 'protocol')}://${redirectFormat(r.host, 'host')}:${redirectFormat(r.port, 'port')}${redirectFormat(r.path, 'path')}`;
  const rule = (location: string, cond = '') => `http-request redirect location '${location}' code ${r.statusCode}${cond}`;
  if (r.query === '') return [rule(base)];
  if (r.query !== '#{query}') return [rule(`${base}?${redirectFormat(r.query, 'query')}`)];
  // The request's own query, and no '?' when it has none.
  return [rule(`${base}?%[query]`, ' if { query -m found }'), rule(base)];
}

function backend(g: TargetGroupSpec, spec: LoadBalancingSpec, timeScale: number): string {
  const hc = g.healthCheck;
  const idle = idleTimeoutSeconds(g, spec);
  const lines = [
    `mode ${g.kind === 'network' ? 'tcp' : 'http'}`,
    `balance ${g.algorithm === 'least_outstanding_requests' ? 'leastconn' : 'roundrobin'}`,
    'option allbackups',
    `timeout server ${idle}s`,
    `timeout check ${scaledMs(hc.timeoutSeconds, timeScale)}ms`,
  ];
  if (g.kind === 'application') lines.push(`timeout tunnel ${idle}s`);
  if (hc.protocol !== 'TCP') {
    lines.push(
      'option httpchk',
      `http-check send meth GET uri ${hc.path} ver HTTP/1.1 hdr Host %[bc_dst]:%[bc_dst_port] hdr User-Agent ELB-HealthChecker/2.0`,
      `http-check expect status ${hc.successCodes}`,
    );
  }
  return section(`backend ${g.logicalId}`, lines);
}

/** The idle timeout of the load balancers forwarding to a group (their longest), or its kind's default when none does. */
function idleTimeoutSeconds(g: TargetGroupSpec, spec: LoadBalancingSpec): number {
  const forwarding = spec.loadBalancers.filter((lb) => lb.listeners.some((l) => l.action.type === 'forward' && l.action.targetGroups.some((t) => t.arn === g.arn)));
  return forwarding.length ? Math.max(...forwarding.map((lb) => lb.idleTimeoutSeconds)) : DEFAULT_IDLE_TIMEOUT_SECONDS[g.kind];
}

/** The port a target's health is checked on. */
export function checkPort(hc: HealthCheckSpec, trafficPort: number): number {
  return hc.port === 'traffic-port' ? trafficPort : hc.port;
}

function trafficArgs(g: TargetGroupSpec): string[] {
  return [...(g.protocol === 'HTTPS' ? ['ssl', 'verify', 'none'] : []), ...(g.proxyProtocolV2 ? ['send-proxy-v2'] : [])];
}

/**
 * `add server` arguments of a target: checked with the group's settings, and added with weight 0
 * (the caller sets it to 1 once the target is marked down, so no connection reaches it before
 * it passes its first checks).
 */
export function targetServerArgs(g: TargetGroupSpec, address: string, port: number, timeScale: number): string[] {
  const hc = g.healthCheck;
  const inter = `${scaledMs(hc.intervalSeconds, timeScale)}`;
  return [
    `${address}:${port}`,
    'weight', '0',
    'check', 'inter', inter, 'fastinter', inter, 'downinter', inter,
    'rise', `${hc.healthyThreshold}`, 'fall', `${hc.unhealthyThreshold}`,
    'port', `${checkPort(hc, port)}`,
    ...(hc.protocol === 'HTTPS' ? ['check-ssl', ...(g.protocol === 'HTTPS' ? [] : ['verify', 'none'])] : []),
    ...(g.closeConnectionsWhenUnhealthy ? ['on-marked-down', 'shutdown-sessions'] : []),
    ...trafficArgs(g),
  ];
}

/** `add server` arguments of a target's fail-open twin: a backup without checks. */
export function failOpenServerArgs(g: TargetGroupSpec, address: string, port: number): string[] {
  return [`${address}:${port}`, 'backup', ...trafficArgs(g)];
}
