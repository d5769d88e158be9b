/**
 * `tsh login`: asks for the password and OTP code (or, with a cluster that
 * takes security keys, sends the user to the proxy's page to use theirs:
 * securitykey.ts), generates an ed25519 SSH
 * key and a P-256 TLS key, gets both certified through the proxy's web API,
 * and stores keys, host CAs and the profile. Nothing is written unless the
 * proxy issued certificates.
 */
import { generateKeyPair, formatAuthorizedKey, parseAuthorizedKey, parseCertificate, publicKeyBlob, Certificate } from '../sshcert';
import { generateTlsKey, publicKeyPem } from '../tlsca';
import { BadParameterError } from '../utils/errors';
import { checkHostName, HostCA, saveClusterTlsCAs, saveHostCAs, saveKeys } from './keystore';
import { Profile, saveProfile, splitHostPort } from './profile';
import { Prompter } from './prompt';
import { KeyAnswer, securityKeyAnswer } from './securitykey';
import { discoverProxy, formatHostPort, parseProxySpec, requestSshCerts, sshProxyAddr } from './weblogin';

export interface LoginOptions {
  /** `[scheme://]host[:webport][,sshport]` */
  proxy: string;
  user: string;
  ttlMinutes?: number;
  insecure?: boolean;
  prompter: Prompter;
  home?: string;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64').toString('utf8');

export async function login(opts: LoginOptions): Promise<{ profile: Profile; cert: Certificate }> {
  if (!opts.user) throw new BadParameterError('tsh login: --user is required');
  if (opts.ttlMinutes !== undefined && (!Number.isInteger(opts.ttlMinutes) || opts.ttlMinutes <= 0)) {
    throw new BadParameterError(`--ttl must be a positive number of minutes, got ${opts.ttlMinutes}`);
  }
  const spec = parseProxySpec(opts.proxy);
  const { web, ping } = await discoverProxy(spec, !!opts.insecure);
  const password = await opts.prompter.ask(`Enter password for Teleport user ${opts.user}:`, { hidden: true });
  const secondFactor = ping.auth?.second_factor ?? 'otp';
  let otp: string | undefined;
  let key: KeyAnswer | undefined;
  if (secondFactor === 'webauthn') key = await securityKeyAnswer(web, opts.user, password);
  else if (secondFactor === 'on' || secondFactor === 'optional') {
    otp = (await opts.prompter.ask('Enter your OTP token (or press Enter to use a security key):', { hidden: false })).trim();
    // optional: a user without any device logs in with the password alone.
    if (!otp) {
      key = await securityKeyAnswer(web, opts.user, password).catch((err: Error) => {
        if (secondFactor === 'optional' && /no security key is registered/.test(err.message)) return undefined;
        throw err;
      });
    }
  } else if (secondFactor !== 'off') otp = await opts.prompter.ask('Enter your OTP token:', { hidden: false });

  const pair = generateKeyPair('ed25519');
  const tlsKey = generateTlsKey();
  const res = await requestSshCerts(web, {
    user: opts.user,
    password,
    ...(otp ? { otp_token: otp.trim() } : {}),
    ...(key ? { webauthn_response: key } : {}),
    pub_key: b64(formatAuthorizedKey(publicKeyBlob(pair.publicKey))),
    tls_pub_key: b64(publicKeyPem(tlsKey)),
    ...(opts.ttlMinutes ? { ttl: opts.ttlMinutes * 60 * 1e9 } : {}),
  });

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
    user: opts.user,
    cluster,
    ...(leafNames.length ? { leaf_clusters: leafNames } : {}),
    ...(opts.insecure ? { insecure: true } : {}),
  };
  // The names known_hosts will hold (and tsh config's ssh_config), checked before anything is written.
  for (const ca of [...cas, ...casOf(leaves)]) checkHostName(ca.cluster, 'the cluster name the proxy sent');
  const proxyHost = checkHostName(splitHostPort(profile.ssh_proxy_addr).host, "the host of the proxy's SSH address");
  saveKeys(spec.host, opts.user, { privateKey: pair.privateKey, sshCert: certLine, tlsCert: res.tls_cert ? unb64(res.tls_cert) : undefined, tlsKey, tlsCAs }, opts.home);
  saveHostCAs(cas, proxyHost, opts.home);
  // A leaf's host CA is trusted for the leaf's hosts only, never for this proxy.
  saveHostCAs(casOf(leaves), undefined, opts.home);
  for (const name of leafNames) saveClusterTlsCAs(spec.host, name, tlsOf(leaves.filter((s) => s.domain_name === name)), opts.home);
  saveProfile(profile, opts.home);
  return { profile, cert };
}
