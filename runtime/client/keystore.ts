/**
 * The key store under `<home>/keys/<proxyHost>/`: `<user>` (OpenSSH private
 * key, 0600), `<user>.pub`, `<user>-cert.pub` (SSH user certificate),
 * `<user>-x509.pem` and `<user>-x509-key.pem` (TLS certificate and its key, 0600), `certs.pem` (TLS CAs);
 * and `<home>/known_hosts` with one `@cert-authority <cluster>,*.<cluster>,<proxy>`
 * line per host CA key (formats.md §8.3; `<proxy>`, the host of the proxy's
 * SSH address, lets OpenSSH check the proxy hop with it, see sshconfig.ts).
 */
import { KeyObject } from 'node:crypto';
import * as fs from 'node:fs';
import { isIP } from 'node:net';
import * as path from 'node:path';
// The certificate and key modules themselves, not the sshcert barrel, which also loads the ssh2 glue:
// `tsh status` reads keys and certificates without an SSH connection (bench/README.md, "Start-up").
import { Certificate, parseCertificate } from '../sshcert/cert';
import { formatAuthorizedKey, parseAuthorizedKey, publicKeyBlob } from '../sshcert/keys';
import { encodeOpenSSHPrivateKey, loadPrivateKey } from '../sshcert/privatekey';
import { BadParameterError, NotFoundError } from '../utils/errors';
import { writeFileAtomic } from '../utils/files';
import { ensurePrivateDir, tshHome } from './paths';
import { checkProxyHost } from './profile';

export const KNOWN_HOSTS_FILE = 'known_hosts';

/** What a login brings home. */
export interface LoginKeys {
  privateKey: KeyObject;
  /** The SSH user certificate, an authorized_keys style line. */
  sshCert: string;
  /** PEM, when the proxy issued one. */
  tlsCert?: string;
  /** The TLS private key (PEM) the TLS certificate is for. */
  tlsKey?: string;
  /** PEM certificates of the cluster's TLS CAs. */
  tlsCAs: string[];
}

export interface HostCA {
  cluster: string;
  /** Public key blob. */
  key: Buffer;
}

/** A user's loaded key: the private key and its parsed user certificate. */
export interface StoredKey {
  privateKey: KeyObject;
  certLine: string;
  cert: Certificate;
}

function checkUser(user: string): string {
  if (!/^[A-Za-z0-9@._+=-]{1,255}$/.test(user) || user === '.' || user === '..') throw new BadParameterError(`user name "${user}" cannot be stored as a key file name`);
  return user;
}

export function keyDir(proxyHost: string, home = tshHome()): string {
  return path.join(home, 'keys', checkProxyHost(proxyHost));
}

export function keyPaths(proxyHost: string, user: string, home = tshHome()) {
  const dir = keyDir(proxyHost, home);
  const base = path.join(dir, checkUser(user));
  return { dir, privateKey: base, publicKey: `${base}.pub`, sshCert: `${base}-cert.pub`, tlsCert: `${base}-x509.pem`, tlsKey: `${base}-x509-key.pem`, tlsCAs: path.join(dir, 'certs.pem') };
}

export function saveKeys(proxyHost: string, user: string, keys: LoginKeys, home = tshHome()): void {
  ensurePrivateDir(home);
  ensurePrivateDir(path.join(home, 'keys'));
  const p = keyPaths(proxyHost, user, home);
  ensurePrivateDir(p.dir);
  writeFileAtomic(p.privateKey, encodeOpenSSHPrivateKey(keys.privateKey, user));
  writeFileAtomic(p.publicKey, formatAuthorizedKey(publicKeyBlob(keys.privateKey)) + '\n', 0o644);
  writeFileAtomic(p.sshCert, keys.sshCert.trim() + '\n', 0o644);
  if (keys.tlsCert && keys.tlsKey) {
    writeFileAtomic(p.tlsKey, keys.tlsKey);
    writeFileAtomic(p.tlsCert, keys.tlsCert);
  } else {
    fs.rmSync(p.tlsCert, { force: true });
    fs.rmSync(p.tlsKey, { force: true });
  }
  writeFileAtomic(p.tlsCAs, keys.tlsCAs.map((c) => c.trim() + '\n').join(''), 0o644);
}

export function loadKey(proxyHost: string, user: string, home = tshHome()): StoredKey {
  const p = keyPaths(proxyHost, user, home);
  let keyText: string;
  let certLine: string;
  try {
    keyText = fs.readFileSync(p.privateKey, 'utf8');
    certLine = fs.readFileSync(p.sshCert, 'utf8').trim();
  } catch {
    throw new NotFoundError(`no key for "${user}" at ${p.dir} (run "tsh login")`);
  }
  return { privateKey: loadPrivateKey(keyText), certLine, cert: parseCertificate(certLine) };
}

/** Where a leaf cluster's TLS CAs are kept: `<home>/keys/<proxy>/cas/<cluster>.pem`. */
function clusterTlsCAsPath(proxyHost: string, cluster: string, home: string): string {
  return path.join(keyDir(proxyHost, home), 'cas', `${checkHostName(cluster, 'cluster name')}.pem`);
}

/** Saves the TLS CAs of a leaf cluster reached through this proxy (its auth server's certificate is checked with them). */
export function saveClusterTlsCAs(proxyHost: string, cluster: string, pems: string[], home = tshHome()): void {
  const file = clusterTlsCAsPath(proxyHost, cluster, home);
  ensurePrivateDir(path.dirname(file));
  writeFileAtomic(file, pems.map((c) => c.trim() + '\n').join(''), 0o644);
}

