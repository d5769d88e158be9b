/**
 * The cluster's X.509 certificate authority for mutual TLS between services
 * and the auth API. A certificate carries its holder's identity in the subject
 * (formats.md §1.4): CN = user or `<hostUUID>.<cluster>`, O = roles (users) or
 * the system role (hosts), L = allowed logins, Street = route-to-cluster.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createPrivateKey, createPublicKey, generateKeyPairSync, KeyObject, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { AccessDeniedError, BadParameterError } from '../utils/errors';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type Algorithm = webcrypto.Algorithm;
type ImportAlgorithm = webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams;

/** A certificate and its private key, both PEM. */
export interface TlsKeyPair {
  readonly cert: string;
  readonly key: string;
}

/** Who a TLS certificate says its holder is. */
export interface TlsIdentity {
  /** User name, or `<hostUUID>.<cluster>` for hosts. */
  readonly username: string;
  /** Teleport roles of a user, or the single system role of a host (`Node`, `Proxy`, `Auth`, `Admin`). */
  readonly groups: string[];
  /** Allowed OS logins (users only). */
  readonly principals: string[];
  /** The cluster the holder wants requests routed to (users only). */
  readonly routeToCluster?: string;
}

/** Subject Alternative Names every auth server certificate carries; clients dial with this server name. */
export const AUTH_SERVER_NAME = 'teleport.cluster.local';
const STREET_OID = '2.5.4.9';
const CA_TTL_MS = 10 * 365 * 24 * 3600 * 1000;
const CLOCK_SKEW_MS = 60_000;

/** A new ECDSA P-256 private key, PEM (PKCS#8). Used for service and CA TLS keys. */
export function generateTlsKey(): string {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
}

/** The PEM (SPKI) public key of a PEM private key. */
export function publicKeyPem(privateKeyPem: string): string {
  return createPublicKey(privateKeyPem).export({ format: 'pem', type: 'spki' }) as string;
}

function algorithmOf(key: KeyObject): ImportAlgorithm {
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return { name: 'ECDSA', namedCurve: 'P-256' };
    if (curve === 'secp384r1') return { name: 'ECDSA', namedCurve: 'P-384' };
    throw new BadParameterError(`unsupported elliptic curve ${curve} for a TLS key`);
  }
  if (key.asymmetricKeyType === 'rsa') return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  throw new BadParameterError(`unsupported TLS key type ${key.asymmetricKeyType}`);
}

function signingAlgorithm(key: KeyObject): webcrypto.EcdsaParams | Algorithm {
  const alg = algorithmOf(key);
  if (alg.name === 'ECDSA') return { name: 'ECDSA', hash: (alg as webcrypto.EcKeyImportParams).namedCurve === 'P-384' ? 'SHA-384' : 'SHA-256' };
  return { name: 'RSASSA-PKCS1-v1_5' };
}

async function importPublic(pem: string): Promise<CryptoKey> {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new BadParameterError(`invalid TLS public key: ${(err as Error).message}`);
  }
  const der = key.export({ format: 'der', type: 'spki' });
  return webcrypto.subtle.importKey('spki', der, algorithmOf(key), true, ['verify']) as Promise<CryptoKey>;
}

async function importPrivate(pem: string): Promise<{ key: CryptoKey; alg: Algorithm }> {
  const obj = createPrivateKey(pem);
  const der = obj.export({ format: 'der', type: 'pkcs8' });
  const key = (await webcrypto.subtle.importKey('pkcs8', der, algorithmOf(obj), false, ['sign'])) as CryptoKey;
  return { key, alg: signingAlgorithm(obj) };
}

function serial(): string {
  const b = randomBytes(16);
  b[0] &= 0x7f; // positive
  return b.toString('hex');
}

function subjectOf(id: TlsIdentity): x509.JsonName {
  const name: x509.JsonName = [{ CN: [id.username] }];
  if (id.groups.length) name.push({ O: id.groups });
  if (id.principals.length) name.push({ L: id.principals });
  if (id.routeToCluster) name.push({ [STREET_OID]: [id.routeToCluster] });
  return name;
}

/** A SubjectAlternativeName of DNS names and IP addresses. */
function altNames(names: string[]): x509.SubjectAlternativeNameExtension {
  return new x509.SubjectAlternativeNameExtension(
    names.map((n) => (/^[0-9.]+$/.test(n) || n.includes(':') ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n })),
  );
}

