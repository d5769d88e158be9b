/**
 * Two ways to a shell on loopback, for benchmarks that compare them: a
 * cluster node reached through the proxy, and an sshd target reached through
 * an sshd jump host (OpenSSH's ProxyJump). The cluster (auth + node) and the
 * proxy run as two `teleport start` processes, as they would on separate
 * hosts; both sshd trust the cluster's user CA and present host certificates
 * from its host CA, so one user certificate and one known_hosts line serve both.
 *
 * Each path comes as OpenSSH client arguments (through an ssh_config written
 * here: ProxyCommand `ssh ... -s proxy:%h:%p@<cluster>` for the proxy, `-J jump`
 * for sshd) and as an ssh2 dialer (dialNode as tsh does; a direct-tcpip
 * channel on the jump sshd, which is what ProxyJump does).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, ConnectConfig } from 'ssh2';
import { checkNodeHostKey, dialNode } from '../runtime/client/dial';
import { CLIENT_HOST_KEY_ALGORITHMS, clientCertIdentity, loadPrivateKey, parseAuthorizedKey } from '../runtime/sshcert';
import { startCluster, TestAuth } from '../test/helpers/cluster';
import { SshUser } from '../test/helpers/openssh';
import { cliPath, Daemon, freePort, tempDir } from '../test/helpers/proc';
import { startSshd, Sshd } from '../test/helpers/sshd';
import type { Dialed } from './echo';

export const CLUSTER = 'example.com';
/** The node's name (startCluster's nodename). */
export const NODE = 'test-auth';
export const PROXY_NAME = 'bench-proxy';
/** The join token startProxy uses: the cluster must list `proxy:<it>` in its tokens. */
export const PROXY_TOKEN = 'bench-proxy-join-token';
/** sshd limits raised so that the reference turns no connection away; no banners in the shells. */
/** The same startups limits on the node and the proxy as on the reference sshd (SSHD_EXTRA). */
export const STARTUPS = ['max_startups: 1000:30:1000', 'per_source_max_startups: 1000:30:1000'];
export const SSHD_EXTRA = ['MaxStartups 1000:30:1000', 'MaxSessions 1000', 'PrintMotd no', 'PrintLastLog no'];

export type PathName = 'proxy' | 'jump';

export interface Rig {
  login: string;
  /** OpenSSH client arguments that run `cmd` at the far end of a path; `sameKex` pins every hop to curve25519-sha256. */
  sshArgs(path: PathName, cmd: string, sameKex?: boolean): string[];
  /** An ssh2 client logged in at the far end of a path. */
  dial(path: PathName): Promise<Dialed>;
  close(): Promise<void>;
}

/**
 * Starts the cluster, the proxy and both sshd; `onChild` learns each long-running process (to stop it on an interrupt);
 * `proxyNodeArgs` are Node.js flags for the proxy's process (`--cpu-prof`, say).
 */
