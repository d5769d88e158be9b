/**
 * The cluster state's key layout in the backend. The auth service and the
 * control plane Lambdas both build keys here, so they can never disagree.
 */

/** `key('a','b')` = `/a/b`. */
export function key(...parts: string[]): string {
  return '/' + parts.join('/');
}

/** The end of a prefix range: the smallest key greater than every key that starts with `prefix`. */
export function rangeEnd(prefix: string): string {
  return prefix + '\uffff';
}

export const Keys = {
  clusterName: () => key('cluster_configuration', 'name'),
  clusterConfig: () => key('cluster_configuration', 'general'),
  staticTokens: () => key('cluster_configuration', 'static_tokens'),
  authPreference: () => key('authentication', 'preference'),
  certAuthority: (type: 'user' | 'host', cluster: string) => key('authorities', type, cluster),
  certAuthorities: (type: 'user' | 'host') => key('authorities', type) + '/',
  /** Join tokens are keyed by the SHA-256 of their value (see runtime/auth/tokens.ts). */
  token: (tokenHash: string) => key('tokens', tokenHash),
  tokens: () => key('tokens') + '/',
  signupToken: (tokenHash: string) => key('usertokens', tokenHash),
  signupTokens: () => key('usertokens') + '/',
  user: (name: string) => key('web', 'users', name, 'params'),
  userPassword: (name: string) => key('web', 'users', name, 'pwd'),
  userPrefix: (name: string) => key('web', 'users', name) + '/',
  /** Before second-factor devices: the user's one TOTP secret and last time step (auth/mfa.ts migrates it). */
  userTotp: (name: string) => key('web', 'users', name, 'totp'),
  /** A second-factor device of the user, by its name (auth/mfa.ts). */
  userMfaDevice: (name: string, device: string) => key('web', 'users', name, 'mfa', device),
  userMfaDevices: (name: string) => key('web', 'users', name, 'mfa') + '/',
  /** A TOTP secret offered to the user for a new device, waiting for a code from it. */
  userMfaOffer: (name: string) => key('web', 'users', name, 'mfa_offer'),
  /** A WebAuthn ceremony's challenge, single use, with a short TTL (runtime/auth/webauthn.ts), by the challenge itself (base64url). */
  webauthnChallenge: (challenge: string) => key('web', 'webauthn_challenges', challenge),
  /** tsh login's request for a security key's answer, by its random ID (runtime/auth/webauthn-cli.ts). */
  webauthnCliRequest: (id: string) => key('web', 'webauthn_cli', id),
  /** Failed login attempts, one item each, expiring after the lockout window. */
  userLoginAttempt: (name: string, id: string) => key('web', 'users', name, 'attempts', id),
  userLoginAttempts: (name: string) => key('web', 'users', name, 'attempts') + '/',
  users: () => key('web', 'users') + '/',
  /** A browser session (formats.md §5 `/web/users/<user>/sessions/<sid>`), the sid being the SHA-256 of its bearer token. */
  webSession: (name: string, tokenHash: string) => key('web', 'users', name, 'sessions', tokenHash),
  webSessions: (name: string) => key('web', 'users', name, 'sessions') + '/',
  /** Which user a web session's bearer token belongs to, keyed by its SHA-256, so a token alone finds its session. */
  webSessionOwner: (tokenHash: string) => key('web', 'sessions', tokenHash),
  /** A single sign-on connector (formats.md §5 `/web/connectors/{oidc,github}/connectors/<name>`). */
  connector: (kind: string, name: string) => key('web', 'connectors', kind, 'connectors', name),
  connectors: (kind: string) => key('web', 'connectors', kind, 'connectors') + '/',
  /** A single sign-on login under way, by the SHA-256 of its `state`; it expires after a few minutes. */
  ssoRequest: (kind: string, stateHash: string) => key('web', 'connectors', kind, 'requests', stateHash),
  role: (name: string) => key('roles', name, 'params'),
  roles: () => key('roles') + '/',
  node: (namespace: string, uuid: string) => key('nodes', namespace, uuid),
  nodes: (namespace: string) => key('nodes', namespace) + '/',
  proxy: (uuid: string) => key('proxies', uuid),
  proxies: () => key('proxies') + '/',
  authServer: (uuid: string) => key('authservers', uuid),
  authServers: () => key('authservers') + '/',
  /** Which host is uploading a session's recording: only that host may send its parts and complete it. */
  recordingUploader: (namespace: string, sid: string) => key('recordings', 'uploaders', namespace, sid),
  /**
   * Another cluster's trust record (runtime/auth/trust.ts): on a leaf, the root it trusts (`trusted_cluster`);
   * on a root, a leaf that trusts it (`remote_cluster`). Their CAs live here, never under `authorities/`,
   * so nothing that reads this cluster's own CAs (members, the CA pin, exports) can pick one up.
   */
  clusterTrust: (name: string) => key('cluster_trust', name),
  clusterTrusts: () => key('cluster_trust') + '/',
  /** A proxy's live reverse tunnel from a leaf cluster: it expires unless the proxy renews it. */
  tunnelConnection: (cluster: string, proxy: string) => key('tunnelConnections', cluster, proxy),
  tunnelConnections: (cluster: string) => key('tunnelConnections', cluster) + '/',
  /** An interactive session running on a node, which others may join (runtime/node/shared.ts); it expires unless the node renews it. */
  activeSession: (namespace: string, sid: string) => key('sessions', namespace, sid),
  activeSessions: (namespace: string) => key('sessions', namespace) + '/',
  /** An audit event `uid` a host has delivered, so a re-sent copy is dropped. */
  seenEvent: (hostId: string, uid: string) => key('audit', 'seen', hostId, uid),
} as const;

export const DEFAULT_NAMESPACE = 'default';
