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
import { localSigner, type Signer } from '../keystore/signer';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type Algorithm = webcrypto.Algorithm;
type Crypto = webcrypto.Crypto;
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

/**
 * What @peculiar/x509 needs to sign through a Signer: a key object that only
 * names the algorithm, and a crypto whose subtle.sign hands the to-be-signed
 * bytes to the Signer (ECDSA r||s, as WebCrypto returns it; x509 turns it into DER).
 */
function x509Signing(signer: Signer): { signingKey: CryptoKey; signingAlgorithm: Algorithm; crypto: Crypto } {
  const alg = algorithmOf(signer.publicKey);
  const hash = alg.name === 'ECDSA' && (alg as webcrypto.EcKeyImportParams).namedCurve === 'P-384' ? 'sha384' : 'sha256';
  const signingKey = { algorithm: alg, type: 'private', extractable: false, usages: ['sign'] } as unknown as CryptoKey;
  const crypto = {
    getRandomValues: <T extends ArrayBufferView>(a: T) => webcrypto.getRandomValues(a as never) as T,
    subtle: {
      exportKey: webcrypto.subtle.exportKey.bind(webcrypto.subtle),
      sign: async (_alg: unknown, _key: unknown, data: ArrayBuffer) => {
        const sig = await signer.sign(Buffer.from(data), hash);
        return sig.buffer.slice(sig.byteOffset, sig.byteOffset + sig.byteLength);
      },
    },
  } as unknown as Crypto;
  return { signingKey, signingAlgorithm: { name: alg.name, hash: hash === 'sha384' ? 'SHA-384' : 'SHA-256' } as Algorithm, crypto };
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

/** A certificate for the signer's own key, signed by itself. */
async function selfSigned(
  signer: Signer,
  name: (serialNumber: string) => x509.JsonName,
  ttlMs: number,
  now: Date,
  extensions: (publicKey: CryptoKey) => Promise<x509.Extension[]>,
): Promise<string> {
  const publicKey = await importPublic(signer.publicKey.export({ format: 'pem', type: 'spki' }) as string);
  const serialNumber = serial();
  const { signingKey, signingAlgorithm, crypto } = x509Signing(signer);
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber,
      subject: name(serialNumber),
      issuer: name(serialNumber),
      notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
      notAfter: new Date(now.getTime() + ttlMs),
      publicKey,
      signingKey,
      signingAlgorithm,
      extensions: await extensions(publicKey),
    },
    crypto,
  );
  return cert.toString('pem') + '\n';
}

/** The self-signed certificate of a CA (CN = O = cluster name, 10 years) whose key is `signer`'s. */
export async function createCACert(clusterName: string, signer: Signer, now: Date = new Date()): Promise<string> {
  return selfSigned(
    signer,
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

/** Creates a self-signed CA (CN = O = cluster name, 10 years) with a new P-256 key in this process. */
export async function generateCA(clusterName: string, now: Date = new Date()): Promise<TlsKeyPair> {
  const keyPem = generateTlsKey();
  return { cert: await createCACert(clusterName, localSigner(createPrivateKey(keyPem)), now), key: keyPem };
}

/** A CA certificate and the signer of its key. */
export interface TlsCA {
  readonly cert: string;
  readonly signer: Signer;
}

export interface IssueRequest {
  /** The CA to sign with: its key pair in PEM, or its certificate and a Signer (a key outside this process). */
  readonly ca: TlsKeyPair | TlsCA;
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
  const signer = 'signer' in req.ca ? req.ca.signer : localSigner(createPrivateKey(req.ca.key));
  const { signingKey, signingAlgorithm, crypto } = x509Signing(signer);
  const publicKey = await importPublic(req.publicKey);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
    await x509.AuthorityKeyIdentifierExtension.create(caCert),
  ];
  if (req.dnsNames?.length) extensions.push(altNames(req.dnsNames));
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serial(),
      subject: subjectOf(req.identity),
      issuer: caCert.subject,
      notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
      notAfter: new Date(now.getTime() + req.ttlMs),
      publicKey,
      signingKey,
      signingAlgorithm,
      extensions,
    },
    crypto,
  );
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
  const keyPem = generateTlsKey();
  const cert = await selfSigned(localSigner(createPrivateKey(keyPem)), () => [{ CN: [cn] }], ttlMs, now, async () => [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    altNames(names),
  ]);
  return { cert, key: keyPem };
}
