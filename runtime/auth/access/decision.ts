/**
 * The one place where access is decided: pure functions over a user, the
 * current definitions of their roles, a login and a node's labels. The proxy
 * (before it dials), the node (before any channel opens), the auth service
 * (certificates, `tsh ls`, the web node list) all call these, so they can
 * never disagree.
 *
 * Rules, as in Teleport 4.x (`RoleSet.CheckAccessToServer`):
 * - deny wins: a role whose `deny.logins` names the login, or whose
 *   `deny.node_labels` match the node, refuses;
 * - otherwise one role must allow both: its `allow.logins` name the login and
 *   its `allow.node_labels` match the node;
 * - `'*': '*'` matches every node; a value `'*'` matches any value of a label;
 *   an empty selector matches nothing;
 * - `{{internal.logins}}` (any `{{internal.x}}` / `{{external.x}}`) expands to
 *   the user's current traits.
 * `allowedLogins` lists, for the web node list, exactly the logins `checkAccess`
 * allows on a node.
 * The roles that count are those named in the certificate that the user still
 * has and that still exist, so removing a role from a user, editing or
 * deleting it, or deleting the user bites at the next connection. A user of a
 * trusted (root) cluster has no user record here: the roles that count are
 * the certificate's roles mapped by that cluster's `role_map`, while the
 * cluster is trusted and enabled.
 */
import { mapRoles, type Role, type RoleMapping, type User } from '../resources';

/** What a user certificate allows, from the roles it carries (`permit-*` extensions). */
export interface Permissions {
  pty: boolean;
  portForwarding: boolean;
  agentForwarding: boolean;
  x11Forwarding: boolean;
}

export interface AccessChecker {
  logins: string[];
  roles: string[];
  maxSessionTtlMs: number;
  permit: Permissions;
}

/** The longest user certificate the roles can ever grant (formats.md §1.3). */
const MAX_TTL_MS = 30 * 3600 * 1000;

type Conditions = Role['spec']['allow'];

/** A login as a role writes it, with `{{internal.x}}` / `{{external.x}}` expanded from the user's traits. */
function expand(value: string, user: User): string[] {
  const m = /^\{\{(internal|external)\.([a-z_]+)\}\}$/.exec(value);
  if (!m) return [value];
  return user.spec.traits[m[2]] ?? [];
}

function loginsOf(c: Conditions, user: User): string[] {
  return (c.logins ?? []).flatMap((l) => expand(l, user));
}

/** The option defaults of a role (Teleport's): PTY and port forwarding on, agent and X11 forwarding off. */
function permissionsOf(role: Role): Permissions {
  const o = role.spec.options;
  return {
    pty: o.permit_pty ?? true,
    portForwarding: o.port_forwarding ?? true,
    agentForwarding: o.forward_agent ?? false,
    x11Forwarding: o.permit_x11_forwarding ?? false,
  };
}

/** What a certificate issued for `user` with these roles may do: the logins some role allows and none denies, the TTL cap, the permissions any role grants. */
export function accessFor(user: User, roles: Role[]): AccessChecker {
  const deny = new Set(roles.flatMap((r) => loginsOf(r.spec.deny, user)));
  const logins = [...new Set(roles.flatMap((r) => loginsOf(r.spec.allow, user)))].filter((l) => !deny.has(l));
  const permit: Permissions = { pty: false, portForwarding: false, agentForwarding: false, x11Forwarding: false };
  let maxSessionTtlMs = MAX_TTL_MS;
  for (const role of roles) {
    const p = permissionsOf(role);
    for (const k of Object.keys(permit) as (keyof Permissions)[]) permit[k] ||= p[k];
    if (role.spec.options.max_session_ttl !== undefined) maxSessionTtlMs = Math.min(maxSessionTtlMs, role.spec.options.max_session_ttl);
  }
  return { logins, roles: roles.map((r) => r.metadata.name), maxSessionTtlMs, permit };
}

type LabelSelector = Conditions['node_labels'];

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

type Rules = Conditions['rules'];

function rulesMatch(rules: Rules, resource: string, verb: string): boolean {
  return (rules ?? []).some((r) => (r.resources.includes('*') || r.resources.includes(resource)) && (r.verbs.includes('*') || r.verbs.includes(verb)));
}

/** Whether the roles' `rules` grant `verb` on `resource` (e.g. `session`/`read`): some role allows, none denies. */
export function rulesAllow(roles: Role[], resource: string, verb: string): boolean {
  if (roles.some((r) => rulesMatch(r.spec.deny.rules, resource, verb))) return false;
  return roles.some((r) => rulesMatch(r.spec.allow.rules, resource, verb));
}