export async function startRig(login: string, onChild: (d: Daemon) => void = () => undefined, proxyNodeArgs: string[] = []): Promise<Rig> {
  const work = tempDir('bench-rig-');
  const cluster = await startCluster({ tokens: [`proxy:${PROXY_TOKEN}`], sshExtra: STARTUPS });
  onChild(cluster.daemon!);
  let proxy: BenchProxy | undefined;
  const sshds: Sshd[] = [];
  const close = async () => {
    await proxy?.daemon.stop();
    for (const d of sshds) await d.close();
    await cluster.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  };
  try {
    await cluster.tctlOk('users', 'add', 'bench', login);
    const user = await SshUser.create(cluster, work, 'bench', login);
    const userCA = (await cluster.tctlOk('auth', 'export', '--type=user')).replace(/^cert-authority /, '');
    for (const name of ['jump', 'target']) {
      const key = path.join(work, `${name}-host`);
      await cluster.tctlOk('auth', 'sign', '--host', `${name}.${CLUSTER}`, '--format', 'openssh', '-o', key);
      sshds.push(await startSshd({ trustedUserCAKeys: userCA, hostKey: key, hostCert: key + '-cert.pub', extraConfig: SSHD_EXTRA }));
      onChild(sshds[sshds.length - 1].daemon);
    }
    const [jump, target] = sshds;
    proxy = await startProxy(cluster, work, { insecureNoTls: true, extra: STARTUPS, nodeArgs: proxyNodeArgs });
    onChild(proxy.daemon);
    const ports = { proxy: proxy.ports.ssh, node: cluster.nodePort!, jump: jump.port, target: target.port };
    const configs = { default: path.join(work, 'ssh_config'), sameKex: path.join(work, 'ssh_config_curve25519') };
    writeSshConfig(configs.default, user, login, ports, []);
    writeSshConfig(configs.sameKex, user, login, ports, ['    KexAlgorithms curve25519-sha256']);

    const privateKey = loadPrivateKey(fs.readFileSync(user.key, 'utf8'));
    const certLine = fs.readFileSync(`${user.key}-cert.pub`, 'utf8').trim();
    const auth: Auth = { login, agent: clientCertIdentity(privateKey, certLine), hostCAs: hostCAsFrom(user.knownHosts) };
    const proxyAddr = `127.0.0.1:${proxy.ports.ssh}`;
    return {
      login,
      sshArgs: (p, cmd, sameKex = false) => {
        const cfg = sameKex ? configs.sameKex : configs.default;
        return p === 'proxy' ? ['-F', cfg, NODE, cmd] : ['-F', cfg, '-J', 'jump', 'target', cmd];
      },
      dial: async (p) => {
        if (p === 'jump') return dialJump(jump.port, target.port, auth);
        const c = await dialNode({ proxyAddr, cluster: CLUSTER, hostCAs: auth.hostCAs, privateKey, certLine, login, host: NODE, port: 0, readyTimeoutMs: 60_000 });
        return { client: c.node, close: c.close };
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

export interface BenchProxy {
  daemon: Daemon;
  ports: { ssh: number; web: number; tunnel: number };
}

/**
 * A `teleport start --roles=proxy` process (named PROXY_NAME) that joined the cluster with PROXY_TOKEN;
 * `insecureNoTls` serves plain HTTP on the web port (else a self-signed certificate), `extra` adds `proxy_service` lines,
 * `nodeArgs` are Node.js flags for the process (`--cpu-prof`, say).
 */
export async function startProxy(cluster: TestAuth, dir: string, o: { insecureNoTls?: boolean; extra?: string[]; nodeArgs?: string[] } = {}): Promise<BenchProxy> {
  const ports = { ssh: await freePort(), web: await freePort(), tunnel: await freePort() };
  const config = path.join(dir, 'proxy.yaml');
  fs.writeFileSync(
    config,
    [
      'ssh_service:',
      '  enabled: no',
      'auth_service:',
      '  enabled: no',
      'proxy_service:',
      '  enabled: yes',
      `  listen_addr: 127.0.0.1:${ports.ssh}`,
      `  web_listen_addr: 127.0.0.1:${ports.web}`,
      `  tunnel_listen_addr: 127.0.0.1:${ports.tunnel}`,
      ...(o.extra ?? []).map((l) => `  ${l}`),
      '',
    ].join('\n'),
  );
  const daemon = Daemon.spawn(process.execPath, [
    ...(o.nodeArgs ?? []),
    cliPath('teleport'), 'start', '--roles=proxy', ...(o.insecureNoTls ? ['--insecure-no-tls'] : []), '-c', config, `--data-dir=${path.join(dir, 'proxy-data')}`,
    `--auth-server=${cluster.addr}`, `--token=${PROXY_TOKEN}`, `--ca-pin=${await cluster.caPin()}`, `--nodename=${PROXY_NAME}`,
  ]);
  try {
    await daemon.waitForOutput(/teleport is running/);
  } catch (err) {
    await daemon.stop('SIGKILL');
    throw err;
  }
  return { daemon, ports };
}

/** The ssh_config `Host *` block of the benches: the cluster user's key and certificate, strict host checks, no prompts. */
export function userBlock(user: SshUser, login: string): string[] {
  return [
    'Host *',
    `    User ${login}`,
    `    IdentityFile ${user.key}`,
    `    CertificateFile ${user.key}-cert.pub`,
    '    IdentitiesOnly yes',
    '    BatchMode yes',
    `    UserKnownHostsFile ${user.knownHosts}`,
    '    StrictHostKeyChecking yes',
    '    ConnectTimeout 30',
    '    LogLevel ERROR',
  ];
}

/** `ssh -F file test-auth` goes through the proxy, `ssh -F file -J jump target` through sshd. */
function writeSshConfig(file: string, user: SshUser, login: string, ports: { proxy: number; node: number; jump: number; target: number }, extra: string[]): void {
  const host = (name: string, port: number) => [`Host ${name}`, '    HostName 127.0.0.1', `    Port ${port}`, `    HostKeyAlias ${name}.${CLUSTER}`];
  fs.writeFileSync(
    file,
    [
      ...host(PROXY_NAME, ports.proxy),
      `Host ${NODE}`,
      `    Port ${ports.node}`,
      `    HostKeyAlias ${NODE}.${CLUSTER}`,
      `    ProxyCommand ssh -F ${file} %r@${PROXY_NAME} -s proxy:%h:%p@${CLUSTER}`,
      ...host('jump', ports.jump),
      ...host('target', ports.target),
      ...userBlock(user, login),
      ...extra,
      '',
    ].join('\n'),
  );
}

/** The host CA key blobs of the `@cert-authority` lines in a known_hosts file. */
export function hostCAsFrom(knownHosts: string): Buffer[] {
  return fs
    .readFileSync(knownHosts, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('@cert-authority '))
    .map((l) => parseAuthorizedKey(l.split(/\s+/).slice(2).join(' ')).blob);
}

export interface Auth {
  login: string;
  agent: ConnectConfig['agent'];
  hostCAs: Buffer[];
}

/** An ssh2 client logged in with the user certificate, the host checked as a cluster host named `name`. */
export function connect(config: ConnectConfig, name: string, auth: Auth): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    client.once('ready', () => {
      client.removeAllListeners('error');
      client.on('error', () => undefined);
      resolve(client);
    });
    client.once('error', reject);
    client.connect({
      ...config,
      username: auth.login,
      agent: auth.agent,
      readyTimeout: 60_000,
      algorithms: { serverHostKey: CLIENT_HOST_KEY_ALGORITHMS },
      hostVerifier: (key: Buffer) => {
        try {
          checkNodeHostKey(key, name, CLUSTER, auth.hostCAs);
          return true;
        } catch {
          return false;
        }
      },
    });
  });
}

/** ProxyJump with ssh2: log in to the jump sshd, open a direct-tcpip channel to the target, log in to the target over it. */
async function dialJump(jumpPort: number, targetPort: number, auth: Auth): Promise<Dialed> {
  const jump = await connect({ host: '127.0.0.1', port: jumpPort }, 'jump', auth);
  try {
    const sock = await new Promise<NonNullable<ConnectConfig['sock']>>((resolve, reject) =>
      jump.forwardOut('127.0.0.1', 0, '127.0.0.1', targetPort, (err, ch) => (err ? reject(err) : resolve(ch))),
    );
    const target = await connect({ sock }, 'target', auth);
    target.on('close', () => jump.end());
    return {
      client: target,
      close: () => {
        target.end();
        jump.end();
      },
    };
  } catch (err) {
    jump.end();
    throw err;
  }
}
