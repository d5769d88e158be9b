// A certified OpenID provider (the oidc-provider package) on loopback for tests, run as its own
// process (the package is ESM only). Its settings come as JSON in argv[2]:
//   { port, issuer, client: { client_id, client_secret, redirect_uri }, accounts: { <login>: { email, groups, ... } } }
// It logs in any account of `accounts` with any password (the package's development
// interactions: a login form, then a consent form), asks for PKCE, and prints "oidc provider listening" when ready.
import Provider from 'oidc-provider';

const cfg = JSON.parse(process.argv[2]);
const provider = new Provider(cfg.issuer, {
  clients: [
    {
      client_id: cfg.client.client_id,
      client_secret: cfg.client.client_secret,
      redirect_uris: [cfg.client.redirect_uri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  scopes: ['openid', 'email', 'groups'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  pkce: { required: () => true },
  cookies: { keys: ['test-cookie-key-0123456789abcdef'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(_ctx, id) {
    const claims = cfg.accounts[id];
    if (!claims) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...claims }) };
  },
});
provider.listen(cfg.port, '127.0.0.1', () => process.stdout.write('oidc provider listening\n'));
process.on('SIGTERM', () => process.exit(0));
