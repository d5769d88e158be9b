/**
 * The access decision (runtime/auth/access/decision.ts), table-driven: logins
 * allowed and denied, node_labels allow and deny, wildcards, deny wins, several
 * roles combined, the roles that still count for a certificate, the logins a
 * listing offers on a node (exactly those checkAccess allows), and the role
 * option defaults that decide a certificate's permissions.
 */
import { AccessRequest, AccessView, accessFor, allowedLogins, checkAccess, labelsMatch } from '../../../../runtime/auth/access/decision';
import { mapRoles, newUser, Role, RoleInput, RoleMapping, roleSchema, User } from '../../../../runtime/auth/resources';

function role(name: string, spec: RoleInput['spec']): Role {
  return roleSchema.parse({ kind: 'role', version: 'v3', metadata: { name }, spec });
}

const ROLES: Role[] = [
  role('prod', { allow: { logins: ['deploy', '{{internal.logins}}'], node_labels: { env: 'prod' } }, deny: { node_labels: { env: 'staging' } } }),
  role('everywhere', { allow: { logins: ['ops'], node_labels: { '*': '*' } } }),
  role('no-root', { allow: { logins: ['root'], node_labels: { '*': '*' } }, deny: { logins: ['root'] } }),
  role('dev-root', { allow: { logins: ['root'], node_labels: { env: 'dev' } } }),
  role('any-team', { allow: { logins: ['teamer'], node_labels: { team: '*' } } }),
  role('multi', { allow: { logins: ['multi'], node_labels: { env: ['qa', 'dev'], region: 'eu' } } }),
  role('nothing', { allow: { logins: ['idle'] } }),
  role('deny-all', { deny: { node_labels: { '*': '*' } } }),
];

function view(users: User[], roles: Role[] = ROLES, trusted: Record<string, RoleMapping[]> = {}): AccessView {
  return {
    user: (n) => users.find((u) => u.metadata.name === n),
    role: (n) => roles.find((r) => r.metadata.name === n),
    trustedCluster: (n) => (trusted[n] ? { roleMap: trusted[n] } : undefined),
  };
}

const PROD = { name: 'web-1', labels: { env: 'prod', team: 'web' } };
const STAGING = { name: 'stage-1', labels: { env: 'staging' } };
const DEV = { name: 'dev-1', labels: { env: 'dev', region: 'eu' } };
const BARE = { name: 'bare', labels: {} };

/** A user holding exactly these roles, with `bob` as their traits login; the certificate names the same roles. */
function ask(roles: string[], login: string | undefined, node: AccessRequest['node'], certRoles = roles) {
  const bob = newUser('bob', roles, ['bob'], 'test');
  return checkAccess(view([bob]), { user: 'bob', certRoles, node, ...(login !== undefined ? { login } : {}) });
}

describe('checkAccess', () => {
  it.each([
    // roles, login, node, allowed, reason
    [['prod'], 'deploy', PROD, true, ''],
    [['prod'], 'bob', PROD, true, ''], // {{internal.logins}} from the user's traits
    [['prod'], 'deploy', STAGING, false, 'access denied: user "bob" is not allowed on node "stage-1"'],
    [['prod'], 'deploy', DEV, false, 'access denied: user "bob" is not allowed on node "dev-1"'],
    [['prod'], 'root', PROD, false, 'access denied: login "root" is not allowed for user "bob"'],
    [['everywhere'], 'ops', BARE, true, ''], // '*': '*' matches a node without labels
    [['everywhere', 'prod'], 'ops', STAGING, false, 'access denied: user "bob" is not allowed on node "stage-1"'], // deny wins over '*'
    [['everywhere', 'deny-all'], 'ops', PROD, false, 'access denied: user "bob" is not allowed on node "web-1"'],
    [['no-root'], 'root', PROD, false, 'access denied: login "root" is not allowed for user "bob"'], // deny.logins wins
    [['no-root', 'dev-root'], 'root', DEV, false, 'access denied: login "root" is not allowed for user "bob"'],
    [['dev-root'], 'root', DEV, true, ''],
    // one role must allow both the login and the node (Teleport's rule)
    [['dev-root', 'everywhere'], 'root', PROD, false, 'access denied: login "root" is not allowed for user "bob" on node "web-1"'],
    [['dev-root', 'everywhere'], 'ops', DEV, true, ''],
    [['any-team'], 'teamer', PROD, true, ''], // a value '*' matches any value of a present label
    [['any-team'], 'teamer', DEV, false, 'access denied: user "bob" is not allowed on node "dev-1"'], // ...but not a missing label
    [['multi'], 'multi', DEV, true, ''], // a list of values, every key must match
    [['multi'], 'multi', { name: 'us-dev', labels: { env: 'dev', region: 'us' } }, false, 'access denied: user "bob" is not allowed on node "us-dev"'],
    [['nothing'], 'idle', PROD, false, 'access denied: user "bob" is not allowed on node "web-1"'], // no node_labels: no node
    [['prod', 'everywhere'], undefined, PROD, true, ''], // listing: some role reaches the node
    [['prod'], undefined, STAGING, false, 'access denied: user "bob" is not allowed on node "stage-1"'],
    [['nothing'], undefined, PROD, false, 'access denied: user "bob" is not allowed on node "web-1"'],
  ] as const)('roles %j, login %s on %j → allowed %s %s', (roles, login, node, allowed, reason) => {
    const d = ask([...roles], login, node);
    expect(d.allowed).toBe(allowed);
    if (!d.allowed) expect(d.reason).toBe(reason);
  });

  it('GIVEN a deleted user THEN every request is refused', () => {
    const d = checkAccess(view([]), { user: 'bob', certRoles: ['everywhere'], login: 'ops', node: PROD });
    expect(d).toEqual({ allowed: false, reason: 'access denied: user "bob" does not exist' });
  });

  it('GIVEN a certificate role the user no longer has, or that no longer exists, THEN it no longer counts', () => {
    // The certificate says everywhere, the user now has only prod.
    expect(ask(['prod'], 'ops', PROD, ['prod', 'everywhere'])).toEqual({ allowed: false, reason: 'access denied: login "ops" is not allowed for user "bob"' });
    // The role was deleted.
    const bob = newUser('bob', ['gone'], ['bob'], 'test');
    expect(checkAccess(view([bob]), { user: 'bob', certRoles: ['gone'], login: 'bob', node: PROD })).toEqual({
      allowed: false,
      reason: 'access denied: user "bob" has no roles',
    });
    // A role the user has but the certificate does not name is not added.
    expect(ask(['prod', 'everywhere'], 'ops', PROD, ['prod']).allowed).toBe(false);
  });

  it('GIVEN an allowed request THEN the decision carries the roles that counted', () => {
    const d = ask(['prod', 'everywhere'], 'ops', PROD, ['prod', 'everywhere', 'stale']);
    expect(d.allowed && d.roles.map((r) => r.metadata.name)).toEqual(['prod', 'everywhere']);
  });
});

