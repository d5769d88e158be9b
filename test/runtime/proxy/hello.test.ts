/** The signed `Teleport-Proxy` hello: what a node believes, and what it does not. */
import { formatAuthorizedKey, generateKeyPair, publicKeyBlob, signHostCert, type KeyPair } from '../../../runtime/sshcert';
import { HELLO_MAX_SKEW_MS, HelloVerifier, parseAddress, parseProxyHello, PROXY_HELLO_SIGNATURE, signProxyHello, type ProxyHello } from '../../../runtime/proxy/hello';
import { AccessDeniedError, BadParameterError } from '../../../runtime/utils/errors';

const CLUSTER = 'example.com';
const hostCA = generateKeyPair('ed25519');
const otherCA = generateKeyPair('ed25519');
const CLIENT = { ip: '10.1.2.3', port: 50123 };
const NODE = { ip: '10.0.0.5', port: 3022 };
const NOW = Date.UTC(2026, 11, 6, 12, 0, 0);

/** A host key with a certificate of `role` in `cluster` from `ca`. */
function host(role: string, opts: { ca?: KeyPair; cluster?: string; key?: KeyPair } = {}): { key: KeyPair['privateKey']; certLine: string } {
  const pair = opts.key ?? generateKeyPair('ed25519');
  const cert = signHostCert({ caPrivateKey: (opts.ca ?? hostCA).privateKey, publicKey: publicKeyBlob(pair.publicKey), hostUUID: `${role.toLowerCase()}-uuid`, clusterName: opts.cluster ?? CLUSTER, role, now: new Date(NOW) });
  return { key: pair.privateKey, certLine: formatAuthorizedKey(cert) };
}

/** The JSON a hello carries, as a node reads it. */
function decode(hello: Buffer): ProxyHello {
  expect(hello.subarray(0, PROXY_HELLO_SIGNATURE.length).toString()).toBe(PROXY_HELLO_SIGNATURE);
  expect(hello[hello.length - 1]).toBe(0);
  return parseProxyHello(hello.subarray(PROXY_HELLO_SIGNATURE.length, hello.length - 1));
}

const trust = (over: { now?: number; local?: { ip: string; port: number }; hostCAs?: Buffer[] } = {}) => ({
  clusterName: CLUSTER,
  hostCAs: over.hostCAs ?? [publicKeyBlob(hostCA.publicKey)],
  local: over.local ?? NODE,
  now: over.now ?? NOW,
});

