/**
 * Roles: what a user's certificate allows. A user's logins are the union of
 * the `allow.logins` of their roles (with `{{internal.logins}}` expanded from
 * the user's traits) minus every `deny.logins`; a permission holds when any
 * role grants it; the TTL is capped by the smallest `max_session_ttl`.
 */
import { Backend } from '../backend';
import { Keys, rangeEnd } from '../contract/keys';
import { formatDuration } from '../config/duration';
import { isReason, NotFoundError } from '../utils/errors';
import { defaultAdminRole, Role, roleSchema, User } from './resources';

export interface AccessChecker {
  logins: string[];
  roles: string[];
  maxSessionTtlMs: number;
  permit: { pty: boolean; portForwarding: boolean; agentForwarding: boolean; x11Forwarding: boolean };
}

const MAX_TTL_MS = 30 * 3600 * 1000;

function expand(value: string, user: User): string[] {
  const m = /^\{\{(internal|external)\.([a-z_]+)\}\}$/.exec(value);
  if (!m) return [value];
  return user.spec.traits[m[2]] ?? [];
}

/** What the user may do, given the roles' definitions. */
export function accessFor(user: User, roles: Role[]): AccessChecker {
  const allow = new Set<string>();
  const deny = new Set<string>();
  let maxTtl = MAX_TTL_MS;
  const permit = { pty: false, portForwarding: false, agentForwarding: false, x11Forwarding: false };
  for (const role of roles) {
    for (const l of role.spec.allow.logins ?? []) expand(l, user).forEach((x) => allow.add(x));
    for (const l of role.spec.deny.logins ?? []) expand(l, user).forEach((x) => deny.add(x));
    const o = role.spec.options;
    if (o.max_session_ttl !== undefined) maxTtl = Math.min(maxTtl, o.max_session_ttl);
    permit.pty ||= o.permit_pty ?? true;
    permit.portForwarding ||= o.port_forwarding ?? true;
    permit.agentForwarding ||= o.forward_agent ?? false;
    permit.x11Forwarding ||= o.permit_x11_forwarding ?? false;
  }
  return {
    logins: [...allow].filter((l) => !deny.has(l)),
    roles: roles.map((r) => r.metadata.name),
    maxSessionTtlMs: maxTtl,
    permit,
  };
}

type LabelSelector = Record<string, string | string[]> | undefined;

/** Whether a selector (`node_labels`) matches labels: every key matches; `'*': '*'` matches every node. */
export function labelsMatch(selector: LabelSelector, labels: Record<string, string>): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([key, want]) => {
    const values = Array.isArray(want) ? want : [want];
    if (key === '*') return values.includes('*');
    const have = labels[key];
    return have !== undefined && values.some((v) => v === '*' || v === have);
  });
}

/** Whether the roles let their holder see and reach a node with these labels: some role allows, none denies. */
export function nodeAllowed(roles: Role[], labels: Record<string, string>): boolean {
  if (roles.some((r) => labelsMatch(r.spec.deny.node_labels, labels))) return false;
  return roles.some((r) => labelsMatch(r.spec.allow.node_labels, labels));
}

type Rules = { resources: string[]; verbs: string[] }[] | undefined;

function rulesMatch(rules: Rules, resource: string, verb: string): boolean {
  return (rules ?? []).some((r) => (r.resources.includes('*') || r.resources.includes(resource)) && (r.verbs.includes('*') || r.verbs.includes(verb)));
}

/** Whether the roles' `rules` grant `verb` on `resource` (e.g. `session`/`read`): some role allows, none denies. */
export function rulesAllow(roles: Role[], resource: string, verb: string): boolean {
  if (roles.some((r) => rulesMatch(r.spec.deny.rules, resource, verb))) return false;
  return roles.some((r) => rulesMatch(r.spec.allow.rules, resource, verb));
}

/** A role as YAML/JSON for people: durations written back in Go form. */
export function displayRole(role: Role): unknown {
  const o = { ...role.spec.options } as Record<string, unknown>;
  for (const k of ['max_session_ttl', 'client_idle_timeout'] as const) {
    if (typeof o[k] === 'number') o[k] = formatDuration(o[k] as number);
  }
  return { ...role, spec: { ...role.spec, options: o } };
}

export class Roles {
  constructor(private readonly backend: Backend) {}

  /** Creates the default `admin` role unless it exists. */
  async init(): Promise<void> {
    const role = defaultAdminRole();
    try {
      await this.backend.create({ key: Keys.role(role.metadata.name), value: Buffer.from(JSON.stringify(displayRole(role))) });
    } catch (err) {
      if (!isReason(err, 'already_exists')) throw err;
    }
  }

  async get(name: string): Promise<Role> {
    try {
      const item = await this.backend.get(Keys.role(name));
      return roleSchema.parse(JSON.parse(item.value.toString()));
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError(`role "${name}" not found`);
      throw err;
    }
  }

  async list(): Promise<Role[]> {
    const items = await this.backend.getRange(Keys.roles(), rangeEnd(Keys.roles()));
    return items.map((i) => roleSchema.parse(JSON.parse(i.value.toString())));
  }

  async upsert(role: Role, create = false): Promise<void> {
    const item = { key: Keys.role(role.metadata.name), value: Buffer.from(JSON.stringify(displayRole(role))) };
    await (create ? this.backend.create(item) : this.backend.put(item));
  }

  async delete(name: string): Promise<void> {
    try {
      await this.backend.delete(Keys.role(name));
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError(`role "${name}" not found`);
      throw err;
    }
  }

  /** The roles of a user; a role that no longer exists is an error (fail closed). */
  async forUser(user: User): Promise<Role[]> {
    return Promise.all(user.spec.roles.map((r) => this.get(r)));
  }
}
