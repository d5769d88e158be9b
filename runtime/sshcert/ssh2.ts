/**
 * Adapters between runtime/sshcert and the (patched, see patches/ssh2+1.17.0.patch)
 * ssh2 library: host keys that present an OpenSSH host certificate, user
 * certificate checks for a server's `authentication` event, a client identity
 * that logs in with a user certificate, and a client `hostVerifier` that
 * accepts host certificates signed by trusted CAs.
 */
import { KeyObject, sign as cryptoSign } from 'node:crypto';
import { Duplex } from 'node:stream';
import {
  BaseAgent,
  type AuthContext,
  type CipherAlgorithm,
  type CompressionAlgorithm,
  type ConnectConfig,
  type IdentityCallback,
  type KexAlgorithm,
  type MacAlgorithm,
  type ParsedKey,
  type ServerHostKeyAlgorithm,
  type SignCallback,
  type SigningRequestOptions,
  utils as ssh2utils,
} from 'ssh2';
import { AccessDeniedError, BadParameterError } from '../utils/errors';
import { DEFAULT_SSH_ALGORITHMS, MLKEM768X25519_SHA256, SSH_COMPRESSION, type SshAlgorithms } from './algorithms';
import { EXT_TELEPORT_AUTHORITY, EXT_TELEPORT_ROLE } from './issue';
import { type Certificate, CERT_SUFFIX, isCertificateType, parseCertificate, verifyCertificate } from './cert';
import { blobType, formatAuthorizedKey, publicKeyBlob, signatureAlgorithm, sshKeyType, sshSign, sshVerify } from './keys';
import { clientExchange, serverExchange } from './mlkem768x25519';
import { encodeOpenSSHPrivateKey } from './privatekey';
import { SshReader, SshWriter } from './wire';

declare module 'ssh2' {
  interface Connection {
    /** Asks the client to open an `auth-agent@openssh.com` channel (patched ssh2). */
    openssh_authAgent(callback: (err: Error | undefined, channel: ServerChannel) => void): this;
    /** Sends a USERAUTH_BANNER, a message the client shows its user, during authentication (patched ssh2). */
    authBanner(message: string): this;
  }
}

/** A genuine, valid user certificate that does not list the login asked for. */
export class LoginNotInCertificateError extends AccessDeniedError {
  constructor(login: string, user: string) {
    super(`access denied: login "${login}" is not allowed for user "${user}"`);
  }
}

/** The patched ssh2's hook for KEM-style key exchanges (see patches/ssh2+1.17.0.patch). */
interface Ssh2Kex {
  registerKemExchange?(
    name: string,
    impl: {
      hashName: string;
      clientExchange(): { init: Buffer; finish(reply: Buffer): Buffer };
      serverExchange(init: Buffer): { reply: Buffer; secret: Buffer };
    },
  ): void;
}

// mlkem768x25519-sha256 becomes a key exchange ssh2 knows, for servers and clients alike
{
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const kex = require('ssh2/lib/protocol/kex.js') as Ssh2Kex;
  if (typeof kex.registerKemExchange !== 'function') {
    throw new Error('ssh2 lacks registerKemExchange: node_modules/ssh2 is not patched (npm ci runs patch-package)');
  }
  kex.registerKemExchange(MLKEM768X25519_SHA256, { hashName: 'sha256', clientExchange: () => clientExchange(), serverExchange: (init) => serverExchange(init) });
}

/** ssh2's `algorithms` option for a Server offering `algos` (host key algorithms come from its host keys). */
export function serverAlgorithms(algos: SshAlgorithms): NonNullable<ConnectConfig['algorithms']> {
  return {
    kex: algos.kex as KexAlgorithm[],
    cipher: algos.ciphers as CipherAlgorithm[],
    hmac: algos.macs as MacAlgorithm[],
    compress: SSH_COMPRESSION as CompressionAlgorithm[],
  };
}

/**
 * Host key algorithms for an ssh2 Client that checks host certificates: the
 * certificate algorithms first (the patched ssh2 accepts them when listed),
 * then the plain ones for hosts without a certificate.
 */
