/**
 * A cluster for tests in one call: `teleport start` as a real process on
 * loopback ports with its own config and data dir, and `tctl` bound to it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AuthClient } from '../../runtime/auth/client';
import { Identity, IdentityStore } from '../../runtime/auth/identity';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { openBackend } from '../../runtime/backend';
import { Keys } from '../../runtime/contract/keys';
import type { ActiveSession } from '../../runtime/node/shared';
import { encodeOpenSSHPrivateKey, formatAuthorizedKey, generateKeyPair, publicKeyBlob, signUserCert } from '../../runtime/sshcert';
import { cliPath, Daemon, freePort, runCli, RunResult, tempDir } from './proc';

export interface TestAuthOptions {
  clusterName?: string;
  caKeyType?: 'ed25519' | 'ecdsa-p256' | 'ecdsa-p384' | 'rsa';
  /** Share a storage directory between auth servers. */
  storagePath?: string;
  /** `auth_service.tokens` entries. */
  tokens?: string[];
  /** Also run the node service in the same process, on this port. */
  nodePort?: number;
  /** `ssh_service.labels` and `commands` for that node. */
  labels?: Record<string, string>;
  commands?: { name: string; command: string[]; period: string }[];
  /** More YAML lines for that node's `ssh_service`. */
  sshExtra?: string[];
  /** Extra YAML lines for `auth_service` and `teleport`. */
  authExtra?: string[];
  teleportExtra?: string[];
  /**
   * Also run the proxy service in the same process; `extra`: more YAML lines for `proxy_service`;
   * `host`: the address its listeners bind (and clients dial) instead of 127.0.0.1;
   * `publicHost`: its `public_addr` host (with the web port), which `webUrl` then names (e.g. localhost, for WebAuthn).
   */
  proxy?: { insecureNoTls?: boolean; extra?: string[]; host?: string; publicHost?: string };
  /** Serve the diagnostics endpoint (`teleport.diag_addr`) on a free loopback port: `TestAuth.diagUrl`. */
  diag?: boolean;
}

export class TestAuth {
  daemon?: Daemon;
  /** More `teleport start` flags. */
  startArgs: string[] = [];
  /** `node` flags and a launcher before the CLI (fuzz.ts SETTLE_NODE_ARGS). */
  nodeArgs: string[] = [];
  /** The address the proxy's listeners bind. */
  proxyHost = '127.0.0.1';
  /** The proxy's public host name, when it has one (`webUrl` names it). */
  publicHost?: string;

  get addr(): string {
    return `127.0.0.1:${this.port}`;
  }

  constructor(
    readonly dir: string,
    readonly configPath: string,
    readonly dataDir: string,
    readonly port: number,
    readonly nodePort?: number,
    readonly proxyPorts?: { ssh: number; web: number; tunnel: number },
    readonly diagPort?: number,
  ) {}

  /** `http://127.0.0.1:<port>` of the diagnostics endpoint (with the `diag` option). */
  get diagUrl(): string {
    return `http://127.0.0.1:${this.diagPort!}`;
  }

  start(env?: NodeJS.ProcessEnv): Daemon {
    const roles = ['auth', ...(this.nodePort ? ['node'] : []), ...(this.proxyPorts ? ['proxy'] : [])].join(',');
    this.daemon = Daemon.spawn(process.execPath, [...this.nodeArgs, cliPath('teleport'), 'start', `--roles=${roles}`, '-c', this.configPath, ...this.startArgs], env);
    return this.daemon;
  }

  async ready(): Promise<void> {
    await this.daemon!.waitForOutput(/teleport is running/);
  }

  /** The proxy's web address: `http://` with --insecure-no-tls, else `https://` (self-signed). */
  webUrl(): string {
    return `${this.startArgs.includes('--insecure-no-tls') ? 'http' : 'https'}://${this.publicHost ?? this.proxyHost}:${this.proxyPorts!.web}`;
  }

