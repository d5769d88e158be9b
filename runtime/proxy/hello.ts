/**
 * The `Teleport-Proxy` hello (formats.md §4.2): what a proxy writes to a node
 * it dialled, before the client's SSH version line, to name the client's
 * address: `Teleport-Proxy` + JSON + NUL. Teleport 4.x sends
 * `{"clientAddr":"ip:port"}` and its nodes believe anyone; ours also carries
 * the proxy's host certificate and its signature, with its host key, over
 * the client's address, the node's address as dialled, the time and a random
 * nonce (two connections from one address in one millisecond differ), so a
 * node believes a hello only from a proxy of its own cluster, at that
 * address, within HELLO_MAX_SKEW_MS, and once:
 *
 *   {"clientAddr":"ip:port","nodeAddr":"ip:port","time":<unix ms>,"nonce":<base64, 16 bytes>,"cert":<base64 host certificate>,"sig":<base64 SSH signature>}
 *
 * (A Teleport 4.x node reads `clientAddr` and ignores the rest.)
 */
import { isIP } from 'node:net';
import { randomBytes, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { type Certificate, EXT_TELEPORT_AUTHORITY, EXT_TELEPORT_ROLE, parseCertificate, parseAuthorizedKey, SshWriter, sshSign, sshVerify, verifyCertificate } from '../sshcert';
import { AccessDeniedError, BadParameterError } from '../utils/errors';
import { unmapIPv4 } from '../utils/ip';

export const PROXY_HELLO_SIGNATURE = 'Teleport-Proxy';
/** Largest hello a node reads, signature and NUL included (an RSA-4096 certificate and signature fit in half). */
export const MAX_HELLO_BYTES = 8192;
/** How long a node waits for the rest of a hello once its first byte came. */
export const HELLO_TIMEOUT_MS = 10_000;
/** The clock difference between proxy and node a hello's time may show, either way. */
export const HELLO_MAX_SKEW_MS = 30_000;
/** What the signature covers first: no other signed message of this project starts so. */
const SIGNED_CONTEXT = 'teleport-proxy-hello-v1';

export interface Address {
  ip: string;
  port: number;
}

/** `ip:port` or `[ipv6]:port`, the IP unmapped from `::ffff:`. */
export function formatAddress(a: Address): string {
  const ip = unmapIPv4(a.ip);
  return isIP(ip) === 6 ? `[${ip}]:${a.port}` : `${ip}:${a.port}`;
}

/** Parses `ip:port` or `[ipv6]:port` strictly; undefined when it is neither. */
export function parseAddress(text: string): Address | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):([0-9]{1,5})$/.exec(text);
  if (!m) return undefined;
  const ip = m[1] ?? m[2];
  const port = Number(m[3]);
  if (isIP(ip) !== (m[1] ? 6 : 4) || port > 65535) return undefined;
  return { ip, port };
}

/** The signed fields are optional here: a Teleport 4.x proxy's hello parses, and is then not believed. */
const helloSchema = z.object({
  clientAddr: z.string().max(64),
  nodeAddr: z.string().max(64).optional(),
  time: z.number().int().nonnegative().optional(),
  nonce: z.string().max(64).optional(),
  cert: z.string().max(MAX_HELLO_BYTES).optional(),
  sig: z.string().max(MAX_HELLO_BYTES).optional(),
});
export type ProxyHello = z.infer<typeof helloSchema>;
type SignedHello = Required<ProxyHello>;

function signedBytes(h: Pick<SignedHello, 'clientAddr' | 'nodeAddr' | 'time' | 'nonce'>): Buffer {
  return new SshWriter().string(SIGNED_CONTEXT).string(h.clientAddr).string(h.nodeAddr).string(String(h.time)).string(h.nonce).toBuffer();
}

/** The hello a proxy with this host key and certificate (authorized_keys line) sends when it dialled `node` for `client`. */
export function signProxyHello(identity: { key: KeyObject; certLine: string }, client: Address, node: Address, now = Date.now()): Buffer {
  const fields = { clientAddr: formatAddress(client), nodeAddr: formatAddress(node), time: now, nonce: randomBytes(16).toString('base64') };
  const hello: SignedHello = {
    ...fields,
    cert: parseAuthorizedKey(identity.certLine).blob.toString('base64'),
    sig: sshSign(identity.key, signedBytes(fields)).toString('base64'),
  };
  return Buffer.concat([Buffer.from(PROXY_HELLO_SIGNATURE), Buffer.from(JSON.stringify(hello)), Buffer.from([0])]);
}