describe('allowedLogins (what the web node list offers)', () => {
  const offered = (roles: string[], node: AccessRequest['node'], certRoles = roles) =>
    allowedLogins(view([newUser('bob', roles, ['bob'], 'test')]), { user: 'bob', certRoles, node });

  it.each([
    // roles, node, logins offered
    [['prod'], PROD, ['deploy', 'bob']], // {{internal.logins}} expanded from the traits
    [['prod'], STAGING, []],
    [['everywhere', 'prod'], PROD, ['ops', 'deploy', 'bob']], // role order, each role's own logins
    [['everywhere', 'prod'], STAGING, []], // deny.node_labels wins over '*'
    [['everywhere', 'deny-all'], BARE, []],
    [['no-root'], PROD, []], // deny.logins wins
    [['no-root', 'everywhere', 'dev-root'], DEV, ['ops']], // root allowed by two roles, denied by one
    [['dev-root', 'everywhere'], PROD, ['ops']], // root is allowed only where dev-root's node_labels match
    [['dev-root', 'everywhere'], DEV, ['root', 'ops']],
    [['any-team'], PROD, ['teamer']],
    [['any-team'], DEV, []],
    [['nothing'], PROD, []], // a login without node_labels reaches no node
    [['dev-root', 'dev-root'], DEV, ['root']], // once each
  ] as const)('roles %j on %j → %j', (roles, node, want) => {
    expect(offered([...roles], node)).toEqual(want);
  });

  it('GIVEN certificate roles the user no longer has, or a deleted user, THEN only the roles that still count offer logins', () => {
    expect(offered(['prod'], PROD, ['prod', 'everywhere'])).toEqual(['deploy', 'bob']);
    expect(allowedLogins(view([]), { user: 'bob', certRoles: ['everywhere'], node: PROD })).toEqual([]);
  });

  it('GIVEN every combination of two roles, every node and every login THEN a login is offered exactly when checkAccess allows it', () => {
    const names = ROLES.map((r) => r.metadata.name);
    const candidates = ['deploy', 'bob', 'ops', 'root', 'teamer', 'multi', 'idle', 'nobody'];
    const disagreements: string[] = [];
    let offers = 0;
    for (const a of names) {
      for (const b of names) {
        for (const node of [PROD, STAGING, DEV, BARE]) {
          const logins = offered([a, b], node);
          offers += logins.length;
          for (const login of candidates) {
            if (logins.includes(login) !== ask([a, b], login, node).allowed) disagreements.push(`${a}+${b} ${login}@${node.name}`);
          }
        }
      }
    }
    expect(disagreements).toEqual([]);
    expect(offers).toBeGreaterThan(0);
  });
});