describe('Teleport-Proxy hello', () => {
  const proxy = host('Proxy');

  it('GIVEN a hello signed by a proxy of the cluster for this node, now THEN the client address is believed, in the Teleport 4.x shape', () => {
    // GIVEN
    const hello = signProxyHello(proxy, CLIENT, NODE, NOW);
    // WHEN
    const parsed = decode(hello);
    // THEN
    expect(parsed.clientAddr).toBe('10.1.2.3:50123');
    expect(new HelloVerifier().verify(parsed, trust())).toEqual(CLIENT);
  });

  it('GIVEN an IPv6 client THEN its address is bracketed and believed', () => {
    const parsed = decode(signProxyHello(proxy, { ip: '2001:db8::7', port: 1234 }, NODE, NOW));
    expect(parsed.clientAddr).toBe('[2001:db8::7]:1234');
    expect(new HelloVerifier().verify(parsed, trust())).toEqual({ ip: '2001:db8::7', port: 1234 });
  });

  it('GIVEN an RSA proxy key THEN its hello is believed too', () => {
    const rsaProxy = host('Proxy', { key: generateKeyPair('rsa', { rsaBits: 2048 }) });
    expect(new HelloVerifier().verify(decode(signProxyHello(rsaProxy, CLIENT, NODE, NOW)), trust())).toEqual(CLIENT);
  });

  it('GIVEN an unsigned hello (the Teleport 4.x form, or one a user forged) THEN it parses but is not believed', () => {
    const unsigned = parseProxyHello(Buffer.from(JSON.stringify({ clientAddr: '6.6.6.6:666' })));
    expect(() => new HelloVerifier().verify(unsigned, trust())).toThrow(/not signed/);
    const noSig = { ...decode(signProxyHello(proxy, CLIENT, NODE, NOW)), sig: undefined };
    expect(() => new HelloVerifier().verify(noSig, trust())).toThrow(/not signed/);
  });

  it('GIVEN bytes that are no hello at all THEN they do not parse', () => {
    for (const bad of ['{not json', '[]', '{}', JSON.stringify({ clientAddr: 5 }), JSON.stringify({ clientAddr: 'x'.repeat(65) })]) {
      expect(() => parseProxyHello(Buffer.from(bad))).toThrow(BadParameterError);
    }
  });

  it('GIVEN a proxy certificate with a client address changed after signing THEN the signature does not match', () => {
    const parsed = { ...decode(signProxyHello(proxy, CLIENT, NODE, NOW)), clientAddr: '6.6.6.6:666' };
    expect(() => new HelloVerifier().verify(parsed, trust())).toThrow(/signature is not by the key/);
  });

  it("GIVEN a proxy's certificate with a signature by another key THEN it is not believed", () => {
    const thief = { key: generateKeyPair('ed25519').privateKey, certLine: proxy.certLine };
    expect(() => new HelloVerifier().verify(decode(signProxyHello(thief, CLIENT, NODE, NOW)), trust())).toThrow(/signature is not by the key/);
  });

  it("GIVEN a hello signed with a node's host certificate THEN it is not believed (role Node, not Proxy)", () => {
    const node = host('Node');
    expect(() => new HelloVerifier().verify(decode(signProxyHello(node, CLIENT, NODE, NOW)), trust())).toThrow(/role is Node, not Proxy/);
  });

  it('GIVEN a proxy certificate from another CA THEN it is not believed', () => {
    const stranger = host('Proxy', { ca: otherCA });
    expect(() => new HelloVerifier().verify(decode(signProxyHello(stranger, CLIENT, NODE, NOW)), trust())).toThrow(/untrusted CA/);
  });

  it('GIVEN a proxy certificate naming another cluster THEN it is not believed', () => {
    const leaf = host('Proxy', { cluster: 'leaf.example.com' });
    expect(() => new HelloVerifier().verify(decode(signProxyHello(leaf, CLIENT, NODE, NOW)), trust())).toThrow(/of cluster "leaf.example.com", not "example.com"/);
  });

  it('GIVEN a hello for another node THEN this node does not believe it', () => {
    const parsed = decode(signProxyHello(proxy, CLIENT, { ip: '10.0.0.6', port: 3022 }, NOW));
    expect(() => new HelloVerifier().verify(parsed, trust())).toThrow(/for 10.0.0.6:3022, not for this node's 10.0.0.5:3022/);
    expect(() => new HelloVerifier().verify(parsed, trust({ local: { ip: '10.0.0.6', port: 3023 } }))).toThrow(AccessDeniedError);
  });

  it(`GIVEN a hello older or newer than ${HELLO_MAX_SKEW_MS / 1000}s THEN it is not believed; within the skew it is`, () => {
    const parsed = decode(signProxyHello(proxy, CLIENT, NODE, NOW));
    expect(() => new HelloVerifier().verify(parsed, trust({ now: NOW + HELLO_MAX_SKEW_MS + 1 }))).toThrow(/more than 30s from now/);
    expect(() => new HelloVerifier().verify(parsed, trust({ now: NOW - HELLO_MAX_SKEW_MS - 1 }))).toThrow(/more than 30s from now/);
    expect(new HelloVerifier().verify(parsed, trust({ now: NOW + HELLO_MAX_SKEW_MS }))).toEqual(CLIENT);
    expect(new HelloVerifier().verify(parsed, trust({ now: NOW - HELLO_MAX_SKEW_MS }))).toEqual(CLIENT);
  });

  it('GIVEN the same hello twice THEN the second is a replay; once it is too old for the time check it is forgotten', () => {
    const verifier = new HelloVerifier();
    const parsed = decode(signProxyHello(proxy, CLIENT, NODE, NOW));
    expect(verifier.verify(parsed, trust())).toEqual(CLIENT);
    expect(() => verifier.verify(parsed, trust({ now: NOW + 1000 }))).toThrow(/replay/);
    // another hello from the same proxy and client, at another time or at the same millisecond, is new
    expect(verifier.verify(decode(signProxyHello(proxy, CLIENT, NODE, NOW + 1)), trust({ now: NOW + 1000 }))).toEqual(CLIENT);
    expect(verifier.verify(decode(signProxyHello(proxy, CLIENT, NODE, NOW)), trust({ now: NOW + 1000 }))).toEqual(CLIENT);
    expect(() => verifier.verify(parsed, trust({ now: NOW + HELLO_MAX_SKEW_MS + 1 }))).toThrow(/more than 30s/);
  });

  it('GIVEN a client address that is not ip:port THEN the hello is not believed', () => {
    const parsed = decode(signProxyHello(proxy, { ip: 'evil.example.com', port: 22 }, NODE, NOW));
    expect(() => new HelloVerifier().verify(parsed, trust())).toThrow(/not ip:port/);
  });

  it('GIVEN addresses THEN only ip:port and [ipv6]:port parse', () => {
    expect(parseAddress('127.0.0.2:5')).toEqual({ ip: '127.0.0.2', port: 5 });
    expect(parseAddress('[::1]:22')).toEqual({ ip: '::1', port: 22 });
    for (const bad of ['::1:22', '[127.0.0.1]:22', '1.2.3.4:65536', '1.2.3.4', 'host:22', '1.2.3.4:22 ', '999.1.1.1:1']) expect(parseAddress(bad)).toBeUndefined();
  });

  it('GIVEN no host CA loaded yet THEN nothing is believed (fail closed)', () => {
    expect(() => new HelloVerifier().verify(decode(signProxyHello(proxy, CLIENT, NODE, NOW)), trust({ hostCAs: [] }))).toThrow(/untrusted CA/);
  });
});
