/**
 * The proxy's web listener (3080): HTTPS with the configured key pairs, or a
 * self-signed certificate made on first start (`webproxy_{key,cert}.pem` in
 * data_dir), or plain HTTP with `--insecure-no-tls` behind a load balancer
 * that terminates TLS. Serves the web API (all also under `/v1`):
 *   GET  /webapi/ping                     load balancer health checks, client discovery
 *   POST /webapi/ssh/certs                tsh login: password + second factor in, certificates out
 *   GET  /webapi/signuptokens/:token      what the sign-up page shows (user, TOTP enrolment URL and QR code)
 *   POST /webapi/signuptokens/:token      completes the sign-up (password + TOTP code)
 *   POST   /webapi/sessions               browser login: password + second factor in, bearer token out
 *   DELETE /webapi/sessions/current       logout (bearer; also DELETE /webapi/sessions, as Teleport has it)
 *   GET    /webapi/sites                  the cluster this proxy serves (bearer)
 *   GET    /webapi/sites/:site/nodes      the nodes the user may see, with the logins they may use (bearer; also under /namespaces/default)
 *   GET    /webapi/sites/:site/connect    Upgrade: websocket, the browser terminal (cookie + bearer; terminal.ts)
 *   GET    /webapi/sites/:site/events/search  the audit log, searched as the session's user (bearer; runtime/auth/audit-search.ts)
 *   GET    /webapi/auth/connect           Upgrade: teleport-auth, a byte pipe to the auth API for nodes behind NAT (authpipe.ts)
 * and WebAuthn security keys (relyingparty.ts: only on the proxy's public address):
 *   POST /webapi/signuptokens/:token/webauthn  `{publicKey}` options to register a key at sign-up
 *   POST /webapi/mfa/login/begin               password in, `{publicKey}` options for the user's keys out (then POST /webapi/sessions with `webauthn_response`)
 *   POST /webapi/mfa/authenticatechallenge     `{publicKey}` options for the session user's keys (bearer; account changes)
 *   POST /webapi/mfa/offer/webauthn            password and second factor in, `{publicKey}` options to register a new key out (bearer)
 *   POST /webapi/mfa/cli/begin                 tsh login: password in, `{request_id, secret, url}` out: the page (/web/cli-mfa/<id>) where the user uses their key
 *   POST /webapi/mfa/cli/:id/challenge         that page: `{user, from, publicKey}` (from: tsh's address)
 *   POST /webapi/mfa/cli/:id/answer            that page: the key's answer, kept for tsh
 *   POST /webapi/mfa/cli/:id/collect           tsh, with its secret: `{webauthn_response}` once the page answered, else `{pending: true}`
 * and the browser UI's pages and files from runtime/proxy/webui (see pages.ts).
 * Bodies are JSON of at most 64 KiB, validated by one schema each; a bad one gets a 4xx.
 * Requests that change something must not come from another site and POSTs
 * must be declared JSON (crossorigin.ts: 403 / 415). A browser login also sets
 * the session's token in an HttpOnly cookie, which the terminal's WebSocket
 * needs beside the bearer token (terminal.ts); logout removes it. Logins and logouts carry
 * the client's address (clientaddr.ts) to the auth server.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as tls from 'node:tls';
import * as path from 'node:path';
import { toString as qrCodeText } from 'qrcode';
import { z } from 'zod';
import { decodePathPart, readJsonBody, requestUrl, sendError, sendJson } from '../auth/http';
import type { ExportType } from '../auth/export';
import { serverAddress, serverLabels } from '../auth/resources';
import type { ActiveSession } from '../node/shared';
import type { UserNode } from '../auth/server';
import type { MfaDeviceInfo } from '../auth/mfa';
import { assertionResponseSchema, registrationResponseSchema, type RelyingParty } from '../auth/webauthn';
import type { PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import type { Cidr, HostPort } from '../config';
import { selfSignedServerCert } from '../tlsca';
import { policyKeyMismatch, tlsPolicy } from '../tlsca/ciphersuites';
import { AccessDeniedError, BadParameterError, isReason, NotFoundError } from '../utils/errors';
import { Logger } from '../utils/logger';
import { listen } from '../service/listen';
import { HTTP_LIMITS, limitBeforeRequest } from '../service/httplimits';
import { ACME_TLS_ALPN, AcmeCertificates, type PemPair } from './acme';
import { readClientHello } from './clienthello';
import type { Duplex } from 'node:stream';
import { serveAuthPipe } from './authpipe';
import { ClientAddress } from './clientaddr';
import { checkNotCrossSite, UnsupportedMediaTypeError } from './crossorigin';
import { loadKeyPairs, ServedKeyPairs } from './keypairs';
import { CONTENT_SECURITY_POLICY, WebUi } from './pages';
import { publicWebUrl, relyingParty } from './relyingparty';
import { isTerminalRequest, sessionCookieHeader, Terminals, type TerminalOptions } from './terminal';
import { beginWebLogin, completeLogin, consoleLoginSchema, handOffSession, SSO_PATH, type SsoApi } from './sso';

export interface PingResponse {
  /** Ours (Teleport 4.x has none): the pages show it; the auth service's ping and the proxy's host certificate name it to anyone already. */
  cluster_name: string;
  auth: { type: string; second_factor: string; oidc?: { name: string }; github?: { name: string } };
  proxy: { ssh: { listen_addr: string; tunnel_listen_addr: string; public_addr: string; ssh_public_addr: string; ssh_tunnel_public_addr?: string } };
  server_version: string;
  min_client_version: string;
}

