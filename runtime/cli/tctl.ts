#!/usr/bin/env node
/**
 * `tctl`: the admin tool. It runs on an auth server and talks to the local
 * auth API with the admin identity the auth service keeps in data_dir.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { Command, Option } from 'commander';
import type { AuthClient, HostPort } from '../auth/client';
import type { CertAuthority, Server, TrustedClusterResource, User } from '../auth/resources';
import type { Connector } from '../auth/sso/connectors';
import type { RemoteClusterStatus } from '../auth/trust';
import { Ports } from '../contract/ports';
import { procStoragePath } from '../service/datadir';
import { BadParameterError, NotFoundError } from '../utils/errors';
import { lazyModule } from '../utils/lazy';
import { TOKEN_ID_RE, tokenId } from '../utils/secrets';
import { setLogLevel } from '../utils/logger';
import { VERSION } from '../version';
import { collect, runCli } from './common';
import { keyValueTable, table } from '../utils/table';
import type { SignFormat } from './identityfile';

// What the commands run, loaded when a command runs it (bench/README.md, "Start-up"): `tctl --version` and
// `tctl --help` load none of it.
const yaml = lazyModule(() => require('yaml') as typeof import('yaml'));
const backend = lazyModule(() => require('../backend') as typeof import('../backend'));
const authClient = lazyModule(() => require('../auth/client') as typeof import('../auth/client'));
const identity = lazyModule(() => require('../auth/identity') as typeof import('../auth/identity'));
const caExport = lazyModule(() => require('../auth/export') as typeof import('../auth/export'));
const resources = lazyModule(() => require('../auth/resources') as typeof import('../auth/resources'));
const connectors = lazyModule(() => require('../auth/sso/connectors') as typeof import('../auth/sso/connectors'));
const configs = lazyModule(() => require('../config') as typeof import('../config'));
const sshcert = lazyModule(() => require('../sshcert') as typeof import('../sshcert'));
const tlsca = lazyModule(() => require('../tlsca') as typeof import('../tlsca'));
const identityFile = lazyModule(() => require('./identityfile') as typeof import('./identityfile'));

interface GlobalOpts {
  config?: string;
  authServer?: string[];
  dataDir?: string;
  debug?: boolean;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64').toString();
const NS = 1_000_000;

interface Context {
  client: AuthClient;
  authAddr: HostPort;
  clusterName: string;
  publicAddr?: string;
}

async function connect(g: GlobalOpts): Promise<Context> {
  if (g.debug) setLogLevel('debug');
  else setLogLevel('error');
  const configPath = configs.resolveConfigPath(g.config, process.env);
  const config = configs.buildConfig(configPath ? configs.loadConfigFile(configPath) : {}, { roles: 'auth', ...(g.dataDir ? { dataDir: g.dataDir } : {}) }, process.env);
  const dbPath = procStoragePath(config.dataDir);
  if (!fs.existsSync(dbPath)) {
    throw new NotFoundError(
      `no admin identity in ${config.dataDir}: run tctl on the auth server, as the user that runs teleport, with the same --config or --data-dir`,
    );
  }
  const proc = await backend.openBackend({ type: 'sqlite', path: dbPath });
  let id;
  try {
    id = await new identity.IdentityStore(proc).load('Admin');
  } finally {
    await proc.close();
  }
  const listen = config.auth.listenAddr;
  const local = { host: listen.host === '0.0.0.0' || listen.host === '::' ? '127.0.0.1' : listen.host, port: listen.port };
  const servers = g.authServer?.length ? g.authServer.map((a) => configs.parseAddr(a, Ports.auth)) : [local];
  const client = new authClient.AuthClient({ servers, credentials: { key: id.tlsKey, cert: id.tlsCert, ca: id.tlsCACerts } });
  const pub = config.proxy.publicAddrs[0];
  return { client, authAddr: servers[0], clusterName: id.clusterName, ...(pub ? { publicAddr: `${pub.host}:${pub.port}` } : {}) };
}

async function withClient<T>(cmd: Command, fn: (ctx: Context) => Promise<T>): Promise<T> {
  const ctx = await connect(cmd.optsWithGlobals() as GlobalOpts);
  try {
    return await fn(ctx);
  } finally {
    ctx.client.close();
  }
}

const out = (s: string) => process.stdout.write(s);

function ttlOption(defaultValue: string) {
  return new Option('--ttl <duration>', 'Time to live, e.g. 30m, 1h, 12h').default(defaultValue);
}

function printJoinInstructions(ctx: Context, token: string, roles: string[], ttlMs: number, caPin: string): void {
  const minutes = Math.round(ttlMs / 60_000);
  const addr = `${ctx.authAddr.host === '127.0.0.1' ? os.hostname() : ctx.authAddr.host}:${ctx.authAddr.port}`;
  out(`The invite token: ${token}
This token will expire in ${minutes} minutes

Run this on the new node to join the cluster:

> teleport start \\
   --roles=${roles.map((r) => r.toLowerCase()).join(',')} \\
   --token=${token} \\
   --ca-pin=${caPin} \\
   --auth-server=${addr}

Please note:

  - This invitation token will expire in ${minutes} minutes
  - ${addr} must be reachable from the new node
`);
}

/** `tctl nodes add` and `tctl tokens add`: create a join token and print how to use it. */
async function addJoinToken(ctx: Context, roles: string, ttl: string, value?: string): Promise<void> {
  const ttlMs = configs.parseDuration(ttl);
  const t = await ctx.client.post<{ token: string; roles: string[] }>('/v1/tokens', {
    roles: roles.split(',').map((s) => s.trim()),
    ttl: ttlMs * NS,
    ...(value ? { token: value } : {}),
  });
  const status = await ctx.client.get<{ ca_pin: string }>('/v1/status');
  printJoinInstructions(ctx, t.token, t.roles, ttlMs, status.ca_pin);
}

