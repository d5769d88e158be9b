/**
 * A stand-in for GitHub's OAuth and REST endpoints that the GitHub connector uses, as GitHub documents
 * them, on a free loopback port: `GET /login/oauth/authorize` (the user named by `signIn` authorizes at
 * once: a redirect to the app's callback with a one-time code and the state), `POST
 * /login/oauth/access_token` (the code, the client's ID and secret and the redirect URI; a bad or used
 * code gets GitHub's 200 with `error: bad_verification_code`), `GET /user` and `GET /user/teams`
 * (`per_page`/`page`, at most 100 a page), with `Authorization: Bearer <token>`.
 */
import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface GithubTeam {
  org: string;
  slug: string;
  name?: string;
}

export class FakeGithub {
  /** The user who authorizes the app next. */
  signIn = '';
  private readonly codes = new Map<string, string>();
  private readonly tokens = new Map<string, string>();

  private constructor(
    private readonly server: http.Server,
    readonly url: string,
    private readonly app: { clientId: string; clientSecret: string; redirectUri: string },
    private readonly teams: Record<string, GithubTeam[]>,
  ) {}

  static async start(app: { clientId: string; clientSecret: string; redirectUri: string }, teams: Record<string, GithubTeam[]>): Promise<FakeGithub> {
    let fake: FakeGithub | undefined;
    const server = http.createServer((req, res) => fake!.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    fake = new FakeGithub(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`, app, teams);
    return fake;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', this.url);
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && url.pathname === '/login/oauth/authorize') {
      const q = url.searchParams;
      if (q.get('client_id') !== this.app.clientId || q.get('redirect_uri') !== this.app.redirectUri || !q.get('state')) return json(400, { message: 'bad authorize request' });
      const code = randomBytes(10).toString('hex');
      this.codes.set(code, this.signIn);
      const to = new URL(this.app.redirectUri);
      to.searchParams.set('code', code);
      to.searchParams.set('state', q.get('state')!);
      res.writeHead(302, { location: to.toString() });
      return void res.end();
    }
    if (req.method === 'POST' && url.pathname === '/login/oauth/access_token') {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        const f = new URLSearchParams(body);
        if (f.get('client_id') !== this.app.clientId || f.get('client_secret') !== this.app.clientSecret) return json(200, { error: 'incorrect_client_credentials' });
        const user = this.codes.get(f.get('code') ?? '');
        if (user === undefined || f.get('redirect_uri') !== this.app.redirectUri) return json(200, { error: 'bad_verification_code', error_description: 'The code passed is incorrect or expired.' });
        this.codes.delete(f.get('code')!);
        const token = `gho_${randomBytes(16).toString('hex')}`;
        this.tokens.set(token, user);
        json(200, { access_token: token, token_type: 'bearer', scope: 'read:org' });
      });
      return;
    }
    const user = this.tokens.get((req.headers.authorization ?? '').replace(/^(Bearer|token) /, ''));
    if (user === undefined) return json(401, { message: 'Bad credentials' });
    if (req.method === 'GET' && url.pathname === '/user') return json(200, { login: user, id: 1 });
    if (req.method === 'GET' && url.pathname === '/user/teams') {
      const perPage = Math.min(Number(url.searchParams.get('per_page') ?? 30), 100);
      const page = Number(url.searchParams.get('page') ?? 1);
      const all = (this.teams[user] ?? []).map((t) => ({ slug: t.slug, name: t.name ?? t.slug, organization: { login: t.org } }));
      return json(200, all.slice((page - 1) * perPage, page * perPage));
    }
    json(404, { message: 'Not Found' });
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