/** A trusted (root) cluster whose users this cluster lets in, as far as decisions need it. */
export interface TrustedClusterRule {
  roleMap: readonly RoleMapping[];
}

/** The cluster's users and roles as they are now (a cache on proxies and nodes, the store on the auth service). */
export interface AccessView {
  user(name: string): User | undefined;
  role(name: string): Role | undefined;
  /** An enabled trusted cluster by name; undefined when it is not trusted (or disabled). */
  trustedCluster(name: string): TrustedClusterRule | undefined;
}

export interface AccessRequest {
  /** The cluster user: the certificate's key id. */
  user: string;
  /** The roles named in the certificate (or the web session's user's roles). */
  certRoles: string[];
  /** The OS login asked for; absent when only asking whether the node may be seen (listings). */
  login?: string;
  /** The node: its name for messages (never its labels), and its static and command labels. */
  node: { name: string; labels: Record<string, string> };
  /**
   * Set when the certificate is from a trusted (root) cluster's user CA: the user is no user of
   * this cluster; their certificate roles are mapped by the trusted cluster's `role_map`, and the
   * certificate's logins stand for `internal.logins`.
   */
  remote?: { cluster: string; logins: string[] };
}

export type AccessDecision = { allowed: true; user: User; roles: Role[] } | { allowed: false; reason: string };

const deny = (reason: string): AccessDecision => ({ allowed: false, reason: `access denied: ${reason}` });

/** The roles that still count for a certificate: named in it, still the user's, still defined. */
export function currentRoles(view: AccessView, user: User, certRoles: string[]): Role[] {
  return certRoles.filter((r) => user.spec.roles.includes(r)).flatMap((r) => view.role(r) ?? []);
}

/** The user a request is for: this cluster's user, or a trusted cluster's user with mapped roles; else the reason for refusing. */
function requester(view: AccessView, req: Omit<AccessRequest, 'login'>): { user: User; roles: Role[] } | { reason: string } {
  if (!req.remote) {
    const user = view.user(req.user);
    if (!user) return { reason: `user "${req.user}" does not exist` };
    const roles = currentRoles(view, user, req.certRoles);
    return roles.length ? { user, roles } : { reason: `user "${req.user}" has no roles` };
  }
  const { cluster, logins } = req.remote;
  const trusted = view.trustedCluster(cluster);
  if (!trusted) return { reason: `cluster "${cluster}" is not trusted by this cluster` };
  const mapped = mapRoles(trusted.roleMap, req.certRoles);
  const user: User = { kind: 'user', version: 'v2', metadata: { name: req.user }, spec: { roles: mapped, traits: { logins } } };
  const roles = currentRoles(view, user, mapped);
  if (roles.length) return { user, roles };
  return { reason: `user "${req.user}" of cluster "${cluster}" has no roles here: role_map maps none of their roles (${req.certRoles.join(', ') || 'none'})` };
}

/** The decision: allowed with the user and roles that count, or a reason fit to show the user and the audit log. */
export function checkAccess(view: AccessView, req: AccessRequest): AccessDecision {
  const who = requester(view, req);
  if ('reason' in who) return deny(who.reason);
  const { user, roles } = who;
  const { login, node } = req;
  const nodeDenied = `user "${req.user}" is not allowed on node "${node.name}"`;
  if (login !== undefined && roles.some((r) => loginsOf(r.spec.deny, user).includes(login))) return deny(`login "${login}" is not allowed for user "${req.user}"`);
  if (roles.some((r) => labelsMatch(r.spec.deny.node_labels, node.labels))) return deny(nodeDenied);
  const onNode = roles.filter((r) => labelsMatch(r.spec.allow.node_labels, node.labels));
  if (login === undefined) return onNode.length ? { allowed: true, user, roles } : deny(nodeDenied);
  if (onNode.some((r) => loginsOf(r.spec.allow, user).includes(login))) return { allowed: true, user, roles };
  if (!roles.some((r) => loginsOf(r.spec.allow, user).includes(login))) return deny(`login "${login}" is not allowed for user "${req.user}"`);
  return deny(onNode.length ? `login "${login}" is not allowed for user "${req.user}" on node "${node.name}"` : nodeDenied);
}

/**
 * The logins the user may use on the node: each candidate (the expanded `allow.logins` of the roles
 * that count, in role order, once each) that `checkAccess` allows there. Listings call this so they
 * offer exactly what the proxy and the node will let through.
 */
export function allowedLogins(view: AccessView, req: Omit<AccessRequest, 'login'>): string[] {
  const who = requester(view, req);
  if ('reason' in who) return [];
  const candidates = new Set(who.roles.flatMap((r) => loginsOf(r.spec.allow, who.user)));
  return [...candidates].filter((login) => checkAccess(view, { ...req, login }).allowed);
}