async function proxyAddress(ctx: Context): Promise<string> {
  if (ctx.publicAddr) return ctx.publicAddr;
  const proxies = await ctx.client.get<Server[]>('/v1/proxies');
  const p = proxies[0];
  if (p) return p.spec.public_addr || p.spec.addr.replace(/:\d+$/, `:${Ports.web}`);
  return `${os.hostname()}:${Ports.web}`;
}

/** How a token named by its value or ID is shown after the fact: by its ID, so the value is not echoed. */
const displayTokenId = (tokenOrId: string) => (TOKEN_ID_RE.test(tokenOrId) ? tokenOrId : tokenId(tokenOrId));

/** The sign-up page for a token, and the note `tctl users add` and `reset` print with it. */
function signupUrl(proxy: string, token: string): string {
  return `https://${proxy}/web/newuser/${token}

NOTE: Make sure ${proxy} points at a Teleport proxy which users can access.
`;
}

function formatExpiry(iso?: string): string {
  if (!iso) return 'never';
  const d = new Date(iso);
  const left = Math.max(0, d.getTime() - Date.now());
  return `${d.toUTCString().replace(' GMT', ' UTC')} (${configs.formatDuration(Math.round(left / 1000) * 1000)})`;
}

function printFormatted(format: string, value: unknown, text: () => string): void {
  if (format === 'json') out(JSON.stringify(value, null, 2) + '\n');
  else if (format === 'yaml') out(yaml.stringify(value));
  else out(text());
}

const formatOption = () => new Option('--format <format>', 'Output format').choices(['text', 'json', 'yaml']).default('text');

const program = new Command('tctl')
  .description('Admin tool for the Teleport cluster')
  .version(VERSION, '--version')
  .option('-d, --debug', 'Enable verbose logging to stderr')
  .option('-c, --config <path>', 'Path to a configuration file [/etc/teleport.yaml]')
  .option('--auth-server <addr>', 'Address of the auth server [from the configuration] (repeatable)', collect)
  .option('--data-dir <path>', 'The auth server data directory holding the admin identity [from the configuration]');

program
  .command('version')
  .description('Prints the version')
  .action(() => {
    process.stdout.write(`Teleport v${VERSION} node ${process.version}\n`);
  });

