/**
 * What the template asks of its load balancers, as a typed spec with AWS's defaults filled in:
 * every `AWS::ElasticLoadBalancingV2::LoadBalancer` with its listeners (port, protocol, default
 * action) and every target group with its health check and deregistration delay. Pure: it reads
 * the template through `resolve` and starts nothing. Features the local deployment does not
 * emulate are refused with a reason rather than silently left out.
 *
 * Defaults are AWS's (CreateTargetGroup / CreateLoadBalancer API reference, as of 2024):
 * interval 30 s; healthy threshold 5 and unhealthy threshold 2 for both kinds (before late 2022
 * NLB used 3/3, and the CDK docs still say 3); check timeout 5 s for ALB target groups, and for
 * NLB target groups 6 s for HTTP checks and 10 s for TCP and HTTPS checks; check protocol HTTP
 * for ALB target groups and TCP for NLB ones; check port "traffic-port"; path "/"; success codes
 * "200" (ALB) and "200-399" (NLB HTTP/HTTPS checks); deregistration delay 300 s; idle timeout
 * 60 s (ALB attribute `idle_timeout.timeout_seconds`) and 350 s (NLB TCP, fixed).
 */
import type { CfnResources, Resolve } from '../types';
import { LoadBalancingError } from './errors';

export type LoadBalancerType = 'network' | 'application';
export type HealthCheckProtocol = 'TCP' | 'HTTP' | 'HTTPS';
/** Target group protocols emulated: TCP for network load balancers, HTTP and HTTPS for application ones. */
export type TargetGroupProtocol = 'TCP' | 'HTTP' | 'HTTPS';
export type ListenerProtocol = TargetGroupProtocol;

export interface HealthCheckSpec {
  readonly protocol: HealthCheckProtocol;
  /** The port checked, or 'traffic-port': the port the target receives traffic on. */
  readonly port: number | 'traffic-port';
  /** Path of HTTP and HTTPS checks. */
  readonly path: string;
  readonly intervalSeconds: number;
  readonly timeoutSeconds: number;
  /** Consecutive passed checks that make a target healthy. */
  readonly healthyThreshold: number;
  /** Consecutive failed checks that make a target unhealthy. */
  readonly unhealthyThreshold: number;
  /** Status codes of a passed HTTP/HTTPS check, in AWS's syntax ('200', '200,202', '200-399'). */
  readonly successCodes: string;
}

export interface TargetGroupSpec {
  readonly logicalId: string;
  readonly arn: string;
  /** The kind of load balancer the group serves, from its protocol. */
  readonly kind: LoadBalancerType;
  readonly protocol: TargetGroupProtocol;
  /** The port targets receive traffic on, unless registered with their own. */
  readonly port: number;
  readonly healthCheck: HealthCheckSpec;
  /** `deregistration_delay.timeout_seconds`: how long a deregistered target's connections may drain. */
  readonly deregistrationDelaySeconds: number;
  /** NLB `target_health_state.unhealthy.connection_termination.enabled`: connections to a target that turns unhealthy are reset. */
  readonly closeConnectionsWhenUnhealthy: boolean;
  /** NLB `proxy_protocol_v2.enabled`: targets get a PROXY v2 header with the client's address. */
  readonly proxyProtocolV2: boolean;
  /** `load_balancing.algorithm.type` (ALB). */
  readonly algorithm: 'round_robin' | 'least_outstanding_requests';
}

export interface WeightedTargetGroup {
  readonly arn: string;
  readonly weight: number;
}

/** An ALB redirect; each part may hold AWS's `#{protocol}`, `#{host}`, `#{port}`, `#{path}`, `#{query}`. */
export interface RedirectSpec {
  readonly protocol: string;
  readonly host: string;
  readonly port: string;
  readonly path: string;
  readonly query: string;
  readonly statusCode: 301 | 302;
}

export type ListenerAction = { readonly type: 'forward'; readonly targetGroups: readonly WeightedTargetGroup[] } | ({ readonly type: 'redirect' } & RedirectSpec);

export interface ListenerSpec {
  readonly logicalId: string;
  readonly arn: string;
  readonly protocol: ListenerProtocol;
  readonly port: number;
  /** HTTPS listeners: the lowest TLS version of the listener's security policy (never below 1.2 here). */
  readonly minTlsVersion?: 'TLSv1.2' | 'TLSv1.3';
  readonly action: ListenerAction;
}