/** What the auth service says about a sign-up token (runtime/auth/login.ts SignupTokenInfo). */
export interface SignupInfo {
  user: string;
  otp_url?: string;
  [field: string]: unknown;
}

/** A browser session as the auth service hands it out; the token is shown once. */
export interface NewWebSession {
  token: string;
  user: string;
  /** Seconds. */
  expires_in: number;
}

/** A node as the web UI lists it (Teleport's `ui.Server`, plus `logins`). */
export interface WebNode {
  id: string;
  siteId: string;
  hostname: string;
  addr: string;
  tags: { name: string; value: string }[];
  /** Ours: the logins the user may use on the node, exactly those the access decision allows there. */
  logins: string[];
}

/** What the web API asks of the cluster (the auth service, through the proxy's identity). */
export interface WebApi extends SsoApi {
  /** The cluster this proxy serves: the one "site" of the web API. */
  clusterName: string;
  ping(): Promise<PingResponse>;
  /** The cluster's CAs' public keys in OpenSSH's formats (auth/export.ts), every key of each (two during a rotation). */
  exportCAs(type: ExportType | undefined): string[];
  /** `clientAddr`: the address of the client the request came from. */
  login(user: string, body: LoginBody, clientAddr: string): Promise<unknown>;
  signupToken(token: string): Promise<SignupInfo>;
  completeSignup(token: string, body: SignupBody): Promise<unknown>;
  createSession(creds: { user: string; password: string; otpToken?: string; webauthn?: WebAuthnAssertion }, clientAddr: string): Promise<NewWebSession>;
  /** The session's user and expiry (ISO 8601); AccessDeniedError when the token is unknown or expired. */
  getSession(token: string): Promise<{ user: string; expires?: string }>;
  sessionNodes(token: string): Promise<UserNode[]>;
  /** Changes the web session's user's password, checking the current one and the second factor as a login does. */
  changePassword(token: string, body: ChangePasswordBody, clientAddr: string): Promise<void>;
  /** A page of a recording's events (print events included), if the session's user may read it. */
  recordingEvents(token: string, sid: string, q: { after?: number; limit?: number }): Promise<unknown[]>;
  /** A chunk of a recording's bytes from `offset`, if the session's user may read it (empty past the end). */
  recordingStream(token: string, sid: string, q: { offset?: number; bytes?: number }): Promise<Buffer>;
  /** The interactive sessions running on nodes the session's user may see, each saying whether they may join it. */
  activeSessions(token: string): Promise<(ActiveSession & { joinable: boolean })[]>;
  /** `{events}`: the audit events the URL query (`?from=&to=&event=&user=&limit=`) asks for, if the session's user may read the audit log. */
  searchEvents(token: string, query: string): Promise<unknown[]>;
  /** A user certificate (authorized_keys line) for the session's user and this public key, for the browser terminal. */
  sessionCert(token: string, sshPublicKey: string): Promise<{ cert: string }>;
  deleteSession(token: string, clientAddr: string): Promise<void>;
  /** The session's user, their roles and the cluster's second factor: the user menu and the account page. */
  userContext(token: string): Promise<{ user: string; roles: string[]; second_factor: string }>;
  /** The session's user's second-factor devices (never their secrets). */
  mfaDevices(token: string): Promise<MfaDeviceInfo[]>;
  /** A new TOTP secret for the session's user to set up, after their password and a current code (as at login). */
  offerMfaDevice(token: string, body: MfaOfferBody, clientAddr: string): Promise<{ otp_secret: string; otp_url: string; expires: string }>;
  /** Adds the offered secret as device `name` when the code comes from it. */
  addMfaDevice(token: string, body: MfaAddBody, clientAddr: string): Promise<MfaDeviceInfo>;
  /** Removes a device, after the password and a current code (as at login). */
  deleteMfaDevice(token: string, name: string, body: MfaDeleteBody, clientAddr: string): Promise<void>;
  /** Options to register a security key at sign-up with `token`. */
  signupWebAuthnOptions(token: string, rp: RelyingParty): Promise<PublicKeyCredentialCreationOptionsJSON>;
  /** Step one of a login with a security key: the password checked, options for the user's keys. */
  webAuthnLoginChallenge(creds: { user: string; password: string }, rp: RelyingParty, clientAddr: string): Promise<PublicKeyCredentialRequestOptionsJSON>;
  /** Options for the keys of the web session's user, for an account change. */
  webAuthnChallenge(token: string, rp: RelyingParty): Promise<PublicKeyCredentialRequestOptionsJSON>;
  /** Options to register a new security key, after the password and the second factor. */
  offerWebAuthnDevice(token: string, body: MfaOfferBody, rp: RelyingParty, clientAddr: string): Promise<PublicKeyCredentialCreationOptionsJSON>;
  /** tsh login with a security key: the password checked, a request for the proxy page to answer (runtime/auth/webauthn-cli.ts). */
  webAuthnCliRequest(creds: { user: string; password: string }, clientAddr: string): Promise<{ id: string; secret: string; expires: string }>;
  webAuthnCliChallenge(id: string, rp: RelyingParty): Promise<{ user: string; from: string; publicKey: PublicKeyCredentialRequestOptionsJSON }>;
  webAuthnCliAnswer(id: string, answer: WebAuthnAssertion): Promise<void>;
  webAuthnCliCollect(id: string, secret: string): Promise<{ webauthn_response?: WebAuthnAssertion; pending?: boolean }>;
  /** A leaf cluster asks to establish trust (runtime/auth/trust.ts): the auth server checks the token and exchanges CAs. */
  validateTrustedCluster(body: ValidateTrustedClusterBody, clientAddr: string): Promise<unknown>;
}