// ---- users
const users = program.command('users').description('Manage users');
users
  .command('add <user> [logins]')
  .description('Creates a user and prints a sign-up URL')
  .option('--roles <roles>', 'Comma-separated roles of the new user', 'admin')
  .addOption(ttlOption('1h'))
  .action(async (user: string, logins: string | undefined, o: { roles: string; ttl: string }, cmd: Command) =>
    withClient(cmd, async (ctx) => {
      const ttlMs = configs.parseDuration(o.ttl);
      const token = await ctx.client.post<{ token: string; expires: string }>('/v1/signuptokens', {
        user,
        logins: (logins ?? '').split(',').map((s) => s.trim()).filter(Boolean),
        roles: o.roles.split(',').map((s) => s.trim()).filter(Boolean),
        ttl: ttlMs * NS,
      });
      const proxy = await proxyAddress(ctx);
      out(`Signup token has been created and is valid for ${configs.formatDuration(ttlMs)}. Share this URL with the user:
${signupUrl(proxy, token.token)}`);
    }),
  );
users
  .command('reset <user>')
  .description("Ends the user's password, second factor and browser sessions now and prints a link to set new ones")
  .addOption(ttlOption('1h'))
  .action(async (user: string, o: { ttl: string }, cmd: Command) =>
    withClient(cmd, async (ctx) => {
      const ttlMs = configs.parseDuration(o.ttl);
      const token = await ctx.client.post<{ token: string }>(`/v1/users/${encodeURIComponent(user)}/reset`, { ttl: ttlMs * NS });
      const proxy = await proxyAddress(ctx);
      out(`User "${user}" has been reset. Share this URL with the user to set a new password and second factor; it is valid for ${configs.formatDuration(ttlMs)}:
${signupUrl(proxy, token.token)}`);
    }),
  );
users
  .command('ls')
  .description('Lists all user accounts')
  .addOption(formatOption())
  .action(async (o: { format: string }, cmd: Command) =>
    withClient(cmd, async (ctx) => {
      const list = await ctx.client.get<User[]>('/v1/users');
      printFormatted(o.format, list, () =>
        table(['User', 'Allowed Logins'], list.map((u) => [u.metadata.name, (u.spec.traits.logins ?? []).join(',')])),
      );
    }),
  );
users
  .command('rm <users>')
  .description('Deletes user accounts (comma-separated)')
  .action(async (names: string, _o: unknown, cmd: Command) =>
    withClient(cmd, async (ctx) => {
      for (const name of names.split(',').map((s) => s.trim()).filter(Boolean)) {
        await ctx.client.delete(`/v1/users/${encodeURIComponent(name)}`);
        out(`User "${name}" has been deleted\n`);
      }
    }),
  );

// ---- nodes
const nodes = program.command('nodes').description('Manage nodes');
nodes
  .command('add')
  .description('Creates a join token and prints the command that adds a node')
  .option('--roles <roles>', 'Comma-separated roles of the new host', 'node')
  .addOption(ttlOption('30m'))
  .option('--token <token>', 'The token value (generated when omitted)')
  .action(async (o: { roles: string; ttl: string; token?: string }, cmd: Command) =>
    withClient(cmd, (ctx) => addJoinToken(ctx, o.roles, o.ttl, o.token)),
  );
nodes
  .command('ls')
  .description('Lists the nodes that are online')
  .option('--namespace <ns>', 'Namespace of the nodes', 'default')
  .addOption(formatOption())
  .action(async (o: { namespace: string; format: string }, cmd: Command) =>
    withClient(cmd, async (ctx) => {
      const list = await ctx.client.get<Server[]>(`/v1/namespaces/${encodeURIComponent(o.namespace)}/nodes`);
      list.sort((a, b) => a.spec.hostname.localeCompare(b.spec.hostname));
      printFormatted(o.format, list, () =>
        table(['Nodename', 'UUID', 'Address', 'Labels'], list.map((s) => [s.spec.hostname, s.metadata.name, resources.serverAddress(s), resources.formatServerLabels(s)])),
      );
    }),
  );

// ---- tokens
const tokens = program.command('tokens').description('Manage join tokens');
tokens
  .command('add')
  .description('Creates a join token')
  .requiredOption('--type <roles>', 'Roles of the token: node, proxy, auth, trusted_cluster (comma-separated)')
  .option('--value <token>', 'The token value (generated when omitted)')
  .addOption(ttlOption('1h'))
  .action(async (o: { type: string; value?: string; ttl: string }, cmd: Command) =>
    withClient(cmd, (ctx) => addJoinToken(ctx, o.type, o.ttl, o.value)),
  );
