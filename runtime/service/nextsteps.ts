/**
 * What `teleport start` tells its operator once the services are up: where
 * the cluster is reached and, on a cluster without users, the exact commands
 * that create the first user, log in and connect (with tsh, and with stock
 * OpenSSH through `tsh config`). `gatherNextSteps` collects
 * the facts from the running process, `formatNextSteps` turns them into lines
 * (pure, so tests check the wording). Nothing here is a secret: no tokens,
 * no keys, only names, addresses and commands.
 */
import * as path from 'node:path';
import {
  buildConfig,
  DEFAULT_CONFIG_PATH,
  dialableAddr,
  formatAddr,
  isUnspecifiedHost,
  loadConfigFile,
  type HostPort,
  type TeleportConfig,
} from '../config';
import { Ports } from '../contract/ports';
import { selfSignedCertFile } from '../proxy/web';
import { shellQuote } from '../utils/shell';
import type { TeleportProcess } from './process';
import type { SecondFactor } from '../config/schema';

export interface NextStepsFacts {
  clusterName?: string;
  dataDir: string;
  /** Present when the auth service runs in this process. */
  auth?: {
    addr: HostPort;
    /** How many users the cluster has. */
    userCount: number;
    /** Whether a Teleport user named like the OS user exists. */
    osUserExists: boolean;
    secondFactor: SecondFactor;
  };
  /** Present when the node (SSH) service runs in this process. */
  node?: { name: string; listen: HostPort };
  /** Present when the proxy runs in this process. */
  proxy?: {
    /** `https://localhost:3080` */
    webUrl: string;
    /** What to give `tsh login --proxy=`. */
    tshProxy: string;
    sshPort: number;
    /** The web listener has the self-signed certificate: `tsh login` needs `--insecure`, or to be told to trust this file. */
    selfSigned: boolean;
    certFile?: string;
  };
  /** The OS account running teleport: the login the first user gets. */
  osUser: string;
  /** The global `tctl` flags it needs to find this auth server's admin identity (empty when the defaults do). */
  tctlFlags: string[];
  /** Put before `tctl`/`tsh`: `npx ` when teleport was started from the project with npm. */
  commandPrefix: string;
}

/** A word printed as is: a `<placeholder>` for the reader to fill in. */
interface Raw {
  raw: string;
}
const raw = (text: string): Raw => ({ raw: text });

function command(prefix: string, words: (string | Raw)[]): string {
  return prefix + words.map((w) => (typeof w === 'string' ? shellQuote(w) : w.raw)).join(' ');
}

/** The web address users are told to open: the public address, else the host it listens on (`localhost` for all interfaces). */
function clientHost(listen: HostPort): string {
  if (isUnspecifiedHost(listen.host) || listen.host === '127.0.0.1' || listen.host === '::1') return 'localhost';
  return listen.host;
}

/** Lines to print once the process is up; empty when there is nothing to tell (a node that joined a cluster elsewhere). */
export function formatNextSteps(f: NextStepsFacts): string[] {
  if (!f.auth && !f.proxy) return [];
  const tctl = (...words: (string | Raw)[]) => command(f.commandPrefix, ['tctl', ...f.tctlFlags, ...words]);
  const tsh = (...words: (string | Raw)[]) => command(f.commandPrefix, ['tsh', ...words]);
  const out: string[] = [];

  out.push(`Teleport is up${f.clusterName ? `: cluster ${JSON.stringify(f.clusterName)}` : ''}.`);
  const rows: [string, string][] = [['Data directory', f.dataDir]];
  if (f.auth) rows.push(['Auth service', formatAddr(f.auth.addr)]);
  if (f.node) rows.push(['Node', `${f.node.name} (SSH on ${formatAddr(f.node.listen)})`]);
  if (f.proxy) {
    const cert = f.proxy.selfSigned ? ', self-signed certificate' : '';
    rows.push(['Proxy', `${f.proxy.webUrl} (web${cert}), SSH on port ${f.proxy.sshPort}`]);
  }
  const w = Math.max(...rows.map(([k]) => k.length)) + 1;
  for (const [k, v] of rows) out.push(`  ${(k + ':').padEnd(w)}  ${v}`);
  out.push('');

  // The first user is named after the OS account and may log in as it; otherwise the reader fills in names.
  const known = f.auth !== undefined && (f.auth.userCount === 0 || f.auth.osUserExists);
  const user = known ? shellQuote(f.osUser) : '<user>';
  const loginName = known ? shellQuote(f.osUser) : '<login>';
  const nodeName = f.node ? shellQuote(f.node.name) : '<node>';
  const proxyArg = f.proxy ? shellQuote(`--proxy=${f.proxy.tshProxy}`) : `--proxy=<proxy host>:${Ports.web}`;
  const loginCmd = tsh('login', raw(proxyArg), ...(f.proxy?.selfSigned ? ['--insecure'] : []), raw(`--user=${user}`));
  const sshCmd = tsh('ssh', raw(`${loginName}@${nodeName}`));
  // Stock OpenSSH after `tsh config`: a node is <node>.<cluster>, its port given only when it is not the default.
  const openssh = f.clusterName
    ? [
        `mkdir -p ~/.ssh && ${tsh('config')} >> ~/.ssh/config`,
        command('', [
          'ssh',
          ...(f.node && f.node.listen.port !== Ports.node ? ['-p', String(f.node.listen.port)] : []),
          raw(`${loginName}@${f.node ? shellQuote(`${f.node.name}.${f.clusterName}`) : `<node>.${shellQuote(f.clusterName)}`}`),
        ]),
      ]
    : [];
  const opensshIntro = `add the cluster to ~/.ssh/config once; then ssh, scp and sftp reach its nodes as <node>.${f.clusterName ?? '<cluster>'}, host certificates checked`;

  if (f.auth && f.auth.userCount === 0) {
    const enrol =
      f.auth.secondFactor === 'otp'
        ? 'choose a password and scan the QR code with an authenticator app (one-time passwords are required)'
        : f.auth.secondFactor === 'webauthn'
          ? 'choose a password and register a security key (WebAuthn; security keys are required)'
          : f.auth.secondFactor === 'on' || f.auth.secondFactor === 'optional'
            ? 'choose a password and set up an authenticator app or a security key'
            : 'choose a password';
    out.push('Next steps:');
    out.push('');
    out.push(`  1. Create the first user, allowed to log in as ${JSON.stringify(f.osUser)} (run it as the same OS user, in another terminal):`);
    out.push('');
    out.push(`       ${tctl('users', 'add', f.osUser, f.osUser)}`);
    out.push('');
    out.push(`     It prints a sign-up URL: open it, ${enrol}.`);
    out.push('');
    if (!f.proxy) out.push("  2. Log in through the cluster's proxy (this process runs none: start one with --roles=proxy):");
    else if (!f.proxy.selfSigned) out.push('  2. Log in:');
    else if (!f.proxy.certFile) out.push("  2. Log in (--insecure: the proxy's certificate is self-signed):");
    else {
      out.push("  2. Log in (--insecure: the proxy's certificate is self-signed; to have tsh check it instead, leave out --insecure");
      out.push(`     and put NODE_EXTRA_CA_CERTS=${shellQuote(f.proxy.certFile)} in front of the command):`);
    }
    out.push('');
    out.push(`       ${loginCmd}`);
    out.push('');
    out.push(`  3. List the nodes and connect${f.node ? ' to this one' : ''}:`);
    out.push('');
    out.push(`       ${tsh('ls')}`);
    out.push(`       ${sshCmd}`);
    if (openssh.length > 0) {
      out.push('');
      out.push(`  4. Or use OpenSSH: ${opensshIntro}:`);
      out.push('');
      for (const l of openssh) out.push(`       ${l}`);
    }
  } else {
    out.push('Log in and connect (a user invited with `tctl users add` first signs up at the URL it printed):');
    out.push('');
    out.push(`  ${loginCmd}`);
    out.push(`  ${tsh('ls')}`);
    out.push(`  ${sshCmd}`);
    if (openssh.length > 0) {
      out.push('');
      out.push(`Or with OpenSSH (${opensshIntro}):`);
      out.push('');
      for (const l of openssh) out.push(`  ${l}`);
    }
  }
  return out;
}