/** A security key's answer (navigator.credentials.get, as JSON), instead of a second_factor_token. */
const webauthnResponse = assertionResponseSchema.optional();
export type WebAuthnAssertion = z.infer<typeof assertionResponseSchema>;

/** `PUT /webapi/users/password` (Teleport 4.x's changePasswordReq). */
export const changePasswordSchema = z
  .object({
    old_password: z.string().min(1).max(1024),
    new_password: z.string().min(1).max(1024),
    second_factor_token: z.string().max(16).optional(),
    webauthn_response: webauthnResponse,
  })
  .strict();
export type ChangePasswordBody = z.infer<typeof changePasswordSchema>;

/** `POST /webapi/mfa/offer`: the first step of adding a second-factor device. */
export const mfaOfferSchema = z
  .object({ password: z.string().min(1).max(1024), second_factor_token: z.string().max(16).optional(), webauthn_response: webauthnResponse })
  .strict();
export type MfaOfferBody = z.infer<typeof mfaOfferSchema>;
/** `POST /webapi/mfa/devices`: the device's name and a code from it, or a security key's registration. */
export const mfaAddSchema = z
  .object({ name: z.string().min(1).max(64), second_factor_token: z.string().min(1).max(16).optional(), webauthn_registration: registrationResponseSchema.optional() })
  .strict()
  .refine((b) => (b.second_factor_token === undefined) !== (b.webauthn_registration === undefined), 'give second_factor_token or webauthn_registration');
export type MfaAddBody = z.infer<typeof mfaAddSchema>;
/** `DELETE /webapi/mfa/devices/<name>`. */
export const mfaDeleteSchema = mfaOfferSchema;
export type MfaDeleteBody = z.infer<typeof mfaDeleteSchema>;

/** `POST /webapi/trustedclusters/validate` (Teleport's ValidateTrustedClusterRequest). */
export const validateTrustedClusterSchema = z.object({ token: z.string().min(1).max(1024), certificate_authorities: z.array(z.unknown()).max(4) }).strict();
export type ValidateTrustedClusterBody = z.infer<typeof validateTrustedClusterSchema>;

const WEB_BODY_LIMIT = 64 * 1024;
const TOKEN_RE = /^[0-9a-f]{32}$/;

