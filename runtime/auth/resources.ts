/**
 * The cluster's resources as stored in the backend and shown by `tctl get`:
 * users, roles, join tokens, cert authorities and servers. The JSON shapes
 * follow formats.md (kind / version / metadata / spec); the zod schemas are
 * the one place where resources from outside (YAML files, API bodies) are
 * validated.
 */
import type { Rotation } from './rotation';
import { z } from 'zod';
import { BadParameterError } from '../utils/errors';
import { parseDuration } from '../config/duration';

export const SYSTEM_ROLES = ['Auth', 'Node', 'Proxy', 'Admin', 'TrustedCluster', 'Signup'] as const;
export type SystemRole = (typeof SYSTEM_ROLES)[number];

/** Maps the lower-case names users type (`node`, `trusted_cluster`) to system roles. */
export function parseSystemRole(name: string): SystemRole {
  const n = name.trim().toLowerCase().replace(/_/g, '');
  const found = SYSTEM_ROLES.find((r) => r.toLowerCase() === n);
  if (!found) throw new BadParameterError(`unknown role "${name}": expected one of auth, node, proxy, trusted_cluster`);
  return found;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,254}$/;
const name = z.string().regex(NAME, 'must be letters, digits, ".", "_", "@" or "-" and start with a letter or digit');
const timestamp = z.union([z.string(), z.date()]).transform((v) => (v instanceof Date ? v.toISOString() : v));

const metadata = z
  .object({
    name,
    namespace: z.string().optional(),
    description: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
    expires: timestamp.optional(),
  })
  .strict();

export type Metadata = z.infer<typeof metadata>;

const loginName = z.string().regex(/^[^\s,@:/]{1,64}$|^\{\{[a-z.]+\}\}$/, 'must be an OS login name or a {{template}}');

export const userSchema = z
  .object({
    kind: z.literal('user'),
    version: z.literal('v2'),
    metadata,
    spec: z
      .object({
        roles: z.array(name).default([]),
        traits: z.record(z.string(), z.array(z.string())).default({}),
        status: z
          .object({ is_locked: z.boolean().default(false), lock_expires: timestamp.optional(), locked_time: timestamp.optional(), locked_message: z.string().optional() })
          .strict()
          .optional(),
        expires: timestamp.optional(),
        created_by: z
          .object({
            time: timestamp.optional(),
            user: z.object({ name: z.string() }).strict().optional(),
            /** A user made by a single sign-on login: the connector's kind and name, and who the provider said they are. */
            connector: z.object({ type: z.enum(['oidc', 'github']), id: z.string(), identity: z.string() }).strict().optional(),
          })
          .strict()
          .optional(),
      })
      .strict(),
  })
  .strict();
export type User = z.infer<typeof userSchema>;

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return typeof v === 'number' ? v : parseDuration(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const conditions = z
  .object({
    logins: z.array(loginName).optional(),
    node_labels: z.record(z.string(), z.union([z.string(), z.array(z.string())])).optional(),
    rules: z.array(z.object({ resources: z.array(z.string()), verbs: z.array(z.string()), where: z.string().optional() }).strict()).optional(),
  })
  .strict();

export const roleSchema = z
  .object({
    kind: z.literal('role'),
    version: z.literal('v3'),
    metadata,
    spec: z
      .object({
        options: z
          .object({
            /** Maximum user certificate TTL, Go duration string. */
            max_session_ttl: duration.optional(),
            forward_agent: z.boolean().optional(),
            port_forwarding: z.boolean().optional(),
            permit_x11_forwarding: z.boolean().optional(),
            /** Our addition: whether an interactive PTY is allowed (default true). */
            permit_pty: z.boolean().optional(),
            cert_format: z.enum(['standard', 'oldssh']).optional(),
            client_idle_timeout: duration.optional(),
            disconnect_expired_cert: z.boolean().optional(),
          })
          .strict()
          .default({}),
        allow: conditions.default({}),
        deny: conditions.default({}),
      })
      .strict(),
  })
  .strict();
export type Role = z.infer<typeof roleSchema>;
/** A role as written by users (durations may be strings) before defaults. */
export type RoleInput = z.input<typeof roleSchema>;

export const tokenSchema = z
  .object({
    kind: z.literal('token'),
    version: z.literal('v2'),
    metadata,
    spec: z.object({ roles: z.array(z.string()).min(1) }).strict(),
  })
  .strict();
export type ProvisionToken = z.infer<typeof tokenSchema>;

/** A cert authority. Byte fields are base64, as Go's encoding/json writes them. */
export interface CertAuthority {
  kind: 'cert_authority';
  version: 'v2';
  sub_kind: 'user' | 'host';
  metadata: { name: string; namespace: 'default' };
  spec: {
    type: 'user' | 'host';
    cluster_name: string;
    /** SSH public keys, authorized_keys lines, base64. */
    checking_keys: string[];
    /** SSH private keys, PEM, base64. Empty when secrets are stripped. */
    signing_keys: string[];
    /** TLS CA, PEM, base64. `key` is empty when secrets are stripped. */
    tls_key_pairs: { cert: string; key: string }[];
    /** The SSH CA key algorithm. */
    signing_alg: string;
    roles: string[];
    rotation: Rotation;
  };
}

export interface Server {
  kind: 'node' | 'proxy' | 'auth_server';
  version: 'v2';
  metadata: { name: string; namespace: string; labels?: Record<string, string>; expires?: string };
  spec: {
    addr: string;
    public_addr?: string;
    hostname: string;
    /** A node behind NAT: reached only through its reverse tunnels to the proxies; `addr` is empty. */
    use_tunnel?: boolean;
    cmd_labels?: Record<string, { command: string[]; period: number; result: string }>;
    version?: string;
    rotation?: unknown;
  };
}

/** A server's labels: the static ones and the latest result of each command label. */
export function serverLabels(s: Server): Record<string, string> {
  const labels = { ...(s.metadata.labels ?? {}) };
  for (const [k, v] of Object.entries(s.spec.cmd_labels ?? {})) labels[k] = v.result;
  return labels;
}

/** A server's address as tctl and tsh list it: `⟵ Tunnel` for a node behind NAT (as Teleport shows it). */
export function serverAddress(s: Server): string {
  return s.spec.use_tunnel ? '⟵ Tunnel' : s.spec.addr;
}

/** `k1=v1,k2=v2`, sorted by key: how tctl and tsh print a server's labels. */
export function formatServerLabels(s: Server): string {
  const labels = serverLabels(s);
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',');
}