describe('users of a trusted (root) cluster', () => {
  const PROD_NODE = { name: 'web1', labels: { env: 'prod' } };
  const trusted = { root: [{ remote: 'admin', local: ['prod'] }, { remote: 'ops', local: ['everywhere', 'no-root'] }] };
  const remoteReq = (certRoles: string[], login: string, cluster = 'root'): AccessRequest => ({
    user: 'alice',
    certRoles,
    login,
    node: PROD_NODE,
    remote: { cluster, logins: ['alice', 'root'] },
  });

  it('GIVEN a mapped role THEN the leaf role decides, with the certificate logins as internal.logins', () => {
    // GIVEN a leaf with no user "alice" WHEN root's alice (role admin → leaf prod) asks THEN prod's rules apply
    const v = view([], ROLES, trusted);
    expect(checkAccess(v, remoteReq(['admin'], 'deploy'))).toMatchObject({ allowed: true });
    expect(checkAccess(v, remoteReq(['admin'], 'alice'))).toMatchObject({ allowed: true });
    expect(checkAccess(v, remoteReq(['admin'], 'ops'))).toMatchObject({ allowed: false });
    expect(allowedLogins(v, { user: 'alice', certRoles: ['admin'], node: PROD_NODE, remote: { cluster: 'root', logins: ['alice', 'root'] } })).toEqual(['deploy', 'alice', 'root']);
  });

  it('GIVEN a role no mapping names THEN refused with the reason, even when a local user has the same name', () => {
    const v = view([newUser('alice', ['everywhere'], ['alice'], 'test')], ROLES, trusted);
    const d = checkAccess(v, remoteReq(['auditor'], 'ops'));
    expect(d).toEqual({ allowed: false, reason: 'access denied: user "alice" of cluster "root" has no roles here: role_map maps none of their roles (auditor)' });
  });

  it('GIVEN a cluster that is not trusted (or disabled) THEN refused', () => {
    expect(checkAccess(view([], ROLES, trusted), remoteReq(['admin'], 'deploy', 'other'))).toEqual({ allowed: false, reason: 'access denied: cluster "other" is not trusted by this cluster' });
  });

  it('GIVEN deny rules of the mapped roles THEN they win as for local users', () => {
    expect(checkAccess(view([], ROLES, trusted), remoteReq(['ops'], 'root'))).toMatchObject({ allowed: false });
  });

  it.each([
    [[{ remote: 'admin', local: ['a'] }], ['admin'], ['a']],
    [[{ remote: 'admin', local: ['a'] }], ['dev'], []],
    [[{ remote: '*', local: ['b'] }], ['dev'], ['b']],
    [[{ remote: '*', local: ['b'] }], [], []],
    [[{ remote: 'admin', local: ['a', 'b'] }, { remote: 'dev', local: ['b', 'c'] }], ['admin', 'dev'], ['a', 'b', 'c']],
  ] as [RoleMapping[], string[], string[]][])('mapRoles(%j, %j) = %j', (map, roles, want) => {
    expect(mapRoles(map, roles)).toEqual(want);
  });
});

describe('labelsMatch', () => {
  it.each([
    [undefined, { env: 'prod' }, false],
    [{}, { env: 'prod' }, false],
    [{ '*': '*' }, {}, true],
    [{ '*': 'prod' }, { env: 'prod' }, false],
    [{ env: 'prod' }, { env: 'prod', x: 'y' }, true],
    [{ env: 'prod', x: 'z' }, { env: 'prod', x: 'y' }, false],
    [{ env: ['a', 'prod'] }, { env: 'prod' }, true],
  ] as const)('%j against %j → %s', (selector, labels, want) => {
    expect(labelsMatch(selector as never, labels as Record<string, string>)).toBe(want);
  });
});

describe('accessFor (what a certificate carries)', () => {
  const user = newUser('bob', [], ['bob', 'root'], 'test');

  it('GIVEN a role without options THEN PTY and port forwarding are permitted, agent and X11 forwarding are not', () => {
    const a = accessFor(user, [role('plain', { allow: { logins: ['bob'] } })]);
    expect(a.permit).toEqual({ pty: true, portForwarding: true, agentForwarding: false, x11Forwarding: false });
  });

  it('GIVEN roles that grant options THEN any role granting one is enough; the smallest max_session_ttl wins', () => {
    const a = accessFor(user, [
      role('a', { options: { forward_agent: true, port_forwarding: false, permit_pty: false, max_session_ttl: '2h' }, allow: { logins: ['bob'] } }),
      role('b', { options: { permit_x11_forwarding: true, port_forwarding: false, permit_pty: false, max_session_ttl: '1h' } }),
    ]);
    expect(a.permit).toEqual({ pty: false, portForwarding: false, agentForwarding: true, x11Forwarding: true });
    expect(a.maxSessionTtlMs).toBe(3600_000);
  });

  it('GIVEN allowed and denied logins across roles THEN the certificate lists the allowed minus the denied, traits expanded', () => {
    const a = accessFor(user, [role('a', { allow: { logins: ['{{internal.logins}}', 'deploy'] } }), role('b', { deny: { logins: ['root'] } })]);
    expect(a.logins).toEqual(['bob', 'deploy']);
  });
});