tokens
  .command('ls')
  .description('Lists join and sign-up tokens by ID (token values are not stored)')
  .addOption(formatOption())
  .action(async (o: { format: string }, cmd: Command) =>
    withClient(cmd, async (ctx) => {
      const list = await ctx.client.get<{ id: string; roles: string[]; expires?: string }[]>('/v1/tokens');
      const signups = await ctx.client.get<{ id: string; user: string; expires: string }[]>('/v1/signuptokens');
      const rows = [
        ...list.map((t) => ({ id: t.id, type: t.roles.join(','), expires: t.expires })),
        ...signups.map((t) => ({ id: t.id, type: 'Signup', user: t.user, expires: t.expires })),
      ];
      printFormatted(o.format, rows, () => table(['Token ID', 'Type', 'Expiry Time (UTC)'], rows.map((t) => [t.id, t.type, formatExpiry(t.expires)])));
    }),
  );
for (const name of ['rm', 'del']) {
  tokens
    .command(`${name} <token>`)
    .description('Deletes (revokes) a join token, named by its value or its ID')
    .action(async (token: string, _o: unknown, cmd: Command) =>
      withClient(cmd, async (ctx) => {
        await ctx.client.post('/v1/tokens/delete', { token });
        out(`Token ${displayTokenId(token)} has been deleted\n`);
      }),
    );
}

// ---- events
/** `--from`/`--to`: an RFC 3339 time, or a duration back from now (`2h`, `30m`). */
function timeArg(name: string, value: string): Date {
  if (/^\d+(\.\d+)?(ns|us|µs|ms|s|m|h)/.test(value)) return new Date(Date.now() - configs.parseDuration(value));
  const d = new Date(value);
  if (isNaN(d.getTime())) throw new BadParameterError(`${name}: "${value}" is neither an RFC 3339 time nor a duration like 2h`);
  return d;
}

program
  .command('events')
  .description('Audit events')
  .command('ls')
  .description('Searches the audit log by time range, event type and user')
  .option('--from <time>', 'Start: RFC 3339 time or a duration back from now', '24h')
  .option('--to <time>', 'End: RFC 3339 time or a duration back from now (default: now)')
  .option('--type <event>', 'Event type, e.g. user.login or session.start (repeatable)', collect)
  .option('--user <name>', "Only events of this Teleport user (the event's user field)")
  .option('--limit <n>', 'At most this many events', (v: string) => {
    if (!/^\d+$/.test(v) || Number(v) < 1) throw new BadParameterError(`--limit must be a positive integer, got "${v}"`);
    return Number(v);
  })
  .addOption(formatOption())
  .action(async (o: { from: string; to?: string; type?: string[]; user?: string; limit?: number; format: string }, cmd: Command) =>
    withClient(cmd, async (ctx) => {
      const q = new URLSearchParams([
        ['from', timeArg('--from', o.from).toISOString()],
        ['to', (o.to ? timeArg('--to', o.to) : new Date()).toISOString()],
        ...(o.type ?? []).map((t): [string, string] => ['event', t]),
        ...(o.user !== undefined ? [['user', o.user] as [string, string]] : []),
        ...(o.limit ? [['limit', String(o.limit)] as [string, string]] : []),
      ]);
      const events = await ctx.client.get<Record<string, unknown>[]>(`/v1/events?${q}`);
      printFormatted(o.format, events, () =>
        table(
          ['Time', 'Event', 'Code', 'User', 'Details'],
          events.map((e) => {
            const { time, event, code, user, uid: _uid, ei: _ei, ...rest } = e;
            return [String(time ?? ''), String(event ?? ''), String(code ?? ''), String(user ?? ''), JSON.stringify(rest)];
          }),
        ),
      );
    }),
  );

