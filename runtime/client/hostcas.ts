/**
 * tsh's side of a host CA rotation: certificates from the new host CA (presented by nodes and the
 * proxy from `update_servers` on, and by the auth server's TLS) are not among the host CAs saved
 * at login. When a connection is refused for that reason alone (a CA tsh does not know, before any
 * request was sent), tsh reads the host CAs the proxy publishes now (`/webapi/auth/export`, over
 * HTTPS with the proxy's certificate checked, as login checked it), saves them, and tries once more.
 * A login made with --insecure never does this: nothing would vouch for the keys it got, so the
 * user is told to log in again.
 */
import { AccessDeniedError } from '../utils/errors';
import type { CurrentLogin } from './cluster';
import { checkHostName, loadHostCAs, loadTlsCredentials, parseKnownHostsCA, saveHostCAs, saveLoginTlsCAs } from './keystore';
import { profileProxyHost, splitHostPort } from './profile';
import { isUntrustedCertError, webRequest } from './weblogin';

/** A host certificate signed by a CA that is not among those trusted for the cluster. */
export class UnknownHostCAError extends AccessDeniedError {}

const PEM_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Saves the host CAs (SSH keys and TLS certificates) the proxy publishes for the login's cluster; false when nothing changed. */
export async function refreshHostCAs(me: CurrentLogin): Promise<boolean> {
  const { profile } = me;
  if (profile.insecure || profile.web_proxy_scheme !== 'https') return false;
  const { host, port } = splitHostPort(profile.web_proxy_addr);
  const web = { scheme: profile.web_proxy_scheme, host, port };
  const [hostText, tlsText] = await Promise.all([
    webRequest<string>(web, 'GET', '/webapi/auth/export?type=host'),
    webRequest<string>(web, 'GET', '/webapi/auth/export?type=tls'),
  ]);
  const cas = String(hostText)
    .split('\n')
    .map(parseKnownHostsCA)
    .flatMap((ca) => (ca && ca.cluster === profile.cluster ? [{ cluster: ca.cluster, key: ca.key }] : []));
  const pems = String(tlsText).match(PEM_RE) ?? [];
  if (!cas.length || !pems.length) return false;
  const proxyHost = profileProxyHost(profile);
  const knownKeys = loadHostCAs(profile.cluster, me.home);
  const knownPems = loadTlsCredentials(proxyHost, profile.user, me.home).ca;
  const sameKeys = cas.length === knownKeys.length && cas.every((c) => knownKeys.some((k) => k.equals(c.key)));
  const samePems = pems.length === knownPems.length && pems.every((p) => knownPems.includes(p));
  if (sameKeys && samePems) return false;
  saveHostCAs(cas, checkHostName(splitHostPort(profile.ssh_proxy_addr).host, "the host of the proxy's SSH address"), me.home);
  saveLoginTlsCAs(proxyHost, profile.user, pems, me.home);
  return true;
}

/**
 * Runs `attempt`; when it fails on a host certificate from a CA tsh does not trust (SSH or TLS),
 * refreshes the host CAs from the proxy and, if they changed, runs it once more.
 */
export async function withFreshHostCAs<T>(me: CurrentLogin, attempt: () => Promise<T>, warn: (msg: string) => void = () => undefined): Promise<T> {
  try {
    return await attempt();
  } catch (err) {
    if (!(err instanceof UnknownHostCAError) && !isUntrustedCertError(err)) throw err;
    if (!(await refreshHostCAs(me).catch(() => false))) throw err;
    warn(`tsh: the cluster "${me.profile.cluster}" has new host CA keys (a CA rotation); now trusting those the proxy publishes`);
    return attempt();
  }
}