export interface LoadBalancerSpec {
  readonly logicalId: string;
  readonly arn: string;
  readonly name: string;
  readonly type: LoadBalancerType;
  /** The address clients reach it on: what `Fn::GetAtt [lb, DNSName]` resolves to (a virtual IP). */
  readonly address: string;
  readonly idleTimeoutSeconds: number;
  readonly listeners: readonly ListenerSpec[];
}

export interface LoadBalancingSpec {
  readonly loadBalancers: readonly LoadBalancerSpec[];
  readonly targetGroups: readonly TargetGroupSpec[];
}

/** Idle timeouts when the template sets none: ALB `idle_timeout.timeout_seconds` default, NLB TCP fixed. */
export const DEFAULT_IDLE_TIMEOUT_SECONDS: Readonly<Record<LoadBalancerType, number>> = { network: 350, application: 60 };

const LB = 'AWS::ElasticLoadBalancingV2::LoadBalancer';
const LISTENER = 'AWS::ElasticLoadBalancingV2::Listener';
const TARGET_GROUP = 'AWS::ElasticLoadBalancingV2::TargetGroup';
/** Resources of the family that would change routing and are not emulated. */
const NOT_EMULATED = ['AWS::ElasticLoadBalancingV2::ListenerRule', 'AWS::ElasticLoadBalancingV2::ListenerCertificate', 'AWS::ElasticLoadBalancingV2::TrustStore'];

/** The load balancers and target groups of a template, with AWS's defaults applied. */
export function loadBalancingSpec(resources: CfnResources, resolve: Resolve): LoadBalancingSpec {
  const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
  for (const type of NOT_EMULATED) {
    const found = ofType(type).map(([id]) => id);
    if (found.length) throw new LoadBalancingError('unsupported', `${type} is not emulated by the local load balancers (${found.join(', ')})`);
  }
  const targetGroups = ofType(TARGET_GROUP).map(([id, r]) => targetGroupSpec(id, r.Properties ?? {}, resolve));
  const groupByArn = new Map(targetGroups.map((g) => [g.arn, g]));
  const listenersOf = new Map<string, ListenerSpec[]>();
  const lbArns = new Map(ofType(LB).map(([id]) => [String(resolve({ Ref: id })), id]));
  for (const [id, r] of ofType(LISTENER)) {
    const props = r.Properties ?? {};
    const lbId = lbArns.get(String(resolve(props.LoadBalancerArn)));
    if (!lbId) throw new LoadBalancingError('invalid_template', `listener ${id} belongs to no load balancer of the template`);
    const lbType = loadBalancerType(lbId, resources[lbId].Properties ?? {});
    const listener = listenerSpec(id, props, resolve, lbType);
    if (listener.action.type === 'forward') {
      for (const { arn } of listener.action.targetGroups) {
        const group = groupByArn.get(arn);
        if (!group) throw new LoadBalancingError('invalid_template', `listener ${id} forwards to ${arn}, not a target group of the template`);
        if (group.kind !== lbType) throw new LoadBalancingError('invalid_template', `listener ${id} of a ${lbType} load balancer forwards to ${group.logicalId}, a ${group.protocol} target group of a ${group.kind} load balancer`);
      }
    }
    listenersOf.set(lbId, [...(listenersOf.get(lbId) ?? []), listener]);
  }
  const loadBalancers = ofType(LB).map(([id, r]): LoadBalancerSpec => {
    const props = r.Properties ?? {};
    const type = loadBalancerType(id, props);
    const address = resolve({ 'Fn::GetAtt': [id, 'DNSName'] });
    if (typeof address !== 'string' || !address) throw new LoadBalancingError('invalid_template', `load balancer ${id} has no address (Fn::GetAtt DNSName resolved to ${JSON.stringify(address)})`);
    const attributes = attributeMap(resolve(props.LoadBalancerAttributes));
    return {
      logicalId: id,
      arn: String(resolve({ Ref: id })),
      name: props.Name === undefined ? id : String(resolve(props.Name)),
      type,
      address,
      idleTimeoutSeconds: type === 'application' ? numberAttribute(attributes, 'idle_timeout.timeout_seconds', DEFAULT_IDLE_TIMEOUT_SECONDS.application, id) : DEFAULT_IDLE_TIMEOUT_SECONDS.network,
      listeners: listenersOf.get(id) ?? [],
    };
  });
  return { loadBalancers, targetGroups };
}