/** `POST /webapi/ssh/certs` (formats.md §4.3 CreateSSHCertReq). */
export const loginBodySchema = z
  .object({
    user: z.string().min(1).max(255),
    password: z.string().min(1).max(1024),
    otp_token: z.string().max(16).optional(),
    hotp_token: z.string().max(16).optional(),
    webauthn_response: webauthnResponse,
    pub_key: z.string().min(1).max(16384),
    tls_pub_key: z.string().max(16384).optional(),
    ttl: z.number().int().nonnegative().optional(),
    compatibility: z.string().max(32).optional(),
    route_to_cluster: z.string().max(255).optional(),
  })
  .strict();
export type LoginBody = z.infer<typeof loginBodySchema>;

export const signupBodySchema = z
  .object({ password: z.string().min(1).max(1024), otp_token: z.string().max(16).optional(), webauthn_registration: registrationResponseSchema.optional() })
  .strict();
export type SignupBody = z.infer<typeof signupBodySchema>;

/** `POST /webapi/sessions` (Teleport's createSessionReq). */
export const sessionBodySchema = z
  .object({ user: z.string().min(1).max(255), pass: z.string().min(1).max(1024), second_factor_token: z.string().max(16).optional(), webauthn_response: webauthnResponse })
  .strict();

export const cliAnswerSchema = z.object({ webauthn_response: assertionResponseSchema }).strict();
export const cliCollectSchema = z.object({ secret: z.string().min(1).max(128) }).strict();

/** `POST /webapi/mfa/login/begin` (and `/webapi/mfa/cli/begin`): step one of a login with a security key. */
export const webAuthnLoginBeginSchema = z.object({ user: z.string().min(1).max(255), pass: z.string().min(1).max(1024) }).strict();

/** A request without any bearer token: 401, so the page knows to log in. */
class NoBearerError extends AccessDeniedError {}

const BEARER_RE = /^Bearer ([0-9a-f]{64})$/i;

/** The web session token from `Authorization: Bearer <token>`. */
function bearer(req: http.IncomingMessage): string {
  const h = req.headers.authorization;
  if (!h) throw new NoBearerError('this API needs a web session: log in and send Authorization: Bearer <token>');
  const m = BEARER_RE.exec(h);
  if (!m) throw new AccessDeniedError('invalid or expired web session; log in again');
  return m[1];
}

/** The QR code of an `otpauth://` URL, as an SVG data URL for an <img>. */
async function qrCode(text: string): Promise<string> {
  const svg = await qrCodeText(text, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
  return 'data:image/svg+xml;base64,' + Buffer.from(svg).toString('base64');
}

/** The cluster a `/webapi/sites/<site>/…` path names, if it is this proxy's; otherwise, for a live web session (401/403 first), NotFound. */
async function servedSite(api: WebApi, token: string, encoded: string): Promise<string> {
  const site = decodePathPart(encoded);
  if (site === api.clusterName) return site;
  await api.getSession(token);
  throw new NotFoundError(`cluster "${site}" is not served by this proxy; it serves "${api.clusterName}"`);
}

/** A non-negative integer query parameter, undefined when absent; BadParameterError otherwise. */
function queryCount(url: URL, name: string): number | undefined {
  const v = url.searchParams.get(name);
  if (v === null) return undefined;
  if (!/^\d{1,15}$/.test(v)) throw new BadParameterError(`${name} must be a non-negative integer, got ${JSON.stringify(v.slice(0, 32))}`);
  return Number(v);
}

function webNode({ server: s, logins }: UserNode, site: string): WebNode {
  const labels = serverLabels(s);
  return {
    id: s.metadata.name,
    siteId: site,
    hostname: s.spec.hostname,
    addr: serverAddress(s),
    tags: Object.keys(labels)
      .sort()
      .map((name) => ({ name, value: labels[name] })),
    logins,
  };
}

async function parseBody<T>(req: http.IncomingMessage, schema: z.ZodType<T>): Promise<T> {
  const parsed = schema.safeParse((await readJsonBody(req, WEB_BODY_LIMIT)) ?? {});
  if (parsed.success) return parsed.data;
  throw new BadParameterError('invalid request: ' + parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; '));
}

/** What an unknown, expired or used sign-up link gets: the way to a new one. */
export const SIGNUP_LINK_GONE =
  'sign-up token not found or expired (or already used): ask an administrator for a new sign-up link (tctl users reset <user>)';

function signupToken(value: string): string {
  if (!TOKEN_RE.test(value)) throw new NotFoundError(SIGNUP_LINK_GONE);
  return value;
}

/** A call about a sign-up token, whose "not found" (expired, used) says how to get a new link. */
async function signupCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (isReason(err, 'not_found')) throw new NotFoundError(SIGNUP_LINK_GONE);
    throw err;
  }
}