  /** The cluster's CA pin, from `tctl status`. */
  async caPin(): Promise<string> {
    return /CA pin\s+(sha256:[0-9a-f]{64})/.exec(await this.tctlOk('status'))![1];
  }

  /** `tctl status` of each CA: its rotation line and its keys' fingerprints, the signing one first. */
  async caStatus(): Promise<Record<'user' | 'host', { state: string; keys: string[] }>> {
    const lines = (await this.tctlOk('status')).split('\n');
    const section = (name: string) => {
      const at = lines.findIndex((l) => l.startsWith(name));
      const keys: string[] = [];
      for (let i = at + 1; i < lines.length && /^\s+SHA256:/.test(lines[i]); i++) keys.push(/SHA256:\S+/.exec(lines[i])![0]);
      return { state: lines[at].slice(name.length).trim(), keys };
    };
    return { user: section('User CA'), host: section('Host CA') };
  }

  /** The admin identity, as tctl has it. */
  adminIdentity(): Promise<Identity> {
    return this.identity('Admin');
  }

  /** An identity this process keeps (Admin, Auth, and Proxy or Node when it runs them). */
  async identity(role: 'Admin' | 'Auth' | 'Proxy' | 'Node'): Promise<Identity> {
    const proc = await openBackend({ type: 'sqlite', path: path.join(this.dataDir, 'proc', 'sqlite.db') });
    try {
      return await new IdentityStore(proc).load(role);
    } finally {
      await proc.close();
    }
  }

  /** An auth API client with the admin identity. */
  async adminClient(): Promise<AuthClient> {
    const id = await this.adminIdentity();
    return new AuthClient({ servers: [{ host: '127.0.0.1', port: this.port }], credentials: { key: id.tlsKey, cert: id.tlsCert, ca: id.tlsCACerts } });
  }

  /** The audit events the auth server has written. */
  async events(types: string[] = []): Promise<Record<string, any>[]> {
    const client = await this.adminClient();
    try {
      const q = new URLSearchParams([['from', new Date(Date.now() - 86_400_000).toISOString()], ...types.map((t): [string, string] => ['event', t])]);
      return await client.get<Record<string, any>[]>(`/v1/events?${q}`);
    } finally {
      client.close();
    }
  }

  /** The interactive sessions running now (runtime/node/shared.ts), as an admin sees them. */
  async activeSessions(): Promise<ActiveSession[]> {
    const client = await this.adminClient();
    try {
      return await client.get<ActiveSession[]>('/v1/namespaces/default/sessions');
    } finally {
      client.close();
    }
  }

  /** Runs tctl against this auth server. */
  tctl(...args: string[]): Promise<RunResult> {
    return runCli('tctl', ['-c', this.configPath, ...args]);
  }

