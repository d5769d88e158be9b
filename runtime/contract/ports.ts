/** Default ports of the services (the seeds' firewall table). Shared with the CDK app. */
export const Ports = {
  /** Node SSH service. */
  node: 3022,
  /** Proxy SSH (clients connect here, `proxy` subsystem). */
  proxySsh: 3023,
  /** Proxy reverse tunnels. */
  proxyTunnel: 3024,
  /** Auth API (HTTPS, mutual TLS). */
  auth: 3025,
  /** Proxy Kubernetes API. */
  kube: 3026,
  /** Proxy web UI and web API (HTTPS). */
  web: 3080,
} as const;