// ---- auth
const auth = program.command('auth').description('Operations with the cluster certificate authorities');
auth
  .command('export')
  .description('Exports the public keys of the cluster CAs for OpenSSH (or the TLS CA)')
  .addOption(new Option('--type <type>', 'CA type').choices(['user', 'host', 'tls']))
  .action(async (o: { type?: string }, cmd: Command) =>
    withClient(cmd, async (ctx) => {
      const lines: string[] = [];
      for (const type of o.type === 'tls' ? ['host'] : o.type ? [o.type] : ['user', 'host']) {
        const cas = await ctx.client.get<CertAuthority[]>(`/v1/authorities/${type}`);
        for (const ca of cas) {
          const cluster = ca.spec.cluster_name;
          if (o.type === 'tls') {
            lines.push(...ca.spec.tls_key_pairs.map((p) => unb64(p.cert).trimEnd()));
            continue;
          }
          lines.push(...caExport.exportLines(type as 'user' | 'host', cluster, ca.spec.checking_keys.map(unb64)));
        }
      }
      out(lines.join('\n') + '\n');
    }),
  );
const PHASES = ['init', 'update_clients', 'update_servers', 'standby', 'rollback'];
auth
  .command('rotate')
  .description('Rotates the cluster certificate authorities: automatically over the grace period, or by hand phase by phase (--manual)')
  .option('--grace-period <duration>', 'How long certificates from the old CA stay trusted, e.g. 30h', '30h')
  .option('--manual', 'Move the rotation by hand to --phase (default: automatic)')
  .addOption(new Option('--type <type>', 'The CA to rotate (default: both)').choices(['user', 'host']))
  .addOption(new Option('--phase <phase>', `With --manual, the phase to move to (default: init)`).choices(PHASES))
  .action(async (o: { gracePeriod: string; manual?: boolean; type?: 'user' | 'host'; phase?: string }, cmd: Command) =>
    withClient(cmd, async (ctx) => {
      if (o.phase && !o.manual) throw new BadParameterError('--phase needs --manual: an automatic rotation steps through the phases on its own');
      if (o.phase && o.phase !== 'init' && cmd.getOptionValueSource('gracePeriod') === 'cli') {
        throw new BadParameterError('--grace-period is set when a rotation starts (--phase=init, or an automatic one), not on a later phase');
      }
      const gracePeriodMs = configs.parseDuration(o.gracePeriod);
      // both by default, the host CA first
      for (const type of o.type ? [o.type] : (['host', 'user'] as const)) {
        await ctx.client.post(`/v1/authorities/${type}/rotate`, {
          mode: o.manual ? 'manual' : 'auto',
          grace_period: gracePeriodMs * 1e6,
          ...(o.phase ? { target_phase: o.phase } : {}),
        });
      }
      out(o.manual ? `Updated rotation phase to "${o.phase ?? 'init'}". To check status use 'tctl status'` : "Initiated certificate authority rotation. To check status use 'tctl status'");
    }),
  );

auth
  .command('sign')
  .description('Creates an identity (key and certificate) for a user or an OpenSSH server')
  .option('--user <user>', 'Teleport user name')
  .option('--host <hosts>', 'Comma-separated host names for an OpenSSH host certificate')
  .requiredOption('-o, --out <path>', 'Where to write the key (and <path>-cert.pub)')
  .addOption(new Option('--format <format>', 'Identity format').choices(['openssh', 'file', 'tls']).default('file'))
  .addOption(ttlOption('12h'))
  .action(async (o: { user?: string; host?: string; out: string; format: SignFormat; ttl: string }, cmd: Command) =>
    withClient(cmd, async (ctx) => {
      if (!!o.user === !!o.host) throw new BadParameterError('use exactly one of --user or --host');
      if (o.host && o.format !== 'openssh') throw new BadParameterError('--host needs --format=openssh');
      const ttlMs = configs.parseDuration(o.ttl);
      const ssh = sshcert.generateKeyPair('ed25519');
      const sshPub = b64(sshcert.formatAuthorizedKey(sshcert.publicKeyBlob(ssh.publicKey)));
      let files: string[];
      if (o.host) {
        const res = await ctx.client.post<{ cert: string }>('/v1/hosts/certs', { public_key: sshPub, host_names: o.host.split(',').map((s) => s.trim()), ttl: ttlMs * NS });
        files = identityFile.writeCredentials(o.out, 'openssh', { sshKey: ssh.privateKey, sshCert: unb64(res.cert), tlsCACerts: [], knownHosts: [] });
      } else {
        const tlsKey = tlsca.generateTlsKey();
        const res = await ctx.client.post<{ cert: string; tls_cert: string; tlsCACerts: string[]; sshCACerts: string[] }>(
          `/v1/users/${encodeURIComponent(o.user!)}/certs`,
          { public_key: sshPub, tls_public_key: b64(tlsca.publicKeyPem(tlsKey)), ttl: ttlMs * NS },
        );
        files = identityFile.writeCredentials(o.out, o.format, {
          sshKey: ssh.privateKey,
          sshCert: unb64(res.cert),
          tlsKey,
          tlsCert: unb64(res.tls_cert),
          tlsCACerts: res.tlsCACerts,
          knownHosts: [],
        });
      }
      out(`The credentials have been written to ${files.join(', ')}\n`);
    }),
  );

