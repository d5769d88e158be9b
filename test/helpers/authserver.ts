/**
 * An AuthServer in the test's own process, on a backend and audit log the
 * test gives (no HTTP): for unit tests of the auth service's logic. Close it
 * (it runs the access feed's watch) before the backend.
 */
import { AuthServer, ClusterConfig } from '../../runtime/auth/server';
import { Backend } from '../../runtime/backend';
import type { TrustExchange } from '../../runtime/auth/trust';
import { AuditLog } from '../../runtime/events/filelog';
import { logger } from '../../runtime/utils/logger';

export interface TestAuthServerOptions {
  backend: Backend;
  audit: AuditLog;
  /** @default 'test' */
  nodeName?: string;
  /** Absent: the stored name, else the node name (as `teleport start` without `cluster_name`). */
  clusterName?: string;
  /** Settings of `auth_service` that differ from the defaults below. */
  clusterConfig?: Partial<ClusterConfig>;
  /** How trust with a root cluster is established (default: HTTPS to its proxy). */
  trustExchange?: TrustExchange;
}

export function initTestAuthServer(o: TestAuthServerOptions): Promise<AuthServer> {
  return AuthServer.init({
    backend: o.backend,
    audit: o.audit,
    hostUUID: '00000000-0000-4000-8000-000000000001',
    nodeName: o.nodeName ?? 'test',
    ...(o.clusterName ? { clusterName: o.clusterName } : {}),
    caKeyType: 'ed25519',
    ...(o.trustExchange ? { trustExchange: o.trustExchange } : {}),
    staticTokens: [],
    clusterConfig: {
      session_recording: 'node',
      proxy_checks_host_keys: true,
      client_idle_timeout: 0,
      disconnect_expired_cert: false,
      keep_alive_interval: 0,
      keep_alive_count_max: 3,
      auth_type: 'local',
      second_factor: 'otp',
      ...o.clusterConfig,
    },
    log: logger('test'),
  });
}
