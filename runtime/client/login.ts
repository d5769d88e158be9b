/**
 * `tsh login`: generates an ed25519 SSH key and a P-256 TLS key and gets
 * both certified through the proxy's web API, by the password and second
 * factor of a local user (an OTP code or, with a cluster that takes security
 * keys, the user's key on the proxy's page: securitykey.ts), or by single
 * sign-on in the browser (`--auth=<connector>`, sso.ts); then stores keys,
 * host CAs and the profile. Nothing is written unless the proxy issued
 * certificates.
 */
import { generateKeyPair, formatAuthorizedKey, parseAuthorizedKey, parseCertificate, publicKeyBlob, Certificate } from '../sshcert';
import { generateTlsKey, publicKeyPem } from '../tlsca';
import { BadParameterError } from '../utils/errors';
import { checkHostName, HostCA, saveClusterTlsCAs, saveHostCAs, saveKeys } from './keystore';
import { Profile, saveProfile, splitHostPort } from './profile';
import { Prompter } from './prompt';
import { KeyAnswer, securityKeyAnswer } from './securitykey';
import { ssoLogin, SsoConnector } from './sso';
import { discoverProxy, formatHostPort, parseProxySpec, PingResponse, requestSshCerts, sshProxyAddr, SshLoginResponse, webRequest, WebClientOptions } from './weblogin';

