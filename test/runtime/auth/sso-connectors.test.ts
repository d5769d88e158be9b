/**
 * Connector resources (runtime/auth/sso/connectors.ts) as `tctl create` validates them: the Teleport
 * 4.x shapes with their defaults, URLs that must be https (http only on a loopback host), unknown
 * keys refused by name; and `tctl get` without secrets.
 */
import { connectorView, GithubConnector, githubConnectorSchema, OidcConnector, oidcConnectorSchema } from '../../../runtime/auth/sso/connectors';
import { githubIdentityOf } from '../../../runtime/auth/sso/github';
import { oidcIdentityOf } from '../../../runtime/auth/sso/oidc';
import { parseResource } from '../../../runtime/auth/resources';

const oidc = (spec: Record<string, unknown>) => ({
  kind: 'oidc',
  version: 'v2',
  metadata: { name: 'corp' },
  spec: {
    issuer_url: 'https://idp.example.com',
    client_id: 'teleport',
    client_secret: 's3cret',
    redirect_url: 'https://proxy.example.com:3080/v1/webapi/oidc/callback',
    claims_to_roles: [{ claim: 'groups', value: 'ops', roles: ['ops'] }],
    ...spec,
  },
});

const problem = (v: unknown) => {
  try {
    parseResource(oidcConnectorSchema, v, 'corp.yaml');
    return 'accepted';
  } catch (err) {
    return (err as Error).message;
  }
};

describe('connector resources', () => {
  test('GIVEN the manual\'s GitHub connector WHEN parsed THEN GitHub\'s endpoints and the admin role are the defaults', () => {
    const c = githubConnectorSchema.parse({
      kind: 'github',
      version: 'v3',
      metadata: { name: 'github' },
      spec: { client_id: 'id', client_secret: 'secret', display: 'Github', redirect_url: 'https://proxy.example.com/v1/webapi/github/callback', teams_to_logins: [{ organization: 'octocats', team: 'admins', logins: ['root'] }] },
    });
    expect(c.spec).toMatchObject({ endpoint_url: 'https://github.com', api_endpoint_url: 'https://api.github.com', teams_to_logins: [{ logins: ['root'], roles: ['admin'] }] });
  });

  test.each([
    ['an http issuer on another host', { issuer_url: 'http://idp.example.com' }, 'spec.issuer_url: must be an https:// URL (http:// only for a loopback host)'],
    ['a redirect URL with credentials', { redirect_url: 'https://u:p@proxy.example.com/cb' }, 'spec.redirect_url: must not carry credentials or a #fragment'],
    ['no claims_to_roles', { claims_to_roles: [] }, 'spec.claims_to_roles'],
    ['a key it does not know', { acr_values: 'x' }, 'acr_values'],
    ['an empty client secret', { client_secret: '' }, 'spec.client_secret'],
  ])('GIVEN an OIDC connector with %s WHEN created THEN refused, naming the key', (_what, spec, message) => {
    expect(problem(oidc(spec))).toContain(message);
  });

  test('GIVEN an http issuer on a loopback address WHEN created THEN accepted (a provider on this machine)', () => {
    expect(problem(oidc({ issuer_url: 'http://127.0.0.1:9000' }))).toBe('accepted');
  });

  test('GIVEN a connector WHEN shown without secrets THEN its client secret is blank; with them, it is there', () => {
    const c = oidcConnectorSchema.parse(oidc({}));
    expect(JSON.stringify(connectorView(c, false))).not.toContain('s3cret');
    expect(connectorView(c, true).spec.client_secret).toBe('s3cret');
  });
});

describe('connector mappings', () => {
  const corp = oidcConnectorSchema.parse(
    oidc({ claims_to_roles: [{ claim: 'groups', value: 'ops', roles: ['ops'] }, { claim: 'department', value: 'sre', roles: ['ops', 'oncall'] }] }),
  ) as OidcConnector;
  const refused = (f: () => unknown) => {
    try {
      f();
      return 'accepted';
    } catch (err) {
      return (err as Error).message;
    }
  };

  test('GIVEN claims matching two entries (a list and a string) WHEN mapped THEN the user gets both entries\' roles once, and their user claims as traits', () => {
    const id = oidcIdentityOf(corp, { sub: 'u1', iss: 'https://idp.example.com', nonce: 'n', email: 'ann@example.com', groups: ['dev', 'ops'], department: 'sre' });
    expect(id.username).toBe('ann@example.com');
    expect(id.roles).toEqual(['ops', 'oncall']);
    expect(id.traits).toEqual({ email: ['ann@example.com'], groups: ['dev', 'ops'], department: ['sre'] });
  });

  test('GIVEN claims matching no entry, no email, or an email the provider did not verify WHEN mapped THEN refused, saying why', () => {
    expect(refused(() => oidcIdentityOf(corp, { sub: 'u1', email: 'ann@example.com', groups: ['dev'] }))).toBe(
      'user ann@example.com matches no claims_to_roles entry of OIDC connector "corp" (groups=ops, department=sre): ask an administrator for access',
    );
    expect(refused(() => oidcIdentityOf(corp, { sub: 'u1', groups: ['ops'] }))).toContain('sent no email claim');
    expect(refused(() => oidcIdentityOf(corp, { sub: 'u1', email: 'ann@example.com', email_verified: false, groups: ['ops'] }))).toContain('is not verified');
  });

  test('GIVEN GitHub teams WHEN mapped THEN a team matches by slug or name within its organization only', () => {
    const gh = githubConnectorSchema.parse({
      kind: 'github',
      version: 'v3',
      metadata: { name: 'github' },
      spec: { client_id: 'id', client_secret: 'secret', redirect_url: 'https://proxy.example.com/cb', teams_to_logins: [{ organization: 'octocats', team: 'Site Reliability', logins: ['root'] }] },
    }) as GithubConnector;
    expect(githubIdentityOf(gh, 'ann', [{ slug: 'site-reliability', name: 'Site Reliability', organization: { login: 'octocats' } }]).traits.logins).toEqual(['root']);
    expect(refused(() => githubIdentityOf(gh, 'ann', [{ slug: 'site-reliability', name: 'Site Reliability', organization: { login: 'other-org' } }]))).toContain(
      'GitHub user ann is not a member of any team that GitHub connector "github" maps (octocats/Site Reliability)',
    );
  });
});