// ---- status
program
  .command('status')
  .description('Reports the cluster status and its CA pin')
  .action(async (_o: unknown, cmd: Command) =>
    withClient(cmd, async (ctx) => {
      const s = await ctx.client.get<{ cluster_name: string; user_ca: string; host_ca: string; user_ca_keys?: string[]; host_ca_keys?: string[]; ca_pin: string }>('/v1/status');
      // each CA's key fingerprints under it, the signing one first
      const keys = (fps: string[] = []): [string, string][] => fps.map((fp, i) => ['', i === 0 && fps.length > 1 ? `${fp} (signing)` : fp]);
      out(keyValueTable([['Cluster', s.cluster_name], ['User CA', s.user_ca], ...keys(s.user_ca_keys), ['Host CA', s.host_ca], ...keys(s.host_ca_keys), ['CA pin', s.ca_pin]]));
    }),
  );

// ---- resources
type Kind = 'user' | 'role' | 'token' | 'node' | 'cert_authority' | 'trusted_cluster' | 'remote_cluster' | 'oidc' | 'github';
const KIND_ALIASES: Record<string, Kind> = {
  user: 'user', users: 'user', role: 'role', roles: 'role', token: 'token', tokens: 'token',
  node: 'node', nodes: 'node', cert_authority: 'cert_authority', cert_authorities: 'cert_authority', cas: 'cert_authority', ca: 'cert_authority',
  trusted_cluster: 'trusted_cluster', trusted_clusters: 'trusted_cluster', tc: 'trusted_cluster',
  remote_cluster: 'remote_cluster', remote_clusters: 'remote_cluster', rc: 'remote_cluster',
  oidc: 'oidc', github: 'github',
};
const KINDS = 'user, role, token, node, cert_authority, trusted_cluster (tc), remote_cluster (rc), oidc, github';

/** The resources of a list named `name` (all when no name); NotFound when a name matches nothing. */
function named<T extends { metadata: { name: string } }>(list: T[], kind: string, name?: string): T[] {
  const res = list.filter((r) => !name || r.metadata.name === name);
  if (name && !res.length) throw new NotFoundError(`${kind} "${name}" not found`);
  return res;
}

function parseRef(ref: string): { kind: Kind; name?: string } {
  const [k, ...rest] = ref.split('/');
  const kind = KIND_ALIASES[k.toLowerCase()];
  if (!kind) throw new BadParameterError(`unknown resource kind "${k}": expected one of ${KINDS}`);
  const name = rest.join('/');
  return { kind, ...(name ? { name } : {}) };
}

