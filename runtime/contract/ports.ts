/** Default ports of the services (the seeds' firewall table), and which of them the runtime serves. Shared with the CDK app. */
import type { InstanceRole } from './aws';

export const Ports = {
  /** Node SSH service. */
  node: 3022,
  /** Proxy SSH (clients connect here, `proxy` subsystem). */
  proxySsh: 3023,
  /** Proxy reverse tunnels (nodes behind NAT dial in). */
  proxyTunnel: 3024,
  /** Auth API (HTTPS, mutual TLS). */
  auth: 3025,
  /** Proxy Kubernetes API: not served yet (there is no Kubernetes proxy). */
  kube: 3026,
  /** Proxy web UI and web API (HTTPS). */
  web: 3080,
  /** The proxy's web listener with Let's Encrypt (`proxy_service.acme`): the CA validates TLS-ALPN-01 on 443 only. */
  acmeWeb: 443,
} as const;

/** A role of `teleport start` that listens on ports. */
export type ServingRole = 'auth' | 'proxy' | 'node';

/**
 * The ports each role's runtime binds today with its default addresses (`plannedListeners` in
 * runtime/service/listen.ts; test/lib/served-ports.test.ts holds the two together). A load
 * balancer listener, target group or security group rule may only lead to one of these: a port
 * nothing listens on fails its health checks, and with ELB health checks the group replaces every
 * instance forever. Not 3026 (no Kubernetes proxy) until its server exists.
 */
export const SERVED_PORTS: Readonly<Record<ServingRole, readonly number[]>> = {
  auth: [Ports.auth],
  proxy: [Ports.proxySsh, Ports.proxyTunnel, Ports.web],
  node: [Ports.node],
};

/** How an instance's proxy is set up, where that moves a port. */
export interface ServeOptions {
  /** `USE_LETSENCRYPT=true`: the proxy's web listener is on 443 (Ports.acmeWeb) instead of 3080. */
  readonly letsEncrypt?: boolean;
}

/** The ports an instance with `TELEPORT_ROLE=role` serves: its roles' together (`auth,node,proxy`: all three). */
export function servedPorts(role: InstanceRole, opts: ServeOptions = {}): number[] {
  return (role.split(',') as ServingRole[]).flatMap((r) =>
    r === 'proxy' && opts.letsEncrypt ? SERVED_PORTS.proxy.map((p) => (p === Ports.web ? Ports.acmeWeb : p)) : SERVED_PORTS[r],
  );
}
