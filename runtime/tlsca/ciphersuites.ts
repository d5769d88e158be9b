/**
 * The TLS policy of the cluster's front doors (the proxy's web listener on
 * 3080 and the auth API on 3025): TLS 1.3, and TLS 1.2 with ECDHE key
 * exchange and AEAD ciphers only (AES-GCM, ChaCha20-Poly1305): no CBC, no
 * CCM_8, no SHA-1 MAC, no RSA key exchange. `teleport.ciphersuites` narrows
 * the suites further, in Teleport's names (`tls-ecdhe-ecdsa-with-aes-128-gcm-sha256`)
 * plus, as an extension, the three TLS 1.3 suites (`tls-aes-128-gcm-sha256`).
 * Names Teleport knows for weak suites are refused with the reason.
 */
import { createPrivateKey } from 'node:crypto';
import { BadParameterError } from '../utils/errors';

/** Teleport's name → OpenSSL's name, TLS 1.2 suites the policy allows, in preference order. */
const TLS12_SUITES: Readonly<Record<string, string>> = {
  'tls-ecdhe-ecdsa-with-aes-128-gcm-sha256': 'ECDHE-ECDSA-AES128-GCM-SHA256',
  'tls-ecdhe-rsa-with-aes-128-gcm-sha256': 'ECDHE-RSA-AES128-GCM-SHA256',
  'tls-ecdhe-ecdsa-with-aes-256-gcm-sha384': 'ECDHE-ECDSA-AES256-GCM-SHA384',
  'tls-ecdhe-rsa-with-aes-256-gcm-sha384': 'ECDHE-RSA-AES256-GCM-SHA384',
  'tls-ecdhe-ecdsa-with-chacha20-poly1305': 'ECDHE-ECDSA-CHACHA20-POLY1305',
  'tls-ecdhe-rsa-with-chacha20-poly1305': 'ECDHE-RSA-CHACHA20-POLY1305',
};

/** The TLS 1.3 suites (all AEAD; CCM and CCM_8 are left out), named in the same style. */
const TLS13_SUITES: Readonly<Record<string, string>> = {
  'tls-aes-128-gcm-sha256': 'TLS_AES_128_GCM_SHA256',
  'tls-aes-256-gcm-sha384': 'TLS_AES_256_GCM_SHA384',
  'tls-chacha20-poly1305-sha256': 'TLS_CHACHA20_POLY1305_SHA256',
};

/** Suites Teleport has names for that this policy refuses. */
const WEAK_SUITES = [
  'tls-rsa-with-rc4-128-sha',
  'tls-rsa-with-3des-ede-cbc-sha',
  'tls-rsa-with-aes-128-cbc-sha',
  'tls-rsa-with-aes-256-cbc-sha',
  'tls-rsa-with-aes-128-cbc-sha256',
  'tls-rsa-with-aes-128-gcm-sha256',
  'tls-rsa-with-aes-256-gcm-sha384',
  'tls-ecdhe-ecdsa-with-rc4-128-sha',
  'tls-ecdhe-ecdsa-with-aes-128-cbc-sha',
  'tls-ecdhe-ecdsa-with-aes-256-cbc-sha',
  'tls-ecdhe-rsa-with-rc4-128-sha',
  'tls-ecdhe-rsa-with-3des-ede-cbc-sha',
  'tls-ecdhe-rsa-with-aes-128-cbc-sha',
  'tls-ecdhe-rsa-with-aes-256-cbc-sha',
  'tls-ecdhe-ecdsa-with-aes-128-cbc-sha256',
  'tls-ecdhe-rsa-with-aes-128-cbc-sha256',
];

/** Every name `teleport.ciphersuites` accepts. */
export const CIPHER_SUITE_NAMES: readonly string[] = [...Object.keys(TLS12_SUITES), ...Object.keys(TLS13_SUITES)];

/** Key exchange groups, strongest-first as clients pick: no finite-field DH, no X448/P-521 (slow, no gain). */
const GROUPS = 'X25519:P-256:P-384';