export interface WebServiceOptions {
  listen: { host: string; port: number };
  dataDir: string;
  /** Configured certificate/key files (the first by default, the others by SNI); empty means self-signed. */
  keyPairs: { keyFile: string; certFile: string }[];
  insecureNoTls: boolean;
  /** `proxy_service.acme`: the certificate comes from an ACME server (keyPairs is empty then). */
  acme?: AcmeCertificates;
  /** `teleport.ciphersuites`: narrows the TLS policy (runtime/tlsca/ciphersuites.ts). */
  cipherSuites?: readonly string[];
  /** `proxy_service.trust_x_forwarded_for_from`: load balancers that name the client in X-Forwarded-For. */
  trustXForwardedForFrom?: readonly Cidr[];
  /** DNS names and IPs for the self-signed certificate. */
  hostNames: string[];
  /** `proxy_service.public_addr`: where security keys may be used (relyingparty.ts). */
  publicAddrs?: readonly HostPort[];
  api: WebApi;
  /** Opens a TCP connection to an auth server, for the auth pipe of nodes behind NAT (authpipe.ts); without it the pipe is refused. */
  connectAuth?: () => Promise<import('node:net').Socket>;
  /** Auth pipes open at once. @default 15000 */
  maxAuthPipes?: number;
  /** The browser terminal: the proxy's own SSH listener and the cluster's host CA keys; without it terminals are refused. */
  terminal?: Pick<TerminalOptions, 'sshProxyAddr' | 'localClients' | 'hostCAs' | 'audit' | 'serverId' | 'sessionCheckMs'>;
  log: Logger;
}

export interface WebService {
  readonly address: { host: string; port: number };
  readonly scheme: 'https' | 'http';
  close(): Promise<void>;
}

const SECURITY_HEADERS = {
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'content-security-policy': CONTENT_SECURITY_POLICY,
};

/** The key pairs to serve: the configured ones (chosen by SNI), or the self-signed one kept in data_dir (made once, 0600). */
/** The self-signed certificate's file when no key pair is configured (`teleport start` names it for clients to trust). */
export function selfSignedCertFile(dataDir: string): string {
  return path.join(dataDir, 'webproxy_cert.pem');
}

async function loadKeyPair(opts: WebServiceOptions): Promise<ServedKeyPairs> {
  if (opts.keyPairs.length > 0) return loadKeyPairs(opts.keyPairs);
  const keyFile = path.join(opts.dataDir, 'webproxy_key.pem');
  const certFile = selfSignedCertFile(opts.dataDir);
  if (!fs.existsSync(keyFile) || !fs.existsSync(certFile)) {
    const pair = await selfSignedServerCert(opts.hostNames);
    fs.writeFileSync(keyFile, pair.key, { mode: 0o600 });
    fs.writeFileSync(certFile, pair.cert, { mode: 0o600 });
    if (!opts.acme) opts.log.warn('serving HTTPS with a self-signed certificate; set https_keypairs for one clients trust', { cert: certFile });
  }
  return { key: fs.readFileSync(keyFile, 'utf8'), cert: fs.readFileSync(certFile, 'utf8') };
}