  /** Runs tctl and fails the test with its output unless it exits 0. */
  async tctlOk(...args: string[]): Promise<string> {
    const r = await this.tctl(...args);
    if (r.code !== 0) throw new Error(`tctl ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  async stop(): Promise<void> {
    await this.daemon?.stop();
  }

  async cleanup(): Promise<void> {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function createAuth(opts: TestAuthOptions = {}): Promise<TestAuth> {
  const dir = tempDir('auth-');
  const dataDir = path.join(dir, 'data');
  const port = await freePort();
  const nodePort = opts.nodePort ?? undefined;
  const proxyHost = opts.proxy?.host ?? '127.0.0.1';
  const proxyPorts = opts.proxy ? { ssh: await freePort(proxyHost), web: await freePort(proxyHost), tunnel: await freePort(proxyHost) } : undefined;
  const diagPort = opts.diag ? await freePort() : undefined;
  const lines = [
    'teleport:',
    `  data_dir: ${dataDir}`,
    '  nodename: test-auth',
    '  log:',
    '    severity: INFO',
    ...(diagPort ? [`  diag_addr: 127.0.0.1:${diagPort}`] : []),
    ...(opts.teleportExtra ?? []).map((l) => `  ${l}`),
    ...(opts.storagePath ? ['  storage:', '    type: dir', `    path: ${opts.storagePath}`] : []),
    'auth_service:',
    '  enabled: yes',
    `  listen_addr: 127.0.0.1:${port}`,
    `  cluster_name: ${opts.clusterName ?? 'example.com'}`,
    ...(opts.caKeyType ? [`  ca_key_type: ${opts.caKeyType}`] : []),
    ...(opts.tokens?.length ? ['  tokens:', ...opts.tokens.map((t) => `    - "${t}"`)] : []),
    ...(opts.authExtra ?? []).map((l) => `  ${l}`),
    'ssh_service:',
    ...(nodePort
      ? [
          '  enabled: yes',
          `  listen_addr: 127.0.0.1:${nodePort}`,
          ...(opts.labels ? ['  labels:', ...Object.entries(opts.labels).map(([k, v]) => `    ${k}: "${v}"`)] : []),
          ...(opts.commands
            ? ['  commands:', ...opts.commands.map((c) => `  - name: ${c.name}\n    command: ${JSON.stringify(c.command)}\n    period: ${c.period}`)]
            : []),
          ...(opts.sshExtra ?? []).map((l) => `  ${l}`),
        ]
      : ['  enabled: no']),
    'proxy_service:',
    ...(proxyPorts
      ? [
          '  enabled: yes',
          `  listen_addr: ${proxyHost}:${proxyPorts.ssh}`,
          `  web_listen_addr: ${proxyHost}:${proxyPorts.web}`,
          `  tunnel_listen_addr: ${proxyHost}:${proxyPorts.tunnel}`,
          ...(opts.proxy?.publicHost ? [`  public_addr: ${opts.proxy.publicHost}:${proxyPorts.web}`] : []),
          ...(opts.proxy?.extra ?? []).map((l) => `  ${l}`),
        ]
      : ['  enabled: no']),
  ];
  const configPath = path.join(dir, 'teleport.yaml');
  fs.writeFileSync(configPath, lines.join('\n') + '\n');
  const auth = new TestAuth(dir, configPath, dataDir, port, nodePort, proxyPorts, diagPort);
  auth.proxyHost = proxyHost;
  if (opts.proxy?.publicHost) auth.publicHost = opts.proxy.publicHost;
  if (opts.proxy?.insecureNoTls) auth.startArgs.push('--insecure-no-tls');
  return auth;
}

/** Creates and starts an auth server, ready to serve. */
export async function startAuth(opts: TestAuthOptions = {}): Promise<TestAuth> {
  return started(await createAuth(opts));
}

/** An auth server with a node in the same process. */
export async function startCluster(opts: TestAuthOptions = {}, env?: NodeJS.ProcessEnv): Promise<TestAuth> {
  return started(await createAuth({ nodePort: await freePort(), ...opts }), env);
}

/** Starts `a` and waits until it serves; when it does not, its process and files are gone before the error goes on. */
async function started(a: TestAuth, env?: NodeJS.ProcessEnv): Promise<TestAuth> {
  a.start(env);
  try {
    await a.ready();
  } catch (err) {
    await a.cleanup();
    throw err;
  }
  return a;
}

export interface TestNodeOptions {
  token: string;
  caPin?: string;
  nodeName?: string;
  labels?: string;
  env?: NodeJS.ProcessEnv;
  /** More `teleport start` flags. */
  extraArgs?: string[];
  /** More YAML lines for `ssh_service`. */
  sshExtra?: string[];
  /** `--auth-server`: the auth server's address by default; a proxy's web address puts the node behind NAT. */
  authServer?: string;
  /** A command that runs the node (e.g. `ip netns exec <ns>`, test/helpers/netns.ts). */
  launcher?: string[];
  /** `node` flags before the CLI (e.g. V8's `--cpu-prof`). */
  nodeArgs?: string[];
}

/** A node in its own process and data dir that joins `auth` with a token. */
export class TestNode {
  daemon?: Daemon;

  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly args: string[],
    private readonly env?: NodeJS.ProcessEnv,
    private readonly launcher: string[] = [],
  ) {}

  static async create(auth: TestAuth, o: TestNodeOptions): Promise<TestNode> {
    const dir = tempDir('node-');
    const port = await freePort();
    const args = [
      cliPath('teleport'), 'start', '--roles=node', `--data-dir=${path.join(dir, 'data')}`, `--auth-server=${o.authServer ?? auth.addr}`,
      `--token=${o.token}`, `--nodename=${o.nodeName ?? 'node-1'}`, '--listen-ip=127.0.0.1',
      ...(o.caPin ? [`--ca-pin=${o.caPin}`] : []), ...(o.labels ? [`--labels=${o.labels}`] : []), ...(o.extraArgs ?? []),
    ];
    const configPath = path.join(dir, 'teleport.yaml');
    const ssh = [`  listen_addr: 127.0.0.1:${port}`, ...(o.sshExtra ?? []).map((l) => `  ${l}`)];
    fs.writeFileSync(configPath, `ssh_service:\n${ssh.join('\n')}\nproxy_service:\n  enabled: no\nauth_service:\n  enabled: no\n`);
    return new TestNode(dir, port, [...(o.nodeArgs ?? []), ...args, '-c', configPath], o.env, o.launcher);
  }

  get dataDir(): string {
    return path.join(this.dir, 'data');
  }

  start(): Daemon {
    const [cmd, ...pre] = [...this.launcher, process.execPath];
    this.daemon = Daemon.spawn(cmd, [...pre, ...this.args], this.env);
    return this.daemon;
  }

  async ready(): Promise<void> {
    await this.daemon!.waitForOutput(/node service is (listening|serving through a reverse tunnel)/);
  }

  async cleanup(): Promise<void> {
    await this.daemon?.stop('SIGKILL');
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The private key of the cluster's real `type` CA, read straight from the auth server's storage: to sign what tctl would never issue. */
export async function clusterCAKey(auth: TestAuth, type: 'user' | 'host', cluster = 'example.com'): Promise<KeyObject> {
  const storage = await openBackend({ type: 'sqlite', path: path.join(auth.dataDir, 'backend', 'sqlite.db') });
  try {
    const ca = JSON.parse((await storage.get(Keys.certAuthority(type, cluster))).value.toString());
    return createPrivateKey(Buffer.from(ca.spec.signing_keys[0], 'base64').toString());
  } finally {
    await storage.close();
  }
}

/**
 * Writes `<dir>/<name>` and `-cert.pub`: a certificate for `user` signed by the cluster's real user CA
 * (read straight from the auth server's storage) that expired an hour ago — one tctl would never issue.
 */
export function writeExpiredUserCert(auth: TestAuth, dir: string, name: string, user: string, logins: string[], cluster = 'example.com'): Promise<string> {
  return writeUserCert(auth, dir, name, user, logins, new Date(Date.now() - 3540_000), cluster);
}

/**
 * Writes `<dir>/<name>` and `-cert.pub`: a one-minute certificate for `user` (role admin) signed by the cluster's
 * real user CA, read straight from the auth server's storage, that expires at `expires` — e.g. in a few seconds,
 * shorter than tctl issues.
 */
export async function writeUserCert(auth: TestAuth, dir: string, name: string, user: string, logins: string[], expires: Date, cluster = 'example.com'): Promise<string> {
  const pair = generateKeyPair('ed25519');
  const blob = signUserCert({
    caPrivateKey: await clusterCAKey(auth, 'user', cluster),
    publicKey: publicKeyBlob(pair.publicKey),
    username: user,
    logins,
    ttlMs: 60_000,
    now: new Date(expires.getTime() - 60_000),
    permit: { pty: true, portForwarding: true, agentForwarding: true, x11Forwarding: false },
    roles: ['admin'],
  });
  const key = path.join(dir, name);
  fs.writeFileSync(key, encodeOpenSSHPrivateKey(pair.privateKey), { mode: 0o600 });
  fs.writeFileSync(key + '-cert.pub', formatAuthorizedKey(blob) + '\n');
  return key;
}
