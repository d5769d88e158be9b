/**
 * Single sign-on connectors as resources (`tctl create/get/rm`): `kind: oidc`
 * (an OpenID Connect provider found by discovery at `issuer_url`, its
 * `claims_to_roles`) and `kind: github` (a GitHub OAuth app, its
 * `teams_to_logins`), in the Teleport 4.x shapes. They live in the backend
 * with the other cluster secrets (`/web/connectors/<kind>/connectors/<name>`);
 * `client_secret` leaves the auth server only for an admin who asks for it
 * (`tctl get --with-secrets`).
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { Backend } from '../../backend';
import { Keys, rangeEnd } from '../../contract/keys';
import { AlreadyExistsError, isReason, NotFoundError } from '../../utils/errors';

export const CONNECTOR_KINDS = ['oidc', 'github'] as const;
export type ConnectorKind = (typeof CONNECTOR_KINDS)[number];

const NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,254}$/;
const name = z.string().regex(NAME, 'must be letters, digits, ".", "_", "@" or "-" and start with a letter or digit');
const roleName = name;
const login = z.string().regex(/^[^\s,@:/]{1,64}$/, 'must be an OS login name');

/** Whether `host` is this machine (where plain http cannot be read by others on the way). */
function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return h === 'localhost' || (isIP(h) === 4 && h.startsWith('127.')) || h === '::1';
}

/** An https URL (http only on a loopback host, for a provider on this machine), without credentials or fragment. */
const secureUrl = z.string().max(2048).superRefine((v, ctx) => {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be an absolute URL' });
    return;
  }
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && isLoopback(u.hostname))) {
    ctx.addIssue({ code: 'custom', message: 'must be an https:// URL (http:// only for a loopback host)' });
  }
  if (u.username || u.password || u.hash) ctx.addIssue({ code: 'custom', message: 'must not carry credentials or a #fragment' });
});

const metadata = z
  .object({ name, namespace: z.string().optional(), description: z.string().max(1024).optional(), labels: z.record(z.string(), z.string()).optional() })
  .strict();

const secret = z.string().min(1).max(4096);

/** `kind: oidc` (Teleport 4.x OIDCConnectorV2). */
export const oidcConnectorSchema = z
  .object({
    kind: z.literal('oidc'),
    version: z.literal('v2'),
    metadata,
    spec: z
      .object({
        issuer_url: secureUrl,
        client_id: z.string().min(1).max(1024),
        client_secret: secret,
        /** The proxy's `https://<proxy>/v1/webapi/oidc/callback`, as registered with the provider. */
        redirect_url: secureUrl,
        display: z.string().max(128).optional(),
        /** Scopes besides `openid` (always asked for). */
        scope: z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/, 'must be a scope name')).max(32).default([]),
        claims_to_roles: z
          .array(z.object({ claim: z.string().min(1).max(256), value: z.string().max(1024), roles: z.array(roleName).min(1) }).strict())
          .min(1)
          .max(256),
      })
      .strict(),
  })
  .strict();
export type OidcConnector = z.infer<typeof oidcConnectorSchema>;

/** `kind: github` (Teleport 4.x GithubConnectorV3, with GitHub Enterprise's `endpoint_url`/`api_endpoint_url`). */
export const githubConnectorSchema = z
  .object({
    kind: z.literal('github'),
    version: z.literal('v3'),
    metadata,
    spec: z
      .object({
        client_id: z.string().min(1).max(1024),
        client_secret: secret,
        /** The proxy's `https://<proxy>/v1/webapi/github/callback`, the OAuth app's "Authorization callback URL". */
        redirect_url: secureUrl,
        display: z.string().max(128).optional(),
        /** Where users authorize the app (`/login/oauth/authorize`, `/login/oauth/access_token`). @default https://github.com */
        endpoint_url: secureUrl.default('https://github.com'),
        /** The REST API (`/user`, `/user/teams`). @default https://api.github.com */
        api_endpoint_url: secureUrl.default('https://api.github.com'),
        teams_to_logins: z
          .array(
            z
              .object({
                organization: z.string().min(1).max(256),
                /** The team's slug (as in its URL) or its name. */
                team: z.string().min(1).max(256),
                /** OS logins the team's members may use (their `logins` trait). */
                logins: z.array(login).max(64).default([]),
                /** Roles the team's members get. @default [admin]: the team's logins on every node */
                roles: z.array(roleName).min(1).max(64).default(['admin']),
                kubernetes_groups: z.array(z.string()).max(64).optional(),
              })
              .strict(),
          )
          .min(1)
          .max(256),
      })
      .strict(),
  })
  .strict();
export type GithubConnector = z.infer<typeof githubConnectorSchema>;

export type Connector = OidcConnector | GithubConnector;

export function connectorSchema(kind: ConnectorKind): z.ZodType<Connector> {
  return (kind === 'oidc' ? oidcConnectorSchema : githubConnectorSchema) as z.ZodType<Connector>;
}

/** What anyone may know of a connector: the login page's button, `tsh login --auth=<name>`. */
export interface ConnectorInfo {
  kind: ConnectorKind;
  name: string;
  display: string;
}

export function connectorInfo(c: Connector): ConnectorInfo {
  return { kind: c.kind, name: c.metadata.name, display: c.spec.display || c.metadata.name };
}

/** The connector as `tctl get` shows it: the client secret blanked unless asked for. */
export function connectorView(c: Connector, withSecrets: boolean): Connector {
  return withSecrets ? c : ({ ...c, spec: { ...c.spec, client_secret: '' } } as Connector);
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

export class Connectors {
  constructor(private readonly backend: Backend) {}

  async get(kind: ConnectorKind, connectorName: string): Promise<Connector> {
    try {
      const item = await this.backend.get(Keys.connector(kind, connectorName));
      return connectorSchema(kind).parse(JSON.parse(item.value.toString()));
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError(`${kind} connector "${connectorName}" not found`);
      throw err;
    }
  }

  async list(kind: ConnectorKind): Promise<Connector[]> {
    const items = await this.backend.getRange(Keys.connectors(kind), rangeEnd(Keys.connectors(kind)));
    return items.map((i) => connectorSchema(kind).parse(JSON.parse(i.value.toString())));
  }

  async listAll(): Promise<Connector[]> {
    return [...(await this.list('oidc')), ...(await this.list('github'))];
  }

  async upsert(c: Connector, create: boolean): Promise<void> {
    const item = { key: Keys.connector(c.kind, c.metadata.name), value: json(c) };
    if (!create) return void (await this.backend.put(item));
    try {
      await this.backend.create(item);
    } catch (err) {
      if (isReason(err, 'already_exists')) throw new AlreadyExistsError(`${c.kind} connector "${c.metadata.name}" already exists (tctl create -f replaces it)`);
      throw err;
    }
  }

  async delete(kind: ConnectorKind, connectorName: string): Promise<void> {
    try {
      await this.backend.delete(Keys.connector(kind, connectorName));
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError(`${kind} connector "${connectorName}" not found`);
      throw err;
    }
  }
}