export const CLIENT_HOST_KEY_ALGORITHMS = [
  'ssh-ed25519-cert-v01@openssh.com',
  'ecdsa-sha2-nistp256-cert-v01@openssh.com',
  'ecdsa-sha2-nistp384-cert-v01@openssh.com',
  'rsa-sha2-512-cert-v01@openssh.com',
  'rsa-sha2-256-cert-v01@openssh.com',
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'rsa-sha2-512',
  'rsa-sha2-256',
] as unknown as ServerHostKeyAlgorithm[];

/** ssh2's `algorithms` option for tsh's client: the defaults the node and proxy offer (mlkem768x25519 first), host certificates. */
export const CLIENT_ALGORITHMS: NonNullable<ConnectConfig['algorithms']> = {
  ...serverAlgorithms(DEFAULT_SSH_ALGORITHMS),
  serverHostKey: CLIENT_HOST_KEY_ALGORITHMS,
};

/** The algorithm a certificate algorithm signs with: `rsa-sha2-512-cert-v01@openssh.com` → `rsa-sha2-512`. */
export function certBaseAlgorithm(algo: string): string {
  return algo.endsWith(CERT_SUFFIX) ? algo.slice(0, -CERT_SUFFIX.length) : algo;
}

function certificateFor(privateKey: KeyObject, certLine: string | Buffer, what: string): Certificate {
  const cert = parseCertificate(certLine);
  if (!cert.publicKey.equals(publicKeyBlob(privateKey))) {
    throw new BadParameterError(`${what}: certificate "${cert.keyId}" does not certify the given private key`);
  }
  return cert;
}

/** The ssh2 key that presents `cert` on the wire, for an agent that holds the certified key (a forwarded agent). */
export function certificateKey(cert: Certificate): ParsedKey {
  return withCertificate(ssh2Key(formatAuthorizedKey(cert.publicKey), 'certificate key'), cert);
}

/** An ssh2 key that presents `cert` on the wire and signs with the key behind `base`. */
function withCertificate(base: ParsedKey, cert: Certificate): ParsedKey {
  return Object.create(base, {
    type: { value: cert.type, enumerable: true },
    comment: { value: cert.keyId, enumerable: true },
    getPublicSSH: { value: () => cert.blob },
  }) as ParsedKey;
}

function ssh2Key(text: string, what: string): ParsedKey {
  const parsed = ssh2utils.parseKey(text);
  if (parsed instanceof Error) throw new BadParameterError(`${what}: ssh2 cannot load the key: ${parsed.message}`);
  return Array.isArray(parsed) ? (parsed[0] as ParsedKey) : parsed;
}

/**
 * A host key for `new Server({ hostKeys: [...] })` that offers the host
 * certificate (`ssh-ed25519-cert-v01@openssh.com`, …; an RSA certificate is
 * offered as `rsa-sha2-512/256-cert-v01@openssh.com`). List `plainHostKey(key)`
 * after it to also serve clients that do not trust the CA.
 */
export function hostKeyWithCertificate(privateKey: KeyObject, certLine: string | Buffer): ParsedKey {
  const cert = certificateFor(privateKey, certLine, 'host key');
  if (cert.certType !== 'host') {
    throw new BadParameterError(`host key: certificate "${cert.keyId}" is a ${cert.certType} certificate, not a host certificate`);
  }
  return withCertificate(plainHostKey(privateKey), cert);
}

/** The plain host key in the form ssh2's Server takes. */
export function plainHostKey(privateKey: KeyObject): ParsedKey {
  return ssh2Key(encodeOpenSSHPrivateKey(privateKey), 'host key');
}

export interface UserCertAuthOptions {
  /** CA public key blobs to trust. */
  trustedCAs: Buffer[];
  now?: Date;
  /** Critical options the caller enforces (e.g. `force-command`); any other one is refused. */
  allowedCriticalOptions?: string[];
}