/**
 * The global flags `tctl` needs, run from another terminal by the same OS
 * user, to reach this auth server: `-c` for a config file other than
 * /etc/teleport.yaml (TELEPORT_CONFIG may not be set there), then
 * `--data-dir` and `--auth-server` only where what tctl would work out from
 * that differs from what the process really uses.
 */
export function tctlFlagsFor(opts: {
  configPath?: string;
  env: NodeJS.ProcessEnv;
  dataDir: string;
  authAddr: HostPort;
}): string[] {
  const flags: string[] = [];
  const configPath = opts.configPath ? path.resolve(opts.configPath) : undefined;
  if (configPath && configPath !== DEFAULT_CONFIG_PATH) flags.push('-c', configPath);
  const env = { ...opts.env, TELEPORT_CONFIG: undefined };
  const seen = buildConfig(configPath ? loadConfigFile(configPath) : {}, { roles: 'auth' }, env);
  if (path.resolve(seen.dataDir) !== path.resolve(opts.dataDir)) flags.push('--data-dir', path.resolve(opts.dataDir));
  const want = dialableAddr(opts.authAddr);
  const guess = dialableAddr(seen.auth.listenAddr);
  if (guess.host !== want.host || guess.port !== want.port) flags.push(`--auth-server=${formatAddr(want)}`);
  return flags;
}

/** Collects the facts for `formatNextSteps` from the running process. */
export async function gatherNextSteps(
  proc: TeleportProcess,
  config: TeleportConfig,
  opts: { osUser: string; tctlFlags: string[]; commandPrefix: string },
): Promise<NextStepsFacts> {
  const facts: NextStepsFacts = {
    dataDir: config.dataDir,
    osUser: opts.osUser,
    tctlFlags: opts.tctlFlags,
    commandPrefix: opts.commandPrefix,
    ...(proc.clusterName ? { clusterName: proc.clusterName } : {}),
  };
  if (proc.auth) {
    const users = await proc.auth.auth.users.list();
    facts.auth = {
      addr: dialableAddr(proc.auth.address),
      userCount: users.length,
      osUserExists: users.some((u) => u.metadata.name === opts.osUser),
      secondFactor: config.auth.authentication.secondFactor,
    };
  }
  if (proc.node) facts.node = { name: config.nodeName, listen: proc.node.address };
  if (proc.proxy) {
    const web = proc.proxy.web.address;
    const pub = config.proxy.publicAddrs[0];
    const hostPort = pub ? formatAddr(pub) : formatAddr({ host: clientHost(web), port: web.port });
    const plain = config.proxy.insecureNoTls;
    // With ACME the certificate comes from a CA clients trust (the self-signed one only bridges the first minutes).
    const selfSigned = !plain && config.proxy.keyPairs.length === 0 && !config.proxy.acme;
    facts.proxy = {
      webUrl: `${plain ? 'http' : 'https'}://${hostPort}`,
      tshProxy: plain ? `http://${hostPort}` : hostPort,
      sshPort: proc.proxy.ssh.address.port,
      selfSigned,
      ...(selfSigned ? { certFile: selfSignedCertFile(config.dataDir) } : {}),
    };
  }
  return facts;
}