export async function startWebService(opts: WebServiceOptions): Promise<WebService> {
  const { log } = opts;
  const ui = new WebUi(log);
  const clients = new ClientAddress(opts.trustXForwardedForFrom);
  const terminals = opts.terminal ? new Terminals({ ...opts.terminal, api: opts.api, tls: !opts.insecureNoTls, clientAddr: (req) => clients.of(req), log: log.child('terminal') }) : undefined;
  const handler = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    try {
      checkNotCrossSite(req, !opts.insecureNoTls);
      const url = requestUrl(req);
      const route = url.pathname.replace(/^\/v1(?=\/webapi\/)/, '');
      const signup = /^\/webapi\/signuptokens\/([^/]+)$/.exec(route);
      const signupKey = /^\/webapi\/signuptokens\/([^/]+)\/webauthn$/.exec(route);
      const rp = () => relyingParty(req, opts.publicAddrs ?? [], !opts.insecureNoTls);
      const cli = /^\/webapi\/mfa\/cli\/([^/]+)\/(challenge|answer|collect)$/.exec(route);
      const nodes = /^\/webapi\/sites\/([^/]+)(?:\/namespaces\/default)?\/nodes$/.exec(route);
      const live = /^\/webapi\/sites\/([^/]+)(?:\/namespaces\/default)?\/sessions$/.exec(route);
      const device = /^\/webapi\/mfa\/devices\/([^/]+)$/.exec(route);
      const events = /^\/webapi\/sites\/([^/]+)\/events\/search$/.exec(route);
      const recording = /^\/webapi\/sites\/([^/]+)(?:\/namespaces\/default)?\/sessions\/([0-9a-f-]{36})\/(events|stream)$/.exec(route);
      const { api } = opts;
      const read = req.method === 'GET' || req.method === 'HEAD';
      const sso = SSO_PATH.exec(route);
      if (route === '/webapi/ping' && read) {
        sendJson(res, 200, await api.ping());
      } else if (route === '/webapi/auth/export' && read) {
        // Public keys, for anyone (as Teleport's): OpenSSH users and tsh refresh their trust from here during a rotation.
        const type = url.searchParams.get('type') ?? undefined;
        if (type !== undefined && !['user', 'host', 'tls'].includes(type)) throw new BadParameterError('type must be user, host or tls');
        const body = api.exportCAs(type as ExportType | undefined).join('\n') + '\n';
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
        res.end(body);
      } else if (route === '/webapi/connectors' && read) {
        sendJson(res, 200, { items: await api.connectors() });
      } else if (sso && sso[2] === 'login/web' && req.method === 'GET') {
        await beginWebLogin(api, sso[1], url, res, clients.of(req));
      } else if (sso && sso[2] === 'login/console' && req.method === 'POST') {
        sendJson(res, 200, await api.ssoBegin(sso[1], { type: 'console', ...(await parseBody(req, consoleLoginSchema)) }, clients.of(req)));
      } else if (sso && sso[2] === 'callback' && req.method === 'GET') {
        // GET only: a HEAD (a link checker, a prefetch) must not use up the login's state.
        await completeLogin(api, sso[1], url, req, res, clients.of(req));
      } else if (route === '/webapi/sessions/sso' && req.method === 'POST') {
        sendJson(res, 200, { ...(await handOffSession(api, req, res)), token_type: 'Bearer' });
      } else if (route === '/webapi/ssh/certs' && req.method === 'POST') {
        const body = await parseBody(req, loginBodySchema);
        sendJson(res, 200, await api.login(body.user, body, clients.of(req)));
      } else if (signup && req.method === 'GET') {
        const info = await signupCall(() => api.signupToken(signupToken(signup[1])));
        sendJson(res, 200, info.otp_url ? { ...info, qr_code: await qrCode(info.otp_url) } : info);
      } else if (signup && req.method === 'POST') {
        const body = await parseBody(req, signupBodySchema);
        sendJson(res, 200, await signupCall(() => api.completeSignup(signupToken(signup[1]), body)));
      } else if (route === '/webapi/sessions' && req.method === 'POST') {
        const body = await parseBody(req, sessionBodySchema);
        const creds = {
          user: body.user,
          password: body.pass,
          ...(body.second_factor_token ? { otpToken: body.second_factor_token } : {}),
          ...(body.webauthn_response ? { webauthn: body.webauthn_response } : {}),
        };
        const s = await api.createSession(creds, clients.of(req));
        res.setHeader('set-cookie', sessionCookieHeader(s.token, s.expires_in));
        sendJson(res, 200, { token: s.token, token_type: 'Bearer', expires_in: s.expires_in, user: s.user });
      } else if ((route === '/webapi/sessions/current' || route === '/webapi/sessions') && req.method === 'DELETE') {
        const token = bearer(req);
        await api.deleteSession(token, clients.of(req));
        terminals?.sessionEnded(token);
        res.setHeader('set-cookie', sessionCookieHeader('', 0));
        sendJson(res, 200, {});
      } else if (route === '/webapi/users/password' && req.method === 'PUT') {
        const token = bearer(req);
        const body = await parseBody(req, changePasswordSchema);
        await api.changePassword(token, body, clients.of(req));
        sendJson(res, 200, {});
      } else if (route === '/webapi/user/context' && read) {
        sendJson(res, 200, await api.userContext(bearer(req)));
      } else if (route === '/webapi/mfa/devices' && read) {
        sendJson(res, 200, { items: await api.mfaDevices(bearer(req)) });
      } else if (route === '/webapi/mfa/offer' && req.method === 'POST') {
        const token = bearer(req);
        const offer = await api.offerMfaDevice(token, await parseBody(req, mfaOfferSchema), clients.of(req));
        sendJson(res, 200, { ...offer, qr_code: await qrCode(offer.otp_url) });
      } else if (route === '/webapi/mfa/devices' && req.method === 'POST') {
        const token = bearer(req);
        sendJson(res, 200, await api.addMfaDevice(token, await parseBody(req, mfaAddSchema), clients.of(req)));
      } else if (device && req.method === 'DELETE') {
        const token = bearer(req);
        await api.deleteMfaDevice(token, decodePathPart(device[1]), await parseBody(req, mfaDeleteSchema), clients.of(req));
        sendJson(res, 200, {});
      } else if (signupKey && req.method === 'POST') {
        const party = rp();
        sendJson(res, 200, { publicKey: await signupCall(() => api.signupWebAuthnOptions(signupToken(signupKey[1]), party)) });
      } else if (route === '/webapi/mfa/login/begin' && req.method === 'POST') {
        const body = await parseBody(req, webAuthnLoginBeginSchema);
        sendJson(res, 200, { publicKey: await api.webAuthnLoginChallenge({ user: body.user, password: body.pass }, rp(), clients.of(req)) });
      } else if (route === '/webapi/mfa/authenticatechallenge' && req.method === 'POST') {
        const token = bearer(req);
        sendJson(res, 200, { publicKey: await api.webAuthnChallenge(token, rp()) });
      } else if (route === '/webapi/mfa/offer/webauthn' && req.method === 'POST') {
        const token = bearer(req);
        const body = await parseBody(req, mfaOfferSchema);
        sendJson(res, 200, { publicKey: await api.offerWebAuthnDevice(token, body, rp(), clients.of(req)) });
      } else if (route === '/webapi/mfa/cli/begin' && req.method === 'POST') {
        const body = await parseBody(req, webAuthnLoginBeginSchema);
        const site = publicWebUrl(opts.publicAddrs ?? []);
        const r = await api.webAuthnCliRequest({ user: body.user, password: body.pass }, clients.of(req));
        sendJson(res, 200, { request_id: r.id, secret: r.secret, expires: r.expires, url: `${site}/web/cli-mfa/${r.id}` });
      } else if (cli && req.method === 'POST') {
        const id = decodePathPart(cli[1]);
        if (cli[2] === 'challenge') sendJson(res, 200, await api.webAuthnCliChallenge(id, rp()));
        else if (cli[2] === 'answer') {
          const body = await parseBody(req, cliAnswerSchema);
          rp(); // only a page on the proxy's public address answers
          await api.webAuthnCliAnswer(id, body.webauthn_response);
          sendJson(res, 200, {});
        } else sendJson(res, 200, await api.webAuthnCliCollect(id, (await parseBody(req, cliCollectSchema)).secret));
      } else if (route === '/webapi/trustedclusters/validate' && req.method === 'POST') {
        const body = await parseBody(req, validateTrustedClusterSchema);
        sendJson(res, 200, await api.validateTrustedCluster(body, clients.of(req)));
      } else if (route === '/webapi/sites' && read) {
        const { user } = await api.getSession(bearer(req));
        sendJson(res, 200, { items: [{ name: api.clusterName, status: 'online' }], user });
      } else if (nodes && read) {
        const token = bearer(req);
        const site = await servedSite(api, token, nodes[1]);
        sendJson(res, 200, { items: (await api.sessionNodes(token)).map((s) => webNode(s, site)) });
      } else if (recording && read) {
        const token = bearer(req);
        await servedSite(api, token, recording[1]);
        const n = (name: string) => queryCount(url, name);
        if (recording[3] === 'events') sendJson(res, 200, { events: await api.recordingEvents(token, recording[2], { after: n('after'), limit: n('limit') }) });
        else {
          const bytes = await api.recordingStream(token, recording[2], { offset: n('offset'), bytes: n('bytes') });
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length, 'cache-control': 'no-store' });
          res.end(bytes);
        }
      } else if (events && read) {
        const token = bearer(req);
        await servedSite(api, token, events[1]);
        sendJson(res, 200, { events: await api.searchEvents(token, url.search.slice(1)) });
      } else if (live && read) {
        const token = bearer(req);
        await servedSite(api, token, live[1]);
        sendJson(res, 200, { sessions: await api.activeSessions(token) });
      } else if (read && (await ui.serve(url.pathname, req, res))) {
        // a page or one of its files
      } else {
        throw new NotFoundError(`no page at ${url.pathname}`);
      }
    } catch (err) {
      if (err instanceof NoBearerError) {
        res.setHeader('www-authenticate', 'Bearer');
        sendJson(res, 401, { error: { reason: err.reason, message: err.message } });
      } else if (err instanceof UnsupportedMediaTypeError) {
        sendJson(res, 415, { error: { reason: err.reason, message: err.message } });
      } else {
        sendError(res, err, log);
      }
    }
  };
  let server: http.Server;
  /** The listening socket: the server itself, or with ACME a front that reads each ClientHello first. */
  let listener: net.Server;
  let installCertificate: ((pair: PemPair) => void) | undefined;
  /** Ends the front's connections that are not the HTTPS server's (hellos being read, validations). */
  let endFrontConnections = () => undefined as void;
  if (opts.insecureNoTls) {
    server = listener = http.createServer(handler);
  } else {
    const policy = tlsPolicy(opts.cipherSuites);
    const pair = opts.acme?.certificate ?? (await loadKeyPair(opts));
    if (opts.acme && !opts.acme.certificate) {
      log.warn('no ACME certificate yet: serving a self-signed one until the ACME server issues it', { cert: selfSignedCertFile(opts.dataDir) });
    }
    const mismatch = policyKeyMismatch(policy, pair.key);
    if (mismatch) log.warn(mismatch);
    const httpsServer = https.createServer({ ...pair, ...policy }, handler);
    server = listener = httpsServer;
    if (opts.acme) ({ listener, endConnections: endFrontConnections } = acmeFront(httpsServer, opts.acme, log));
    installCertificate = (next) => httpsServer.setSecureContext({ ...next, ...policy });
  }
  limitBeforeRequest(server, !opts.insecureNoTls);
  const pipes = new Set<Duplex>();
  const connectAuth = opts.connectAuth;
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if (terminals && isTerminalRequest(req)) terminals.upgrade(req, socket, head);
    else if (connectAuth) serveAuthPipe(req, socket, head, { connectAuth, open: pipes, maxPipes: opts.maxAuthPipes ?? 15_000, log });
    else socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });
  try {
    await listen(listener, opts.listen, 'proxyWeb');
  } catch (err) {
    opts.acme?.close();
    throw err;
  }
  // Once listening: the CA's validation comes to this port.
  if (installCertificate) opts.acme?.start(installCertificate);
  const address = { host: opts.listen.host, port: (listener.address() as net.AddressInfo).port };
  const scheme = opts.insecureNoTls ? 'http' : 'https';
  log.info('web service is listening', { addr: `${scheme}://${address.host}:${address.port}` });
  return {
    address,
    scheme,
    close: async () => {
      opts.acme?.close();
      const closed = (s: net.Server) => new Promise<void>((resolve) => s.close(() => resolve()));
      // (the HTTPS server behind a front never listened: its close only waits for its connections)
      const done = Promise.all([closed(server), ...(listener !== server ? [closed(listener)] : [])]);
      server.closeAllConnections();
      endFrontConnections();
      for (const p of pipes) p.destroy();
      terminals?.close();
      await done;
    },
  };
}