function weakness(name: string): string {
  const why: string[] = [];
  if (name.startsWith('tls-rsa-')) why.push('RSA key exchange has no forward secrecy');
  if (name.includes('-rc4-')) why.push('RC4 is broken');
  if (name.includes('-3des-')) why.push('3DES has 64-bit blocks');
  if (name.includes('-cbc-')) why.push('CBC mode');
  if (name.endsWith('-sha')) why.push('SHA-1 MAC');
  return why.join(', ');
}

/** Why `name` cannot be in `teleport.ciphersuites`, or undefined when it can. */
export function cipherSuiteProblem(name: string): string | undefined {
  const n = name.trim().toLowerCase();
  if (CIPHER_SUITE_NAMES.includes(n)) return undefined;
  const allowed = `allowed: ${CIPHER_SUITE_NAMES.join(', ')}`;
  if (WEAK_SUITES.includes(n)) return `${JSON.stringify(name)} is a weak TLS cipher suite (${weakness(n)}); ${allowed}`;
  return `unknown TLS cipher suite ${JSON.stringify(name)}; ${allowed}`;
}

/** The options of a Node TLS server that follow the policy, narrowed to `suites` when any are given. */
export interface TlsPolicy {
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** OpenSSL's cipher string: TLS 1.2 suites, then the TLS 1.3 ones (Node splits them). */
  ciphers: string;
  honorCipherOrder: true;
  ecdhCurve: string;
}

/**
 * The server TLS options for `teleport.ciphersuites` (`undefined` or empty:
 * every suite of the policy). The TLS 1.2 names narrow TLS 1.2 and the
 * TLS 1.3 names TLS 1.3; a list with only TLS 1.3 names turns TLS 1.2 off,
 * a list with only TLS 1.2 names keeps every TLS 1.3 suite (as Teleport,
 * whose TLS 1.3 suites are fixed). Throws on a name the policy refuses
 * (the config schema has refused it already).
 */
export function tlsPolicy(suites: readonly string[] = []): TlsPolicy {
  const names = suites.map((s) => s.trim().toLowerCase());
  for (const n of names) {
    const problem = cipherSuiteProblem(n);
    if (problem) throw new BadParameterError(`teleport.ciphersuites: ${problem}`);
  }
  const pick = (table: Readonly<Record<string, string>>) => {
    const chosen = Object.keys(table).filter((k) => names.includes(k));
    return (chosen.length > 0 ? chosen : Object.keys(table)).map((k) => table[k]);
  };
  const only13 = names.length > 0 && names.every((n) => n in TLS13_SUITES);
  const tls12 = only13 ? [] : pick(TLS12_SUITES);
  return { minVersion: only13 ? 'TLSv1.3' : 'TLSv1.2', ciphers: [...tls12, ...pick(TLS13_SUITES)].join(':'), honorCipherOrder: true, ecdhCurve: GROUPS };
}

/**
 * A warning when no TLS 1.2 suite of `policy` fits the certificate's key
 * (ECDHE-ECDSA suites need an EC key, ECDHE-RSA ones an RSA key): TLS 1.2
 * clients could not connect, only TLS 1.3 ones.
 */
export function policyKeyMismatch(policy: TlsPolicy, keyPem: string): string | undefined {
  const tls12 = policy.ciphers.split(':').filter((c) => c.startsWith('ECDHE-'));
  if (policy.minVersion === 'TLSv1.3' || tls12.length === 0) return undefined;
  const type = createPrivateKey(keyPem).asymmetricKeyType;
  const kind = type === 'ec' ? 'ECDSA' : type === 'rsa' || type === 'rsa-pss' ? 'RSA' : undefined;
  if (!kind || tls12.some((c) => c.startsWith(`ECDHE-${kind}-`))) return undefined;
  return `teleport.ciphersuites names no TLS 1.2 suite for this ${kind} certificate (tls-ecdhe-${kind.toLowerCase()}-with-...): only TLS 1.3 clients can connect`;
}
