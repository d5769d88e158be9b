/**
 * The SSH algorithms the node (3022) and proxy (3023) offer and tsh's client
 * asks for: the names this implementation supports, the defaults, and the
 * checks behind teleport.yaml's `ciphers`, `kex_algos` and `mac_algos`.
 *
 * Defaults are as modern as current OpenSSH or stricter: the post-quantum
 * hybrid mlkem768x25519-sha256 first (OpenSSH 9.9's default), then
 * curve25519; only AEAD or encrypt-then-MAC ciphers and MACs, no SHA-1, no
 * NIST curves, and compression only after authentication (zlib@openssh.com).
 * A list in the config replaces the defaults (as in Teleport), in its order.
 * Names outside SUPPORTED are refused: SHA-1 key exchanges and MACs, CBC and
 * RC4 ciphers, and diffie-hellman-group-exchange-* (the SSH library does
 * not implement its server side: a client that picked it always failed).
 */
import { closestName } from '../utils/didyoumean';

export type AlgorithmKind = 'kex' | 'cipher' | 'mac';

export const MLKEM768X25519_SHA256 = 'mlkem768x25519-sha256';

const CIPHERS = ['chacha20-poly1305@openssh.com', 'aes256-gcm@openssh.com', 'aes128-gcm@openssh.com', 'aes256-ctr', 'aes192-ctr', 'aes128-ctr'];

/** Supported names, best first; `defaults` is what is offered when the config says nothing. */
export const SSH_ALGORITHMS: Record<AlgorithmKind, { supported: readonly string[]; defaults: readonly string[] }> = {
  kex: {
    supported: [
      MLKEM768X25519_SHA256,
      'curve25519-sha256',
      'curve25519-sha256@libssh.org',
      // opt-in: NIST curves (FIPS-minded clients) and fixed finite-field groups
      'ecdh-sha2-nistp256',
      'ecdh-sha2-nistp384',
      'ecdh-sha2-nistp521',
      'diffie-hellman-group16-sha512',
      'diffie-hellman-group18-sha512',
      'diffie-hellman-group14-sha256',
    ],
    defaults: [MLKEM768X25519_SHA256, 'curve25519-sha256', 'curve25519-sha256@libssh.org'],
  },
  // every supported cipher is a default: AEAD, or CTR with an encrypt-then-MAC MAC
  cipher: { supported: CIPHERS, defaults: CIPHERS },
  mac: {
    supported: [
      'hmac-sha2-256-etm@openssh.com',
      'hmac-sha2-512-etm@openssh.com',
      // opt-in: encrypt-and-MAC, for old clients only
      'hmac-sha2-256',
      'hmac-sha2-512',
    ],
    defaults: ['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-512-etm@openssh.com'],
  },
};

/** Compression: none, or zlib only once the user has authenticated (never `zlib`, which starts before). */
export const SSH_COMPRESSION: readonly string[] = ['none', 'zlib@openssh.com'];

/** What one SSH endpoint offers, best first. */
export interface SshAlgorithms {
  kex: string[];
  ciphers: string[];
  macs: string[];
}

export const DEFAULT_SSH_ALGORITHMS: SshAlgorithms = {
  kex: [...SSH_ALGORITHMS.kex.defaults],
  ciphers: [...SSH_ALGORITHMS.cipher.defaults],
  macs: [...SSH_ALGORITHMS.mac.defaults],
};

const KIND_NAMES: Record<AlgorithmKind, string> = { kex: 'key exchange algorithm', cipher: 'cipher', mac: 'MAC algorithm' };

/** Names refused on purpose, and why. */
const REFUSED: [RegExp, string][] = [
  [/^diffie-hellman-group-exchange-/, 'the SSH library has no server side for group exchange'],
  [/sha1/, 'SHA-1 is weak'],
  [/md5|ripemd/, 'a weak hash'],
  [/^arcfour/, 'RC4 is broken'],
  [/-cbc$/, 'CBC mode is weak'],
  [/-96$/, 'a truncated MAC'],
  [/^sntrup761x25519-/, `not implemented; ${MLKEM768X25519_SHA256} is the post-quantum key exchange here`],
  [/^none$/, 'no encryption or integrity'],
];

/** Why `name` cannot be configured as a `kind`, or undefined when it can. */
export function algorithmProblem(kind: AlgorithmKind, name: string): string | undefined {
  const { supported } = SSH_ALGORITHMS[kind];
  if (supported.includes(name)) return undefined;
  const refused = REFUSED.find(([re]) => re.test(name));
  const hint = refused ? undefined : closestName(name, supported, Math.max(2, Math.floor(name.length / 5)));
  return (
    `${JSON.stringify(name)} is not a supported ${KIND_NAMES[kind]}` +
    (refused ? ` (refused: ${refused[1]})` : hint ? ` (did you mean ${JSON.stringify(hint)}?)` : '') +
    `; supported: ${supported.join(', ')}`
  );
}

/** Why a configured list cannot be used as it is, or undefined (each name is checked by algorithmProblem). */
export function algorithmListProblem(kind: AlgorithmKind, names: readonly string[]): string | undefined {
  if (names.length === 0) {
    return `an empty list would offer no ${KIND_NAMES[kind]} and no client could connect; leave the key out for the defaults (${SSH_ALGORITHMS[kind].defaults.join(', ')})`;
  }
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  return dup === undefined ? undefined : `${JSON.stringify(dup)} is listed more than once`;
}

/** The algorithms to offer for the config's lists (already validated): each list replaces its defaults. */
export function sshAlgorithmsOf(config: { kexAlgos?: string[]; ciphers?: string[]; macAlgos?: string[] }): SshAlgorithms {
  return {
    kex: [...(config.kexAlgos ?? DEFAULT_SSH_ALGORITHMS.kex)],
    ciphers: [...(config.ciphers ?? DEFAULT_SSH_ALGORITHMS.ciphers)],
    macs: [...(config.macAlgos ?? DEFAULT_SSH_ALGORITHMS.macs)],
  };
}