function denied(err: unknown, prefix: string): AccessDeniedError {
  if (err instanceof AccessDeniedError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new AccessDeniedError(`${prefix}: ${msg}`);
}

/**
 * Checks a `publickey` authentication attempt on an ssh2 Server: the key must
 * be a user certificate from a trusted CA listing `ctx.username`, and when
 * the attempt carries a signature it must be the certified key's signature
 * over the session data. Returns the certificate; throws AccessDeniedError.
 */
export function verifyUserCertAuth(ctx: AuthContext, opts: UserCertAuthOptions): Certificate {
  const cert = verifyCertAuth(ctx, `user "${ctx.username}"`, 'user', opts);
  if (!cert.principals.includes(ctx.username)) {
    throw new LoginNotInCertificateError(ctx.username, cert.keyId);
  }
  return cert;
}

export interface HostCertAuthOptions {
  /** Host CA public key blobs to trust. */
  trustedCAs: Buffer[];
  /** The `x-teleport-role` the certificate must carry (e.g. `Node`). */
  role: string;
  /** The `x-teleport-authority` it must carry: the cluster that issued it. */
  clusterName: string;
  now?: Date;
}

/**
 * A host logging in with its host certificate (a reverse-tunnel agent): the
 * same checks as verifyUserCertAuth for a host certificate, which must list
 * `ctx.username` as a principal, carry the given Teleport role and name the
 * cluster as its authority. Returns the certificate; throws AccessDeniedError.
 */
export function verifyHostCertAuth(ctx: AuthContext, opts: HostCertAuthOptions): Certificate {
  const who = `host "${ctx.username}"`;
  const cert = verifyCertAuth(ctx, who, 'host', opts);
  if (!cert.principals.includes(ctx.username)) {
    throw new AccessDeniedError(`${who}: not a principal of certificate "${cert.keyId}" (principals: ${cert.principals.join(', ') || 'none'})`);
  }
  checkTeleportRole(cert, opts.role, opts.clusterName);
  return cert;
}

function checkTeleportRole(cert: Certificate, role: string, clusterName: string): void {
  const has = cert.extensions[EXT_TELEPORT_ROLE];
  if (has !== role) throw new AccessDeniedError(`certificate "${cert.keyId}" is for role "${has ?? 'none'}", expected "${role}"`);
  const authority = cert.extensions[EXT_TELEPORT_AUTHORITY];
  if (authority !== clusterName) throw new AccessDeniedError(`certificate "${cert.keyId}" was issued by cluster "${authority ?? 'none'}", expected "${clusterName}"`);
}

function verifyCertAuth(ctx: AuthContext, who: string, certType: 'user' | 'host', opts: { trustedCAs: Buffer[]; now?: Date; allowedCriticalOptions?: string[] }): Certificate {
  if (ctx.method !== 'publickey') {
    throw new AccessDeniedError(`${who}: authentication method "${ctx.method}" is not allowed, only certificates`);
  }
  let keyType: string;
  try {
    keyType = blobType(ctx.key.data);
  } catch (err) {
    throw denied(err, `${who}: malformed public key`);
  }
  if (!isCertificateType(keyType)) {
    throw new AccessDeniedError(`${who}: plain key (${keyType}) offered; only ${certType} certificates are accepted`);
  }
  const algo = ctx.key.algo;
  const algoMatches =
    algo === keyType ||
    (keyType === `ssh-rsa${CERT_SUFFIX}` && (algo === `rsa-sha2-256${CERT_SUFFIX}` || algo === `rsa-sha2-512${CERT_SUFFIX}`));
  if (!algoMatches) {
    throw new AccessDeniedError(`${who}: key algorithm "${algo}" does not match the certificate type "${keyType}"`);
  }
  let cert: Certificate;
  try {
    cert = parseCertificate(ctx.key.data);
  } catch (err) {
    throw denied(err, `${who}: malformed certificate`);
  }
  verifyCertificate(cert, {
    trustedCAs: opts.trustedCAs,
    certType,
    now: opts.now,
    allowedCriticalOptions: opts.allowedCriticalOptions,
  });
  if (ctx.signature !== undefined) {
    const sigAlgo = signatureAlgorithm(ctx.signature);
    const wantAlgo = certBaseAlgorithm(algo);
    if (sigAlgo !== wantAlgo) {
      throw new AccessDeniedError(
        `${who}: signature algorithm "${sigAlgo ?? 'malformed'}" does not match key algorithm "${algo}" (want ${wantAlgo})`,
      );
    }
    if (!ctx.blob || !sshVerify(cert.publicKey, ctx.blob, ctx.signature)) {
      throw new AccessDeniedError(`${who}: signature by the key of certificate "${cert.keyId}" is invalid`);
    }
  }
  return cert;
}

const RSA_HASHES: Record<string, string> = { sha256: 'sha256', sha512: 'sha512' };

/** draft-miller-ssh-agent message numbers. */
const AGENTC_REQUEST_IDENTITIES = 11;
const AGENT_IDENTITIES_ANSWER = 12;
const AGENTC_SIGN_REQUEST = 13;
const AGENT_SIGN_RESPONSE = 14;
const AGENT_FAILURE_MESSAGE = Buffer.from([5]);
const MAX_AGENT_MESSAGE = 256 * 1024;

/** A stream that speaks the agent protocol: each whole request gets `answer`'s reply; a malformed one ends the stream. */
function agentServer(answer: (type: number, body: SshReader) => Buffer): Duplex {
  let buf = Buffer.alloc(0);
  const stream: Duplex = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, done) {
      buf = Buffer.concat([buf, chunk]);
      try {
        while (buf.length >= 4) {
          const len = buf.readUInt32BE(0);
          if (len < 1 || len > MAX_AGENT_MESSAGE) throw new BadParameterError(`agent request of ${len} bytes`);
          if (buf.length < 4 + len) break;
          const msg = buf.subarray(4, 4 + len);
          buf = buf.subarray(4 + len);
          let reply: Buffer;
          try {
            reply = answer(msg[0], new SshReader(msg.subarray(1), 'agent request'));
          } catch {
            reply = AGENT_FAILURE_MESSAGE;
          }
          stream.push(new SshWriter().uint32(reply.length).raw(reply).toBuffer());
        }
      } catch (err) {
        return done(err as Error);
      }
      done();
    },
    final(done) {
      stream.push(null);
      done();
    },
  });
  return stream;
}