export const serverSchema = z
  .object({
    kind: z.enum(['node', 'proxy', 'auth_server']),
    version: z.literal('v2'),
    metadata: z
      .object({
        name: z.string().min(1).max(255),
        namespace: z.string().default('default'),
        labels: z.record(z.string(), z.string()).optional(),
        expires: z.string().optional(),
      })
      .strict(),
    spec: z
      .object({
        addr: z.string().max(512),
        public_addr: z.string().max(512).optional(),
        hostname: z.string().max(255),
        use_tunnel: z.boolean().optional(),
        cmd_labels: z
          .record(z.string(), z.object({ command: z.array(z.string()), period: z.number(), result: z.string() }).strict())
          .optional(),
        version: z.string().optional(),
        rotation: z.unknown().optional(),
      })
      .strict(),
  })
  .strict();

export function newUser(nameValue: string, roles: string[], logins: string[], createdBy: string): User {
  return userSchema.parse({
    kind: 'user',
    version: 'v2',
    metadata: { name: nameValue, namespace: 'default' },
    spec: {
      roles,
      traits: { logins },
      status: { is_locked: false },
      created_by: { time: new Date().toISOString(), user: { name: createdBy } },
    },
  });
}

/** The role every user made by `tctl users add` gets: the user's own logins on every node, forwarding allowed, 30h max, playback of every session and the audit log. */
export function defaultAdminRole(): Role {
  return roleSchema.parse({
    kind: 'role',
    version: 'v3',
    metadata: { name: 'admin', namespace: 'default', description: 'Default role: the logins in the user traits, on every node' },
    spec: {
      options: { max_session_ttl: '30h0m0s', forward_agent: true, port_forwarding: true, permit_x11_forwarding: true, permit_pty: true, cert_format: 'standard' },
      allow: { logins: ['{{internal.logins}}'], node_labels: { '*': '*' }, rules: [{ resources: ['session'], verbs: ['list', 'read'] }, { resources: ['event'], verbs: ['list', 'read'] }] },
      deny: {},
    },
  });
}

/** Validates a resource from outside (YAML or JSON) and names what is wrong. */
export function parseResource<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const res = schema.safeParse(value);
  if (res.success) return res.data;
  const lines = res.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
  throw new BadParameterError(`invalid ${where}:\n  ${lines.join('\n  ')}`);
}

/** `role_map` of a trusted cluster: a role of the root (`remote`, or `*` for any) becomes these roles of the leaf. */
const roleMapping = z.object({ remote: z.string().regex(/^\*$|^[A-Za-z0-9][A-Za-z0-9._@-]{0,254}$/, 'must be a role name or "*"'), local: z.array(name).min(1) }).strict();
export type RoleMapping = z.infer<typeof roleMapping>;

/** `host:port` as a trusted cluster names the root's web and tunnel addresses. */
const hostPortText = z.string().regex(/^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?):[0-9]{1,5}$/, 'must be host:port');

/**
 * `kind: trusted_cluster` (Teleport 4.x, created in the leaf with `tctl create`): the root cluster
 * this cluster trusts, named as the root names itself. `ca_pin` is ours: the root's CA pins
 * (`sha256:…`, as `tctl status` prints them) that the exchanged CAs must match.
 */
export const trustedClusterSchema = z
  .object({
    kind: z.literal('trusted_cluster'),
    version: z.literal('v2'),
    metadata,
    spec: z
      .object({
        enabled: z.boolean().default(true),
        token: z.string().max(1024).default(''),
        web_proxy_addr: hostPortText,
        tunnel_addr: hostPortText,
        role_map: z.array(roleMapping).max(256).default([]),
        ca_pin: z.union([z.string(), z.array(z.string())]).optional(),
      })
      .strict(),
  })
  .strict();
export type TrustedClusterResource = z.infer<typeof trustedClusterSchema>;

/** The roles a root user's certificate roles map to in this cluster: each mapping whose `remote` names one of them (or is `*`). */
export function mapRoles(roleMap: readonly RoleMapping[], certRoles: readonly string[]): string[] {
  const out = new Set<string>();
  for (const m of roleMap) if (m.remote === '*' ? certRoles.length > 0 : certRoles.includes(m.remote)) m.local.forEach((r) => out.add(r));
  return [...out];
}