function loadBalancerType(id: string, props: Record<string, any>): LoadBalancerType {
  const type = props.Type ?? 'application';
  if (type !== 'network' && type !== 'application') throw new LoadBalancingError('unsupported', `load balancer ${id} is of type ${type}; only network and application load balancers are emulated`);
  return type;
}

function targetGroupSpec(id: string, props: Record<string, any>, resolve: Resolve): TargetGroupSpec {
  const targetType = props.TargetType ?? 'instance';
  if (targetType !== 'instance' && targetType !== 'ip') throw new LoadBalancingError('unsupported', `target group ${id} has targets of type ${targetType}; only instance and ip targets are emulated`);
  const protocol = resolve(props.Protocol);
  if (protocol !== 'TCP' && protocol !== 'HTTP' && protocol !== 'HTTPS') throw new LoadBalancingError('unsupported', `target group ${id} uses protocol ${protocol}; only TCP (network) and HTTP/HTTPS (application) are emulated`);
  const kind: LoadBalancerType = protocol === 'TCP' ? 'network' : 'application';
  const port = Number(resolve(props.Port));
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new LoadBalancingError('invalid_template', `target group ${id} has no valid Port (${JSON.stringify(props.Port)})`);
  const attributes = attributeMap(resolve(props.TargetGroupAttributes));
  if (attributes.get('stickiness.enabled') === 'true') throw new LoadBalancingError('unsupported', `target group ${id} enables stickiness, which is not emulated`);
  const algorithm = attributes.get('load_balancing.algorithm.type') ?? 'round_robin';
  if (algorithm !== 'round_robin' && algorithm !== 'least_outstanding_requests') throw new LoadBalancingError('unsupported', `target group ${id} uses load_balancing.algorithm.type ${algorithm}`);
  return {
    logicalId: id,
    arn: String(resolve({ Ref: id })),
    kind,
    protocol,
    port,
    healthCheck: healthCheckSpec(id, props, resolve, kind),
    deregistrationDelaySeconds: numberAttribute(attributes, 'deregistration_delay.timeout_seconds', 300, id),
    closeConnectionsWhenUnhealthy: kind === 'network' && attributes.get('target_health_state.unhealthy.connection_termination.enabled') !== 'false',
    proxyProtocolV2: attributes.get('proxy_protocol_v2.enabled') === 'true',
    algorithm,
  };
}

function healthCheckSpec(id: string, props: Record<string, any>, resolve: Resolve, kind: LoadBalancerType): HealthCheckSpec {
  const protocol = resolve(props.HealthCheckProtocol) ?? (kind === 'application' ? 'HTTP' : 'TCP');
  if (protocol !== 'TCP' && protocol !== 'HTTP' && protocol !== 'HTTPS') throw new LoadBalancingError('unsupported', `target group ${id} checks health over ${protocol}`);
  if (kind === 'application' && protocol === 'TCP') throw new LoadBalancingError('invalid_template', `target group ${id} is an HTTP/HTTPS target group with a TCP health check, which AWS refuses`);
  const rawPort = resolve(props.HealthCheckPort) ?? 'traffic-port';
  const port = rawPort === 'traffic-port' ? rawPort : Number(rawPort);
  if (port !== 'traffic-port' && (!Number.isInteger(port) || port < 1 || port > 65535)) throw new LoadBalancingError('invalid_template', `target group ${id} has HealthCheckPort ${JSON.stringify(rawPort)}`);
  const matcher = resolve(props.Matcher);
  if (matcher?.GrpcCode !== undefined) throw new LoadBalancingError('unsupported', `target group ${id} uses gRPC health checks`);
  const defaultTimeout = kind === 'application' ? 5 : protocol === 'HTTP' ? 6 : 10;
  const count = (key: string, fallback: number) => {
    const v = resolve(props[key]);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new LoadBalancingError('invalid_template', `target group ${id} has ${key} ${JSON.stringify(v)}`);
    return n;
  };
  return {
    protocol,
    port,
    path: resolve(props.HealthCheckPath) ?? '/',
    intervalSeconds: count('HealthCheckIntervalSeconds', 30),
    timeoutSeconds: count('HealthCheckTimeoutSeconds', defaultTimeout),
    healthyThreshold: count('HealthyThresholdCount', 5),
    unhealthyThreshold: count('UnhealthyThresholdCount', 2),
    successCodes: String(matcher?.HttpCode ?? (kind === 'application' ? '200' : '200-399')),
  };
}