/** An in-memory agent holding one key and its user certificate. */
class CertificateAgent extends BaseAgent<ParsedKey> {
  constructor(
    private readonly privateKey: KeyObject,
    private readonly identity: ParsedKey,
  ) {
    super();
  }

  getIdentities(cb: IdentityCallback<ParsedKey>): void {
    cb(null, [this.identity]);
  }

  sign(pubKey: ParsedKey, data: Buffer, options: SigningRequestOptions | SignCallback, cb?: SignCallback): void {
    const done = typeof options === 'function' ? options : cb;
    const opts = typeof options === 'function' ? {} : options ?? {};
    if (!done) return;
    try {
      done(null, this.signRaw(pubKey, data, opts));
    } catch (err) {
      done(err as Error);
    }
  }

  /**
   * Agent forwarding (`tsh ssh -A`): an SSH agent on the forwarded channel
   * that lists this one identity (the certificate) and signs with its key.
   */
  override getStream(cb: (err: Error | undefined, stream?: Duplex) => void): void {
    cb(undefined, agentServer((type, body) => this.answer(type, body)));
  }

  /**
   * One agent request (draft-miller-ssh-agent): the identities (this certificate), or a
   * signature by its key, in the format of the certified key. ssh2's own agent server cannot
   * parse certificate blobs, so the protocol is spoken here.
   */
  private answer(type: number, body: SshReader): Buffer {
    if (type === AGENTC_REQUEST_IDENTITIES) {
      return new SshWriter().raw(Buffer.from([AGENT_IDENTITIES_ANSWER])).uint32(1).string(this.identity.getPublicSSH()).string(this.identity.comment).toBuffer();
    }
    if (type !== AGENTC_SIGN_REQUEST) return AGENT_FAILURE_MESSAGE;
    const blob = body.bytes('key blob');
    const data = body.bytes('data');
    const flags = body.uint32('flags');
    const own = [this.identity.getPublicSSH(), publicKeyBlob(this.privateKey)];
    if (!own.some((b) => b.equals(blob))) return AGENT_FAILURE_MESSAGE;
    let signature: Buffer;
    if (sshKeyType(this.privateKey) === 'ssh-rsa') {
      const [format, hash] = flags & 4 ? ['rsa-sha2-512', 'sha512'] : flags & 2 ? ['rsa-sha2-256', 'sha256'] : [];
      if (!format) return AGENT_FAILURE_MESSAGE; // SHA-1 signatures are refused
      signature = new SshWriter().string(format).string(cryptoSign(hash!, data, this.privateKey)).toBuffer();
    } else signature = sshSign(this.privateKey, data);
    return new SshWriter().raw(Buffer.from([AGENT_SIGN_RESPONSE])).string(signature).toBuffer();
  }

