/**
 * Static join tokens of `auth_service.tokens`: `"proxy,node:secret"`, or
 * `"auth:/path/to/tokenfile"` where a value starting with `/` names a file
 * holding the token.
 */

import { readFileSync } from 'node:fs';
import { BadParameterError } from '../utils/errors';

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

/** Reads a token value, following it to a file when it starts with `/`. */
export function readTokenValue(value: string): string {
  if (!value.startsWith('/')) return value;
  let text: string;
  try {
    text = readFileSync(value, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new BadParameterError(`cannot read token file ${JSON.stringify(value)}: ${why}`);
  }
  const token = text.trim();
  if (token === '') throw new BadParameterError(`token file ${JSON.stringify(value)} is empty`);
  return token;
}