function listenerSpec(id: string, props: Record<string, any>, resolve: Resolve, lbType: LoadBalancerType): ListenerSpec {
  const protocol = resolve(props.Protocol) ?? (lbType === 'application' ? 'HTTP' : 'TCP');
  const fits = lbType === 'network' ? protocol === 'TCP' : protocol === 'HTTP' || protocol === 'HTTPS';
  if (!fits) throw new LoadBalancingError('unsupported', `listener ${id} (${protocol} on a ${lbType} load balancer) is not emulated; network listeners may be TCP, application listeners HTTP or HTTPS`);
  const port = Number(resolve(props.Port));
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new LoadBalancingError('invalid_template', `listener ${id} has no valid Port (${JSON.stringify(props.Port)})`);
  const actions: any[] = resolve(props.DefaultActions) ?? [];
  if (actions.length !== 1) throw new LoadBalancingError('unsupported', `listener ${id} has ${actions.length} default actions; exactly one (forward or redirect) is emulated`);
  return {
    logicalId: id,
    arn: String(resolve({ Ref: id })),
    protocol,
    port,
    ...(protocol === 'HTTPS' ? { minTlsVersion: /TLS13-1-3/.test(String(resolve(props.SslPolicy) ?? '')) ? 'TLSv1.3' : 'TLSv1.2' } : {}),
    action: listenerAction(id, actions[0]),
  };
}

function listenerAction(listenerId: string, action: any): ListenerAction {
  if (action.Type === 'forward') {
    const groups: any[] = action.ForwardConfig?.TargetGroups ?? [{ TargetGroupArn: action.TargetGroupArn }];
    if (action.ForwardConfig?.TargetGroupStickinessConfig?.Enabled) throw new LoadBalancingError('unsupported', `listener ${listenerId} enables target group stickiness, which is not emulated`);
    if (groups.some((g) => typeof g.TargetGroupArn !== 'string')) throw new LoadBalancingError('invalid_template', `listener ${listenerId} forwards without a TargetGroupArn`);
    const targetGroups = groups.map((g) => ({ arn: g.TargetGroupArn as string, weight: g.Weight === undefined ? 1 : Number(g.Weight) })).filter((g) => g.weight > 0);
    if (!targetGroups.length) throw new LoadBalancingError('invalid_template', `listener ${listenerId} forwards to no target group with a weight`);
    return { type: 'forward', targetGroups };
  }
  if (action.Type === 'redirect') {
    const c = action.RedirectConfig ?? {};
    if (c.StatusCode !== 'HTTP_301' && c.StatusCode !== 'HTTP_302') throw new LoadBalancingError('invalid_template', `listener ${listenerId} redirects with status ${c.StatusCode}`);
    return {
      type: 'redirect',
      protocol: c.Protocol ?? '#{protocol}',
      host: c.Host ?? '#{host}',
      port: String(c.Port ?? '#{port}'),
      path: c.Path ?? '/#{path}',
      query: c.Query ?? '#{query}',
      statusCode: c.StatusCode === 'HTTP_301' ? 301 : 302,
    };
  }
  throw new LoadBalancingError('unsupported', `listener ${listenerId}'s default action ${action.Type} is not emulated (forward and redirect are)`);
}

function attributeMap(attributes: unknown): Map<string, string> {
  return new Map(((attributes as { Key: string; Value: unknown }[] | undefined) ?? []).map((a) => [a.Key, String(a.Value)]));
}

function numberAttribute(attributes: Map<string, string>, key: string, fallback: number, owner: string): number {
  const v = attributes.get(key);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new LoadBalancingError('invalid_template', `${owner} has ${key} = ${JSON.stringify(v)}`);
  return n;
}