  /** The signature without its SSH header (what ssh2's agent interface returns). */
  private signRaw(pubKey: ParsedKey, data: Buffer, opts: SigningRequestOptions): Buffer {
    if (!pubKey.getPublicSSH().equals(this.identity.getPublicSSH())) {
      throw new BadParameterError('certificate agent: asked to sign with a key it does not hold');
    }
    if (sshKeyType(this.privateKey) === 'ssh-rsa') {
      const hash = RSA_HASHES[opts.hash ?? ''];
      if (!hash) throw new BadParameterError(`certificate agent: RSA signature hash "${opts.hash ?? 'sha1'}" is refused`);
      return cryptoSign(hash, data, this.privateKey);
    }
    const r = new SshReader(sshSign(this.privateKey, data), 'SSH signature');
    r.string('signature algorithm');
    return r.bytes('signature');
  }
}

/**
 * An agent for `new Client().connect({ agent })` that logs in with the user
 * certificate (ssh2 offers `*-cert-v01@openssh.com` and signs with the key);
 * with `certType` 'host', a host logging in with its host certificate (a
 * reverse-tunnel agent).
 */
export function clientCertIdentity(privateKey: KeyObject, certLine: string | Buffer, certType: 'user' | 'host' = 'user'): BaseAgent<ParsedKey> {
  const cert = certificateFor(privateKey, certLine, 'client identity');
  if (cert.certType !== certType) {
    throw new BadParameterError(`client identity: certificate "${cert.keyId}" is a ${cert.certType} certificate, not a ${certType} certificate`);
  }
  const plainPublic = ssh2Key(formatAuthorizedKey(publicKeyBlob(privateKey)), 'client identity');
  return new CertificateAgent(privateKey, withCertificate(plainPublic, cert));
}

export interface HostCertVerifierOptions {
  /** Host CA public key blobs to trust. */
  trustedCAs: Buffer[];
  /** The name dialled; it must be one of the certificate's principals. */
  hostname: string;
  /** Plain host key blobs accepted as they are (hosts without a certificate). */
  knownHostKeys?: Buffer[];
  now?: Date;
  /** Told why a host key was refused. */
  onDenied?: (err: AccessDeniedError) => void;
  /** The `x-teleport-role` (and cluster, `x-teleport-authority`) the host certificate must carry, e.g. a proxy's. */
  teleportRole?: { role: string; clusterName: string };
}

/**
 * A `hostVerifier` for ssh2's Client (use with CLIENT_HOST_KEY_ALGORITHMS):
 * accepts a host certificate signed by a trusted CA that lists `hostname`, or
 * a plain key listed in `knownHostKeys`; anything else is refused.
 */
export function hostCertVerifier(opts: HostCertVerifierOptions): (key: Buffer) => boolean {
  return (key: Buffer): boolean => {
    try {
      checkHostKey(key, opts);
      return true;
    } catch (err) {
      opts.onDenied?.(denied(err, `host "${opts.hostname}"`));
      return false;
    }
  };
}

function checkHostKey(key: Buffer, opts: HostCertVerifierOptions): void {
  const type = blobType(key);
  if (!isCertificateType(type)) {
    if ((opts.knownHostKeys ?? []).some((k) => k.equals(key))) return;
    throw new AccessDeniedError(`host "${opts.hostname}" presented a plain ${type} key that is not known`);
  }
  const cert = parseCertificate(key);
  verifyCertificate(cert, {
    trustedCAs: opts.trustedCAs,
    certType: 'host',
    principal: opts.hostname,
    now: opts.now,
  });
  if (opts.teleportRole) checkTeleportRole(cert, opts.teleportRole.role, opts.teleportRole.clusterName);
}
