/**
 * Static join tokens of `auth_service.tokens`: `"proxy,node:secret"`, or
 * `"auth:/path/to/tokenfile"` where a value starting with `/` names a file
 * holding the token.
 */

import { readFileSync } from 'node:fs';
import { BadParameterError } from '../utils/errors';
import { fileErrorText } from '../utils/files';

export const STATIC_TOKEN_ROLES = ['auth', 'node', 'proxy', 'trusted_cluster', 'signup'] as const;
export type StaticTokenRole = (typeof STATIC_TOKEN_ROLES)[number];

export interface StaticTokenSpec {
  readonly roles: StaticTokenRole[];
  /** The token itself, or the path of the file holding it when `fromFile`. */
  readonly value: string;
  readonly fromFile: boolean;
}

/** Parses `roles:token`; throws a BadParameterError saying what is wrong. */
export function parseStaticTokenSpec(entry: string): StaticTokenSpec {
  const colon = entry.indexOf(':');
  if (colon < 0) {
    throw new BadParameterError(`expected "roles:token" such as "proxy,node:secret", got ${JSON.stringify(entry)}`);
  }
  const roles: StaticTokenRole[] = [];
  for (const raw of entry.slice(0, colon).split(',')) {
    const role = raw.trim().toLowerCase();
    if (!(STATIC_TOKEN_ROLES as readonly string[]).includes(role)) {
      throw new BadParameterError(
        `unknown role ${JSON.stringify(raw.trim())} in ${JSON.stringify(entry)} (expected ${STATIC_TOKEN_ROLES.join(', ')})`,
      );
    }
    if (!roles.includes(role as StaticTokenRole)) roles.push(role as StaticTokenRole);
  }
  const value = entry.slice(colon + 1).trim();
  if (value === '') throw new BadParameterError(`the token of ${JSON.stringify(entry)} is empty`);
  return { roles, value, fromFile: value.startsWith('/') };
}

const CA_PIN = /^sha256:[0-9a-f]{64}$/;
/** Normalises one CA pin (`sha256:<64 hex>`, lower case); throws a BadParameterError when it is not one. */
export function normalizeCaPin(s: string): string {
  const t = s.trim().toLowerCase();
  if (!CA_PIN.test(t)) {
    throw new BadParameterError(
      `expected a CA pin "sha256:<64 hex digits>" as printed by "tctl status", got ${JSON.stringify(s.length > 60 ? s.slice(0, 57) + '...' : s)}`,
    );
  }
  return t;
}

/** Reads a token value, following it to a file when it starts with `/`. */
export function readTokenValue(value: string): string {
  return value.startsWith('/') ? readValueFile(value, 'token') : value;
}

/**
 * The CA pins of one `ca_pin` entry: the pin itself, or, when it starts with `/`, the pins
 * in that file (separated by white space or commas), as the AMI's join-secrets fetch writes it.
 */
export function readCaPinsValue(value: string): string[] {
  if (!value.startsWith('/')) return [normalizeCaPin(value)];
  return parseCaPinList(readValueFile(value, 'CA pin'), `CA pin file ${JSON.stringify(value)}`);
}

/** Pins separated by white space or commas; a bad one throws a BadParameterError starting with `where`. */
export function parseCaPinList(text: string, where: string): string[] {
  return text
    .split(/[\s,]+/)
    .filter((p) => p !== '')
    .map((p) => {
      try {
        return normalizeCaPin(p);
      } catch (err) {
        throw new BadParameterError(`${where}: ${(err as Error).message}`);
      }
    });
}

/** The trimmed, non-empty content of a token or pin file; a BadParameterError says why not. */
export function readValueFile(path: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new BadParameterError(`cannot read ${what} file ${JSON.stringify(path)}: ${fileErrorText(err)}`);
  }
  const content = text.trim();
  if (content === '') throw new BadParameterError(`${what} file ${JSON.stringify(path)} is empty`);
  return content;
}