async function getResources(ctx: Context, kind: Kind, name?: string, withSecrets = false): Promise<unknown[]> {
  const one = (p: string) => ctx.client.get<unknown>(p).then((r) => [r]);
  switch (kind) {
    case 'user':
      return name ? one(`/v1/users/${encodeURIComponent(name)}`) : ctx.client.get<unknown[]>('/v1/users');
    case 'role':
      return name ? one(`/v1/roles/${encodeURIComponent(name)}`) : ctx.client.get<unknown[]>('/v1/roles');
    case 'token': {
      // Named by its ID or its value; shown by its ID (the value is not stored).
      const list = await ctx.client.get<{ id: string; roles: string[]; expires?: string; static: boolean }[]>('/v1/tokens');
      const res = list
        .filter((t) => !name || t.id === name || t.id === tokenId(name))
        .map((t) => ({ kind: 'token', version: 'v2', metadata: { name: t.id, ...(t.expires ? { expires: t.expires } : {}) }, spec: { roles: t.roles } }));
      if (name && !res.length) throw new NotFoundError(`token not found`);
      return res;
    }
    case 'node': {
      const list = await ctx.client.get<Server[]>('/v1/namespaces/default/nodes');
      const res = list.filter((s) => !name || s.metadata.name === name || s.spec.hostname === name);
      if (name && !res.length) throw new NotFoundError(`node "${name}" not found`);
      return res;
    }
    case 'cert_authority': {
      const cas = [...(await ctx.client.get<CertAuthority[]>('/v1/authorities/user')), ...(await ctx.client.get<CertAuthority[]>('/v1/authorities/host'))];
      return cas.filter((c) => !name || `${c.sub_kind}/${c.metadata.name}` === name || c.metadata.name === name);
    }
    case 'trusted_cluster':
      return named(await ctx.client.get<TrustedClusterResource[]>('/v1/trustedclusters'), 'trusted cluster', name);
    case 'remote_cluster':
      return named(await ctx.client.get<RemoteClusterStatus[]>('/v1/remoteclusters'), 'remote cluster', name);
    case 'oidc':
    case 'github':
      // The client secret only with --with-secrets.
      return named(await ctx.client.get<Connector[]>(`/v1/connectors/${kind}${withSecrets ? '?with_secrets=true' : ''}`), `${kind} connector`, name);
  }
}

program
  .command('get <resource>')
  .description('Prints resources as YAML: users, user/<name>, roles, role/<name>, tokens, nodes, cert_authorities, trusted_clusters (tc), remote_clusters (rc), oidc, github')
  .addOption(new Option('--format <format>', 'Output format').choices(['yaml', 'json']).default('yaml'))
  .option('--with-secrets', "Include secrets (an auth connector's client_secret)")
  .action(async (ref: string, o: { format: string; withSecrets?: boolean }, cmd: Command) =>
    withClient(cmd, async (ctx) => {
      const { kind, name } = parseRef(ref);
      const list = await getResources(ctx, kind, name, !!o.withSecrets);
      if (o.format === 'json') out(JSON.stringify(list, null, 2) + '\n');
      else out(list.map((r) => yaml.stringify(r)).join('---\n'));
    }),
  );