export interface LoginOptions {
  /** `[scheme://]host[:webport][,sshport]` */
  proxy: string;
  /** Required for a local login; a single sign-on login learns it from the provider. */
  user?: string;
  /** `local`, or a connector's name (or `oidc` / `github` for the only connector of that kind). @default the cluster's authentication type and connector_name */
  auth?: string;
  /** `none`: print the single sign-on URL instead of also opening the browser. */
  browser?: 'default' | 'none';
  /** Where the single sign-on URL is written. @default stderr */
  out?: (text: string) => void;
  ttlMinutes?: number;
  insecure?: boolean;
  prompter: Prompter;
  home?: string;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64').toString('utf8');

/**
 * How to log in: `--auth` names `local` or a connector (by name, or `oidc`/`github` when the
 * cluster has exactly one of that kind); without it, the cluster's authentication type and its
 * `connector_name` (or its only connector of that type).
 */
export async function authMethod(web: WebClientOptions, ping: PingResponse, auth: string | undefined): Promise<'local' | SsoConnector> {
  const type = auth ?? ping.auth?.type ?? 'local';
  if (type === 'local') return 'local';
  const { items } = await webRequest<{ items: SsoConnector[] }>(web, 'GET', '/webapi/connectors');
  const name = auth ?? (type === 'oidc' || type === 'github' ? ping.auth?.[type]?.name : undefined);
  const byName = name !== undefined ? items.find((c) => c.name === name) : undefined;
  const ofKind = items.filter((c) => c.kind === type);
  const found = byName ?? (ofKind.length === 1 && (name === undefined || name === type) ? ofKind[0] : undefined);
  if (found) return { kind: found.kind, name: found.name };
  const known = items.map((c) => `${c.name} (${c.kind})`).join(', ') || 'none';
  throw new BadParameterError(`--auth=${name ?? type}: the cluster has no such single sign-on connector (connectors: ${known}); --auth=local logs in with a password`);
}

export async function login(opts: LoginOptions): Promise<{ profile: Profile; cert: Certificate }> {
  if (opts.ttlMinutes !== undefined && (!Number.isInteger(opts.ttlMinutes) || opts.ttlMinutes <= 0)) {
    throw new BadParameterError(`--ttl must be a positive number of minutes, got ${opts.ttlMinutes}`);
  }
  const spec = parseProxySpec(opts.proxy);
  const { web, ping } = await discoverProxy(spec, !!opts.insecure);
  const method = await authMethod(web, ping, opts.auth);
  if (method === 'local' && !opts.user) throw new BadParameterError('tsh login: --user is required (or log in with single sign-on: --auth=<connector>)');

  const pair = generateKeyPair('ed25519');
  const tlsKey = generateTlsKey();
  const keys = { pub_key: b64(formatAuthorizedKey(publicKeyBlob(pair.publicKey))), tls_pub_key: b64(publicKeyPem(tlsKey)), ...(opts.ttlMinutes ? { ttl: opts.ttlMinutes * 60 * 1e9 } : {}) };
  let res: SshLoginResponse;
  if (method === 'local') {
    const user = opts.user!;
    const password = await opts.prompter.ask(`Enter password for Teleport user ${user}:`, { hidden: true });
    const secondFactor = ping.auth?.second_factor ?? 'otp';
    let otp: string | undefined;
    let key: KeyAnswer | undefined;
    if (secondFactor === 'webauthn') key = await securityKeyAnswer(web, user, password);
    else if (secondFactor === 'on' || secondFactor === 'optional') {
      otp = (await opts.prompter.ask('Enter your OTP token (or press Enter to use a security key):', { hidden: false })).trim();
      // optional: a user without any device logs in with the password alone.
      if (!otp) {
        key = await securityKeyAnswer(web, user, password).catch((err: Error) => {
          if (secondFactor === 'optional' && /no security key is registered/.test(err.message)) return undefined;
          throw err;
        });
      }
    } else if (secondFactor !== 'off') otp = await opts.prompter.ask('Enter your OTP token:', { hidden: false });
    res = await requestSshCerts(web, { user, password, ...(otp ? { otp_token: otp.trim() } : {}), ...(key ? { webauthn_response: key } : {}), ...keys });
  } else {
    res = await ssoLogin(web, {
      connector: method,
      publicKey: keys.pub_key,
      tlsPublicKey: keys.tls_pub_key,
      ...(keys.ttl ? { certTtl: keys.ttl } : {}),
      browser: opts.browser ?? 'default',
      out: opts.out ?? ((t) => process.stderr.write(t)),
    });
    if (opts.user && res.username !== opts.user) throw new BadParameterError(`the identity provider logged you in as ${res.username}, not ${opts.user}`);
  }
  const user = res.username;

  const certLine = unb64(res.cert).trim();
  const cert = parseCertificate(certLine);
  if (!cert.publicKey.equals(publicKeyBlob(pair.publicKey))) throw new BadParameterError('the proxy returned a certificate for a different key');
  if (!res.host_signers?.length) throw new BadParameterError('the proxy returned no host certificate authorities');
  // The cluster's own host CA first, then those of its leaf clusters (trusted clusters).
  const cluster = res.host_signers[0].domain_name;
  const casOf = (signers: typeof res.host_signers): HostCA[] =>
    signers.flatMap((s) => s.checking_keys.map((k) => ({ cluster: s.domain_name, key: parseAuthorizedKey(unb64(k)).blob })));
  const tlsOf = (signers: typeof res.host_signers) => signers.flatMap((s) => (s.tls_certs ?? []).map((c) => (c.includes('BEGIN') ? c : unb64(c))));
  const own = res.host_signers.filter((s) => s.domain_name === cluster);
  const leaves = res.host_signers.filter((s) => s.domain_name !== cluster);
  const leafNames = [...new Set(leaves.map((s) => s.domain_name))];
  const cas = casOf(own);
  const tlsCAs = tlsOf(own);

  const profile: Profile = {
    web_proxy_scheme: web.scheme,
    web_proxy_addr: formatHostPort(spec.host, spec.webPort),
    ssh_proxy_addr: sshProxyAddr(spec, ping),
    user,
    cluster,
    ...(leafNames.length ? { leaf_clusters: leafNames } : {}),
    ...(opts.insecure ? { insecure: true } : {}),
  };
  // The names known_hosts will hold (and tsh config's ssh_config), checked before anything is written.
  for (const ca of [...cas, ...casOf(leaves)]) checkHostName(ca.cluster, 'the cluster name the proxy sent');
  const proxyHost = checkHostName(splitHostPort(profile.ssh_proxy_addr).host, "the host of the proxy's SSH address");
  saveKeys(spec.host, user, { privateKey: pair.privateKey, sshCert: certLine, tlsCert: res.tls_cert ? unb64(res.tls_cert) : undefined, tlsKey, tlsCAs }, opts.home);
  saveHostCAs(cas, proxyHost, opts.home);
  // A leaf's host CA is trusted for the leaf's hosts only, never for this proxy.
  saveHostCAs(casOf(leaves), undefined, opts.home);
  for (const name of leafNames) saveClusterTlsCAs(spec.host, name, tlsOf(leaves.filter((s) => s.domain_name === name)), opts.home);
  saveProfile(profile, opts.home);
  return { profile, cert };
}