/** Parses the JSON between the signature and the NUL; BadParameterError when it is not a hello at all. */
export function parseProxyHello(json: Buffer): ProxyHello {
  let value: unknown;
  try {
    value = JSON.parse(json.toString('utf8'));
  } catch {
    throw new BadParameterError('malformed Teleport-Proxy hello: not JSON');
  }
  const parsed = helloSchema.safeParse(value);
  if (!parsed.success) throw new BadParameterError('malformed Teleport-Proxy hello: ' + parsed.error.issues.map((i) => `${i.path.join('.') || '(hello)'}: ${i.message}`).join('; '));
  return parsed.data;
}

export interface HelloTrust {
  clusterName: string;
  /** The cluster's host CA keys (blobs). */
  hostCAs: Buffer[];
  /** The address the connection reached (the node's side of the TCP connection). */
  local: Address;
  now?: number;
}

/**
 * Believes hellos: each is checked (see the module comment) and remembered until it is too old
 * to pass the time check, so the same hello is believed once.
 */
export class HelloVerifier {
  /** What believed hellos signed, in the order believed, with the time after which that hello is refused anyway. */
  private readonly seen = new Map<string, number>();

  /** The client's address the hello names; AccessDeniedError saying why it is not believed. */
  verify(unchecked: ProxyHello, trust: HelloTrust): Address {
    const now = trust.now ?? Date.now();
    const { nodeAddr, time, nonce, cert: certText, sig } = unchecked;
    if (nodeAddr === undefined || time === undefined || nonce === undefined || certText === undefined || sig === undefined) {
      throw new AccessDeniedError('the hello is not signed (from a Teleport 4.x proxy, or forged)');
    }
    const hello: SignedHello = { clientAddr: unchecked.clientAddr, nodeAddr, time, nonce, cert: certText, sig };
    const client = parseAddress(hello.clientAddr);
    if (!client) throw new AccessDeniedError(`the hello's client address "${hello.clientAddr}" is not ip:port`);
    let cert: Certificate;
    try {
      cert = parseCertificate(Buffer.from(hello.cert, 'base64'));
    } catch (err) {
      throw new AccessDeniedError(`the hello's certificate does not parse: ${(err as Error).message}`);
    }
    verifyCertificate(cert, { trustedCAs: trust.hostCAs, certType: 'host', now: new Date(now) });
    const role = cert.extensions[EXT_TELEPORT_ROLE];
    if (role !== 'Proxy') throw new AccessDeniedError(`the hello is signed by "${cert.keyId}", whose role is ${role ?? 'none'}, not Proxy`);
    const authority = cert.extensions[EXT_TELEPORT_AUTHORITY];
    if (authority !== trust.clusterName) throw new AccessDeniedError(`the hello is signed by "${cert.keyId}" of cluster "${authority ?? 'none'}", not "${trust.clusterName}"`);
    if (!sshVerify(cert.publicKey, signedBytes(hello), Buffer.from(hello.sig, 'base64'))) {
      throw new AccessDeniedError(`the hello's signature is not by the key of "${cert.keyId}"`);
    }
    if (hello.nodeAddr !== formatAddress(trust.local)) {
      throw new AccessDeniedError(`the hello is for ${hello.nodeAddr}, not for this node's ${formatAddress(trust.local)}`);
    }
    if (Math.abs(now - hello.time) > HELLO_MAX_SKEW_MS) {
      throw new AccessDeniedError(`the hello is from ${new Date(hello.time).toISOString()}, more than ${HELLO_MAX_SKEW_MS / 1000}s from now`);
    }
    // (kept by what was signed, not by the signature, which an ECDSA signer's peer could rewrite into another valid one)
    for (const [key, until] of this.seen) {
      if (until >= now) break;
      this.seen.delete(key);
    }
    const key = signedBytes(hello).toString('base64');
    if (this.seen.has(key)) throw new AccessDeniedError('the hello was used before (a replay)');
    this.seen.set(key, hello.time + HELLO_MAX_SKEW_MS);
    return client;
  }
}