program
  .command('create <file>')
  .description('Creates resources from a YAML file (several documents allowed)')
  .option('-f, --force', 'Overwrite resources that exist')
  .action(async (file: string, o: { force?: boolean }, cmd: Command) => {
    const text = fs.readFileSync(file, 'utf8');
    const docs = yaml.parseAllDocuments(text, { prettyErrors: true });
    const parsed: { kind: string; value: unknown }[] = [];
    for (const [i, doc] of (Array.isArray(docs) ? docs : [docs]).entries()) {
      if (doc.errors.length) throw new BadParameterError(`${file}: ${doc.errors[0].message}`);
      const value = doc.toJS() as { kind?: unknown } | null;
      if (value === null) continue;
      const where = `${file} (document ${i + 1})`;
      const kind = typeof value?.kind === 'string' ? value.kind : '';
      if (kind === 'user') parsed.push({ kind, value: resources.parseResource(resources.userSchema, value, where) });
      else if (kind === 'role') parsed.push({ kind, value: resources.parseResource(resources.roleSchema, value, where) });
      else if (kind === 'token') parsed.push({ kind, value: resources.parseResource(resources.tokenSchema, value, where) });
      else if (kind === 'trusted_cluster') parsed.push({ kind, value: resources.parseResource(resources.trustedClusterSchema, value, where) });
      else if (kind === 'oidc' || kind === 'github') parsed.push({ kind, value: resources.parseResource(connectors.connectorSchema(kind), value, where) });
      else if (kind === 'node') parsed.push({ kind, value: resources.parseResource(resources.serverSchema, value, where) });
      else throw new BadParameterError(`${where}: cannot create resources of kind "${kind || '(missing)'}": expected user, role, token, trusted_cluster, oidc, github or node`);
    }
    // Everything is validated before anything is written.
    await withClient(cmd, async (ctx) => {
      for (const r of parsed) {
        const q = o.force ? '' : '?create=true';
        if (r.kind === 'user') {
          await ctx.client.put(`/v1/users${q}`, r.value);
          out(`user "${(r.value as User).metadata.name}" has been ${o.force ? 'updated' : 'created'}\n`);
        } else if (r.kind === 'role') {
          await ctx.client.put(`/v1/roles${q}`, r.value);
          out(`role "${(r.value as { metadata: { name: string } }).metadata.name}" has been ${o.force ? 'updated' : 'created'}\n`);
        } else if (r.kind === 'oidc' || r.kind === 'github') {
          await ctx.client.put(`/v1/connectors/${r.kind}${q}`, r.value);
          out(`${r.kind} connector "${(r.value as Connector).metadata.name}" has been ${o.force ? 'created or updated' : 'created'}\n`);
        } else if (r.kind === 'node') {
          // A server without the node service (an OpenSSH server), listed and reached through the proxy like a node.
          const n = r.value as Server;
          await ctx.client.put(`/v1/namespaces/${encodeURIComponent(n.metadata.namespace)}/nodes${q}`, n);
          out(`node "${n.metadata.name}" has been ${o.force ? 'updated' : 'created'}\n`);
        } else if (r.kind === 'trusted_cluster') {
          // Creating one establishes trust with the root (its proxy checks the token and exchanges CAs); -f updates one.
          await ctx.client.put(`/v1/trustedclusters${o.force ? '?force=true' : ''}`, r.value);
          out(`trusted cluster "${(r.value as TrustedClusterResource).metadata.name}" has been ${o.force ? 'created or updated' : 'created'}\n`);
        } else {
          const t = r.value as { metadata: { name: string; expires?: string }; spec: { roles: string[] } };
          const ttlMs = t.metadata.expires ? new Date(t.metadata.expires).getTime() - Date.now() : undefined;
          if (ttlMs !== undefined && !(ttlMs > 0)) throw new BadParameterError(`token ${t.metadata.name} has already expired`);
          if (o.force) await ctx.client.post('/v1/tokens/delete', { token: t.metadata.name }).catch(() => undefined);
          await ctx.client.post('/v1/tokens', { token: t.metadata.name, roles: t.spec.roles, ...(ttlMs ? { ttl: ttlMs * NS } : {}) });
          out(`token has been created\n`);
        }
      }
    });
  });

program
  .command('rm <resource>')
  .description('Deletes a resource: user/<name>, role/<name>, token/<token or ID>, node/<uuid>, tc/<root cluster> (removes the trust), rc/<leaf cluster>, oidc/<name>, github/<name>')
  .action(async (ref: string, _o: unknown, cmd: Command) =>
    withClient(cmd, async (ctx) => {
      const { kind, name } = parseRef(ref);
      if (!name) throw new BadParameterError(`name the resource to delete, e.g. ${kind}/<name>`);
      if (kind === 'user') await ctx.client.delete(`/v1/users/${encodeURIComponent(name)}`);
      else if (kind === 'role') await ctx.client.delete(`/v1/roles/${encodeURIComponent(name)}`);
      else if (kind === 'token') await ctx.client.post('/v1/tokens/delete', { token: name });
      else if (kind === 'node') await ctx.client.delete(`/v1/namespaces/default/nodes/${encodeURIComponent(name)}`);
      else if (kind === 'trusted_cluster') await ctx.client.delete(`/v1/trustedclusters/${encodeURIComponent(name)}`);
      else if (kind === 'remote_cluster') await ctx.client.delete(`/v1/remoteclusters/${encodeURIComponent(name)}`);
      else if (kind === 'oidc' || kind === 'github') await ctx.client.delete(`/v1/connectors/${kind}/${encodeURIComponent(name)}`);
      else throw new BadParameterError('certificate authorities cannot be deleted');
      const what = kind === 'trusted_cluster' ? 'trusted cluster' : kind === 'remote_cluster' ? 'remote cluster' : kind === 'oidc' || kind === 'github' ? `${kind} connector` : kind;
      out(`${what} "${kind === 'token' ? displayTokenId(name) : name}" has been deleted\n`);
    }),
  );

void runCli(program);