/**
 * The web listener with ACME: each connection's ClientHello is read first. One offering
 * only `acme-tls/1` is a TLS-ALPN-01 validation and gets the challenge certificate for the name
 * it asks for (or is closed when none is pending); every other goes to the HTTPS server
 * with its bytes untouched. A malformed hello closes that connection only.
 */
function acmeFront(server: https.Server, acme: AcmeCertificates, log: Logger): { listener: net.Server; endConnections: () => void } {
  const open = new Set<net.Socket>();
  const listener = net.createServer((socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    readClientHello(socket, HTTP_LIMITS.handshakeMs).then(
      (hello) => {
        // RFC 8737: a validation offers acme-tls/1 and nothing else.
        if (hello.alpn.length !== 1 || hello.alpn[0] !== ACME_TLS_ALPN) {
          server.emit('connection', socket);
          return;
        }
        const secureContext = acme.challengeContext(hello.serverName);
        if (!secureContext) {
          log.debug('a TLS-ALPN-01 validation for a name with no pending challenge; closed', { server_name: hello.serverName });
          socket.destroy();
          return;
        }
        const challenge = new tls.TLSSocket(socket, { isServer: true, secureContext, ALPNProtocols: [ACME_TLS_ALPN] });
        challenge.setTimeout(HTTP_LIMITS.handshakeMs, () => challenge.destroy());
        challenge.once('secure', () => challenge.end());
        challenge.on('error', () => challenge.destroy());
        log.info('answering a TLS-ALPN-01 validation', { server_name: hello.serverName, from: socket.remoteAddress });
      },
      (err) => log.debug('closed a connection that did not start with a TLS ClientHello', { from: socket.remoteAddress, error: (err as Error).message }),
    );
  });
  return { listener, endConnections: () => open.forEach((s) => s.destroy()) };
}