/** Replaces the TLS CAs of the login's own cluster (its auth servers' certificates are checked with them). */
export function saveLoginTlsCAs(proxyHost: string, user: string, pems: string[], home = tshHome()): void {
  writeFileAtomic(keyPaths(proxyHost, user, home).tlsCAs, pems.map((c) => c.trim() + '\n').join(''), 0o644);
}

/**
 * The TLS certificate, its key and the TLS CAs saved at login, for calls to the auth API: the
 * cluster's own, or with `leaf` that leaf cluster's (the only CAs its auth server is checked with).
 */
export function loadTlsCredentials(proxyHost: string, user: string, home = tshHome(), leaf?: string): { key: string; cert: string; ca: string[] } {
  const p = keyPaths(proxyHost, user, home);
  try {
    const pem = fs.readFileSync(leaf ? clusterTlsCAsPath(proxyHost, leaf, home) : p.tlsCAs, 'utf8');
    const ca = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    return { key: fs.readFileSync(p.tlsKey, 'utf8'), cert: fs.readFileSync(p.tlsCert, 'utf8'), ca };
  } catch {
    throw new NotFoundError(`no TLS certificate for "${user}"${leaf ? ` or CA of cluster ${leaf}` : ''} at ${p.dir} (run "tsh login" again)`);
  }
}

/** Removes a user's key files, and the proxy's key directory when nothing else is left in it. */
export function removeKeys(proxyHost: string, user: string, home = tshHome()): void {
  const p = keyPaths(proxyHost, user, home);
  for (const f of [p.privateKey, p.publicKey, p.sshCert, p.tlsCert, p.tlsKey]) fs.rmSync(f, { force: true });
  const rest = fs.existsSync(p.dir) ? fs.readdirSync(p.dir).filter((f) => f !== 'certs.pem') : [];
  if (rest.length === 0) fs.rmSync(p.dir, { recursive: true, force: true });
}

/** A cluster name or host as it may stand in a known_hosts pattern list or an ssh_config `Host` line. */
const HOST_NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/;

/** Refuses a cluster or host name (they come from the proxy's answers) that is not a plain name or IP address. */
export function checkHostName(name: string, what: string): string {
  if (!HOST_NAME_RE.test(name) && isIP(name) === 0) throw new BadParameterError(`${what}: ${JSON.stringify(name)} is not a host name or IP address`);
  return name;
}

/** The `@cert-authority` line for one host CA key: the cluster's hosts, and the proxy when given. */
export function knownHostsLine(ca: HostCA, proxyHost?: string): string {
  const cluster = checkHostName(ca.cluster, 'cluster name');
  const hosts = [cluster, `*.${cluster}`, ...(proxyHost && proxyHost !== cluster ? [checkHostName(proxyHost, 'proxy host')] : [])];
  return `@cert-authority ${hosts.join(',')} ${formatAuthorizedKey(ca.key)} type=host`;
}

/** Replaces the host CA lines of the clusters in `cas`, keeping every other line of known_hosts. */
export function saveHostCAs(cas: HostCA[], proxyHost?: string, home = tshHome()): void {
  ensurePrivateDir(home);
  const file = path.join(home, KNOWN_HOSTS_FILE);
  const lines = cas.map((ca) => knownHostsLine(ca, proxyHost));
  const clusters = new Set(cas.map((c) => c.cluster));
  const kept = readLines(file).filter((l) => {
    const ca = parseKnownHostsCA(l);
    return !ca || !clusters.has(ca.cluster);
  });
  writeFileAtomic(file, [...kept, ...lines].map((l) => l + '\n').join(''), 0o644);
}

/** Whether the known_hosts lines of `cluster` also name `host` (lines saved before they named the proxy do not). */
export function hostCAsCover(cluster: string, host: string, home = tshHome()): boolean {
  const lines = clusterLines(cluster, home);
  return lines.length > 0 && lines.every((ca) => ca.hosts.includes(host));
}

type KnownHostsCA = HostCA & { hosts: string[] };

/** The parsed known_hosts lines of `cluster`. */
function clusterLines(cluster: string, home: string): KnownHostsCA[] {
  return readLines(path.join(home, KNOWN_HOSTS_FILE))
    .map(parseKnownHostsCA)
    .filter((ca): ca is KnownHostsCA => ca !== undefined && ca.cluster === cluster);
}

/** The host CA keys trusted for `cluster`. */
export function loadHostCAs(cluster: string, home = tshHome()): Buffer[] {
  return clusterLines(cluster, home).map((ca) => ca.key);
}

function readLines(file: string): string[] {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');
  } catch {
    return [];
  }
}

/** `@cert-authority <cluster>,*.<cluster>[,<proxy>] <type> <b64> ...` → the cluster, its hosts and key; other lines → undefined. */
export function parseKnownHostsCA(line: string): KnownHostsCA | undefined {
  const parts = line.trim().split(/\s+/);
  if (parts[0] !== '@cert-authority' || parts.length < 4) return undefined;
  const hosts = parts[1].split(',');
  const cluster = hosts.find((p) => !p.startsWith('*.'));
  if (!cluster) return undefined;
  try {
    return { cluster, hosts, key: parseAuthorizedKey(`${parts[2]} ${parts[3]}`).blob };
  } catch {
    return undefined;
  }
}
