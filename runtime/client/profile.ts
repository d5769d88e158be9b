/**
 * The per-proxy profile `<home>/<proxyHost>.yaml` (proxy addresses, user,
 * cluster) and the current-profile pointer `<home>/current-profile` (a file
 * holding the proxy host name of the profile `tsh status`/`tsh ssh` use).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse, stringify } from 'yaml';
import { z } from 'zod';
import { BadParameterError, NotFoundError } from '../utils/errors';
import { writeFileAtomic } from '../utils/files';
import { ensurePrivateDir, tshHome } from './paths';

export const CURRENT_PROFILE_FILE = 'current-profile';

export const profileSchema = z
  .object({
    /** `http` or `https`: how the web API was reached at login. */
    web_proxy_scheme: z.enum(['http', 'https']),
    /** `host:port` of the proxy's web API. */
    web_proxy_addr: z.string().min(1),
    /** `host:port` of the proxy's SSH port. */
    ssh_proxy_addr: z.string().min(1),
    user: z.string().min(1),
    cluster: z.string().min(1),
    /** Leaf clusters of this cluster known at login (trusted clusters): reached through this proxy with --cluster. */
    leaf_clusters: z.array(z.string().min(1)).optional(),
    /** Whether the web certificate was left unverified at login (--insecure). */
    insecure: z.boolean().optional(),
  })
  .strict();
export type Profile = z.infer<typeof profileSchema>;

const PROXY_HOST_RE = /^[A-Za-z0-9._:[\]-]{1,255}$/;

/** Refuses a proxy host that could escape the state directory when used as a file name. */
export function checkProxyHost(host: string): string {
  if (!PROXY_HOST_RE.test(host) || host === '.' || host === '..') throw new BadParameterError(`proxy host "${host}" is not a valid host name`);
  return host;
}

export function profilePath(proxyHost: string, home = tshHome()): string {
  return path.join(home, `${checkProxyHost(proxyHost)}.yaml`);
}

/** The host part of the profile's web address (the profile's and key directory's name). */
export function profileProxyHost(p: Profile): string {
  return splitHostPort(p.web_proxy_addr).host;
}

export function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(addr);
  if (!m) throw new BadParameterError(`"${addr}" is not host:port`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

export function saveProfile(p: Profile, home = tshHome()): void {
  ensurePrivateDir(home);
  const host = profileProxyHost(p);
  writeFileAtomic(profilePath(host, home), stringify(profileSchema.parse(p)));
  writeFileAtomic(path.join(home, CURRENT_PROFILE_FILE), host + '\n');
}

/** The current profile, or NotFoundError when nobody is logged in. */
export function loadCurrentProfile(home = tshHome()): Profile {
  let host: string;
  try {
    host = fs.readFileSync(path.join(home, CURRENT_PROFILE_FILE), 'utf8').trim();
  } catch {
    throw new NotFoundError(`not logged in: no current profile in ${home} (run "tsh login --proxy <host> --user <user>")`);
  }
  return loadProfile(host, home);
}

export function loadProfile(proxyHost: string, home = tshHome()): Profile {
  const file = profilePath(proxyHost, home);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new NotFoundError(`not logged in to ${proxyHost}: ${file} is missing`);
  }
  const parsed = profileSchema.safeParse(parse(text));
  if (!parsed.success) throw new BadParameterError(`profile ${file} is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** Removes a profile, and the current-profile pointer when it points at it. */
export function removeProfile(proxyHost: string, home = tshHome()): void {
  fs.rmSync(profilePath(proxyHost, home), { force: true });
  const pointer = path.join(home, CURRENT_PROFILE_FILE);
  try {
    if (fs.readFileSync(pointer, 'utf8').trim() === proxyHost) fs.rmSync(pointer, { force: true });
  } catch {
    // no pointer: nothing to remove
  }
}