/** A new P-256 key and a certificate for it signed by itself. */
async function selfSigned(
  name: (serialNumber: string) => x509.JsonName,
  ttlMs: number,
  now: Date,
  extensions: (publicKey: CryptoKey) => Promise<x509.Extension[]>,
): Promise<TlsKeyPair> {
  const keyPem = generateTlsKey();
  const { key, alg } = await importPrivate(keyPem);
  const publicKey = await importPublic(publicKeyPem(keyPem));
  const serialNumber = serial();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber,
    subject: name(serialNumber),
    issuer: name(serialNumber),
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter: new Date(now.getTime() + ttlMs),
    publicKey,
    signingKey: key,
    signingAlgorithm: alg,
    extensions: await extensions(publicKey),
  });
  return { cert: cert.toString('pem') + '\n', key: keyPem };
}

/** Creates a self-signed CA (CN = O = cluster name, 10 years) with a new P-256 key. */
export async function generateCA(clusterName: string, now: Date = new Date()): Promise<TlsKeyPair> {
  return selfSigned(
    (serialNumber): x509.JsonName => [{ CN: [clusterName] }, { O: [clusterName] }, { '2.5.4.5': [BigInt('0x' + serialNumber).toString()] }],
    CA_TTL_MS,
    now,
    async (publicKey) => [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
    ],
  );
}

export interface IssueRequest {
  /** The CA to sign with. */
  readonly ca: TlsKeyPair;
  /** The holder's public key, PEM (SPKI). */
  readonly publicKey: string;
  readonly identity: TlsIdentity;
  /** DNS names and IP addresses for the Subject Alternative Name (server certificates). */
  readonly dnsNames?: string[];
  readonly ttlMs: number;
  readonly now?: Date;
}

/** Issues a leaf certificate for client and server authentication. */
export async function issueCert(req: IssueRequest): Promise<string> {
  const now = req.now ?? new Date();
  const caCert = new x509.X509Certificate(req.ca.cert);
  const { key, alg } = await importPrivate(req.ca.key);
  const publicKey = await importPublic(req.publicKey);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
    await x509.AuthorityKeyIdentifierExtension.create(caCert),
  ];
  if (req.dnsNames?.length) extensions.push(altNames(req.dnsNames));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: subjectOf(req.identity),
    issuer: caCert.subject,
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter: new Date(now.getTime() + req.ttlMs),
    publicKey,
    signingKey: key,
    signingAlgorithm: alg,
    extensions,
  });
  return cert.toString('pem') + '\n';
}

/** Reads the identity out of a certificate's subject. */
export function identityOf(certPem: string | Buffer): TlsIdentity {
  let json: x509.JsonName;
  try {
    json = new x509.X509Certificate(certPem).subjectName.toJSON();
  } catch (err) {
    throw new BadParameterError(`invalid TLS certificate: ${(err as Error).message}`);
  }
  const all = (attr: string) => json.flatMap((rdn) => rdn[attr] ?? []);
  const username = all('CN')[0];
  if (!username) throw new AccessDeniedError('TLS certificate has no common name');
  const route = all(STREET_OID)[0];
  return { username, groups: all('O'), principals: all('L'), ...(route ? { routeToCluster: route } : {}) };
}

/** Checks that `certPem` was signed by `caPem` and is inside its validity window. */
export function verifyIssuedBy(certPem: string, caPem: string, now: Date = new Date()): void {
  const cert = new X509Certificate(certPem);
  const ca = new X509Certificate(caPem);
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) throw new AccessDeniedError('certificate is not signed by the cluster CA');
  if (now < new Date(cert.validFrom) || now > new Date(cert.validTo)) throw new AccessDeniedError('certificate is expired or not yet valid');
}

/**
 * A self-signed server certificate for `names` (the proxy's HTTPS when no key pair is configured).
 * Clients must be told to trust it (`--insecure`); browsers warn, as they should.
 */
export async function selfSignedServerCert(names: string[], ttlMs = 365 * 24 * 3600_000, now: Date = new Date()): Promise<TlsKeyPair> {
  const cn = names[0] ?? 'localhost';
  return selfSigned(() => [{ CN: [cn] }], ttlMs, now, async () => [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    altNames(names),
  ]);
}
