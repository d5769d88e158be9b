/**
 * The GitHub side of a login (GitHub's OAuth web application flow): the
 * browser authorizes the OAuth app at `<endpoint_url>/login/oauth/authorize`
 * (scope `read:org`, to see team memberships); the code is exchanged at
 * `<endpoint_url>/login/oauth/access_token`; `<api_endpoint_url>/user` names
 * the user and `/user/teams` lists their teams. `teams_to_logins` then gives
 * the logins and roles: a user in no mapped team is refused.
 */
import { AccessDeniedError } from '../../utils/errors';
import type { GithubConnector } from './connectors';
import { fetchJson } from './fetch';
import { SsoIdentity, SsoRefusal } from './identity';

const API_HEADERS = { accept: 'application/vnd.github+json', 'x-github-api-version': '2022-11-28' };
/** Teams per page, and pages read at most (GitHub's largest page is 100). */
const PAGE = 100;
const MAX_PAGES = 10;

const base = (url: string) => url.replace(/\/+$/, '');

export function githubAuthorizeUrl(c: GithubConnector, state: string): string {
  const url = new URL(base(c.spec.endpoint_url) + '/login/oauth/authorize');
  url.searchParams.set('client_id', c.spec.client_id);
  url.searchParams.set('redirect_uri', c.spec.redirect_url);
  url.searchParams.set('scope', 'read:org');
  url.searchParams.set('state', state);
  return url.toString();
}

interface Team {
  slug?: unknown;
  name?: unknown;
  organization?: { login?: unknown };
}

export async function githubIdentity(c: GithubConnector, code: string): Promise<SsoIdentity> {
  const token = await fetchJson<{ access_token?: unknown; error?: unknown; error_description?: unknown }>(base(c.spec.endpoint_url) + '/login/oauth/access_token', 'GitHub code exchange', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: c.spec.client_id, client_secret: c.spec.client_secret, code, redirect_uri: c.spec.redirect_url }).toString(),
  });
  // GitHub answers 200 with an `error` for a bad or used code.
  if (typeof token.access_token !== 'string' || !token.access_token) {
    throw new AccessDeniedError(`GitHub code exchange refused: ${typeof token.error === 'string' ? token.error : 'no access token'}${typeof token.error_description === 'string' ? ` (${token.error_description.slice(0, 200)})` : ''}`);
  }
  const headers = { ...API_HEADERS, authorization: `Bearer ${token.access_token}` };
  const user = await fetchJson<{ login?: unknown }>(base(c.spec.api_endpoint_url) + '/user', 'GitHub user', { headers });
  if (typeof user.login !== 'string' || !user.login) throw new AccessDeniedError('GitHub did not name the user (/user has no login)');
  const teams: Team[] = [];
  for (let page = 1; page <= MAX_PAGES; page++) {
    const list = await fetchJson<Team[]>(`${base(c.spec.api_endpoint_url)}/user/teams?per_page=${PAGE}&page=${page}`, 'GitHub teams', { headers });
    if (!Array.isArray(list)) throw new AccessDeniedError('GitHub teams: /user/teams did not answer a list');
    teams.push(...list);
    if (list.length < PAGE) break;
  }
  return githubIdentityOf(c, user.login, teams);
}

/** The user a GitHub login and their teams are: the logins and roles of every mapping whose organization and team they are in. */
export function githubIdentityOf(c: GithubConnector, login: string, teams: Team[]): SsoIdentity {
  const member = teams
    .filter((t) => typeof t.organization?.login === 'string')
    .map((t) => ({ org: t.organization!.login as string, slug: typeof t.slug === 'string' ? t.slug : '', name: typeof t.name === 'string' ? t.name : '' }));
  const matched = c.spec.teams_to_logins.filter((m) => member.some((t) => t.org === m.organization && (t.slug === m.team || t.name === m.team)));
  if (!matched.length) {
    const wanted = c.spec.teams_to_logins.map((m) => `${m.organization}/${m.team}`).join(', ');
    throw new SsoRefusal(login, `GitHub user ${login} is not a member of any team that GitHub connector "${c.metadata.name}" maps (${wanted}): ask an administrator for access`);
  }
  return {
    username: login,
    roles: [...new Set(matched.flatMap((m) => m.roles))],
    traits: { logins: [...new Set(matched.flatMap((m) => m.logins))], github_teams: member.map((t) => `${t.org}/${t.slug || t.name}`).slice(0, 64) },
    audit: { github_teams: matched.map((m) => `${m.organization}/${m.team}`) },
  };
}
