#!/usr/bin/env node
/**
 * `tsh`: the user client. `login` gets certificates from the proxy's web API,
 * `status` shows them, `logout` removes them; `ssh` and `scp` reach nodes
 * through the proxy's SSH port; `ls` and `play` ask the auth server through
 * the proxy; `config` prints the OpenSSH client configuration for the login.
 * State lives in `$TELEPORT_HOME` or `~/.tsh`.
 */
import { Command, Option } from 'commander';
import { parseForwardSpec } from '../client/forward';
import { parseDynamicSpec } from '../client/socks';
import { BadParameterError } from '../utils/errors';
import { lazyModule } from '../utils/lazy';
import { VERSION } from '../version';
import { runCli } from './common';

// What the commands run, loaded when a command runs it (bench/README.md, "Start-up"): `tsh version` and
// `tsh --help` load none of it, `tsh status` no X.509 or SSH transport.
const status = lazyModule(() => require('../client/status') as typeof import('../client/status'));
const loginFlow = lazyModule(() => require('../client/login') as typeof import('../client/login'));
const keystore = lazyModule(() => require('../client/keystore') as typeof import('../client/keystore'));
const cluster = lazyModule(() => require('../client/cluster') as typeof import('../client/cluster'));
const clusters = lazyModule(() => require('../client/clusters') as typeof import('../client/clusters'));
const ls = lazyModule(() => require('../client/ls') as typeof import('../client/ls'));
const player = lazyModule(() => require('../client/play') as typeof import('../client/play'));
const join = lazyModule(() => require('../client/join') as typeof import('../client/join'));
const profiles = lazyModule(() => require('../client/profile') as typeof import('../client/profile'));
const prompt = lazyModule(() => require('../client/prompt') as typeof import('../client/prompt'));
const scp = lazyModule(() => require('../client/scp') as typeof import('../client/scp'));
const ssh = lazyModule(() => require('../client/ssh') as typeof import('../client/ssh'));
const sshconfig = lazyModule(() => require('../client/sshconfig') as typeof import('../client/sshconfig'));

function intArg(name: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v)) throw new BadParameterError(`${name} must be a positive integer, got "${v}"`);
    return Number(v);
  };
}

function collectDynamic(v: string, prev: ReturnType<typeof parseDynamicSpec>[] = []) {
  return [...prev, parseDynamicSpec(v)];
}

function collectForward(v: string, prev: ReturnType<typeof parseForwardSpec>[] = []) {
  return [...prev, parseForwardSpec(v)];
}

const program = new Command('tsh').description('Teleport user client').version(VERSION, '--version');
program
  .option('-d, --debug', 'Verbose errors')
  .option('--proxy <addr>', 'Proxy address: for login, where to log in; for other commands, which saved profile to use (default: the current one)')
  .option('--cluster <name>', 'A leaf (trusted) cluster to work in, reached through the proxy (default: the proxy\'s own cluster; see tsh clusters)')
  .enablePositionalOptions();
const globalProxy = (): string | undefined => program.opts<{ proxy?: string }>().proxy;
/** `--cluster` given after the command, else before it. */
const clusterOf = (o: { cluster?: string }): string | undefined => o.cluster ?? program.opts<{ cluster?: string }>().cluster;
const CLUSTER_HELP = 'A leaf (trusted) cluster to work in, reached through the proxy';

program
  .command('version')
  .description('Prints the version')
  .action(() => {
    process.stdout.write(`Teleport v${VERSION} node ${process.version}\n`);
  });

program
  .command('login')
  .description('Logs in to the cluster through the proxy and saves the certificates')
  .option('--proxy <addr>', 'Proxy address: [http(s)://]host[:webport][,sshport] (defaults 3080, 3023; HTTPS unless http:// is given)')
  .option('--user <name>', 'Teleport user name (local logins; single sign-on learns it from the identity provider)')
  .option('--auth <connector>', 'local (password), or the single sign-on connector to log in with (default: the cluster\'s authentication type)')
  .addOption(new Option('--browser <browser>', 'none: print the single sign-on URL instead of also opening the browser').choices(['default', 'none']))
  .option('--ttl <minutes>', 'Certificate lifetime in minutes', intArg('--ttl'))
  .addOption(new Option('--insecure', 'Do not verify the proxy\'s HTTPS certificate; allow plain HTTP when the proxy does not speak HTTPS'))
  .action(async (o: { proxy?: string; user?: string; auth?: string; browser?: 'default' | 'none'; ttl?: number; insecure?: boolean }) => {
    const proxy = o.proxy ?? globalProxy();
    if (!proxy) throw new BadParameterError('tsh login: --proxy is required (the proxy\'s address, e.g. --proxy=proxy.example.com)');
    const { profile, cert } = await loginFlow.login({
      proxy,
      ...(o.user ? { user: o.user } : {}),
      ...(o.auth ? { auth: o.auth } : {}),
      ...(o.browser ? { browser: o.browser } : {}),
      ttlMinutes: o.ttl,
      insecure: o.insecure,
      prompter: new prompt.Prompter(),
    });
    process.stdout.write(status.formatStatus(profile, cert));
  });

program
  .command('status')
  .description('Shows the current profile and its certificate')
  .action(() => {
    const { profile, key } = cluster.currentLogin({ proxy: globalProxy() });
    process.stdout.write(status.formatStatus(profile, key.cert));
  });

program
  .command('logout')
  .description('Removes the keys and profile of the current login')
  .action(() => {
    const { profile } = cluster.currentLogin({ proxy: globalProxy() });
    const host = profiles.profileProxyHost(profile);
    keystore.removeKeys(host, profile.user);
    profiles.removeProfile(host);
    process.stdout.write(`Logged out ${profile.user} from ${host}.\n`);
  });

program
  .command('ssh')
  .description('Runs a command or a shell on a node, through the proxy')
  .argument('<destination>', '[user@]host')
  .argument('[command...]', 'Command to run (a shell when none)')
  .option('-p, --port <port>', 'Node SSH port (default: whichever the node listens on)', intArg('--port'))
  .option('-l, --login <login>', 'Remote login')
  .option('-t, --tty', 'Allocate a terminal even when stdin is not one')
  .option('-A, --forward-agent', 'Forward an SSH agent holding the tsh key and certificate to the node')
  .option('-L, --local <spec>', 'Forward a local port: [bind_address:]port:host:hostport (repeatable)', collectForward)
  .option('-R, --remote <spec>', 'Forward a node port back here: [bind_address:]port:host:hostport (repeatable)', collectForward)
  .option('-D, --dynamic <spec>', 'SOCKS4/5 proxy on a local port whose connections leave from the node: [bind_address:]port (repeatable)', collectDynamic)
  .option('-N, --no-remote-command', 'Run no command: only forward ports, until interrupted')
  .option('--cluster <name>', CLUSTER_HELP)
  .passThroughOptions()
  .action(async (dest: string, command: string[], o: SshFlags) => {
    process.exitCode = await ssh.sshCommand({
      target: dest,
      command,
      login: o.login,
      port: o.port,
      forcePty: o.tty,
      forwardAgent: o.forwardAgent,
      localForwards: o.local,
      remoteForwards: o.remote,
      dynamicForwards: o.dynamic,
      noCommand: o.remoteCommand === false,
      proxy: globalProxy(),
      cluster: clusterOf(o),
    });
  });

program
  .command('ls')
  .description('Lists the nodes you may reach, optionally those with the given labels')
  .argument('[labels...]', 'label=value[,label=value] to match')
  .option('-v, --verbose', 'Also show node IDs')
  .option('--cluster <name>', CLUSTER_HELP)
  .action(async (labels: string[], o: { verbose?: boolean; cluster?: string }) => {
    const nodes = await ls.listNodes(cluster.currentLogin({ proxy: globalProxy(), cluster: clusterOf(o) }), ls.parseLabelSelector(labels));
    process.stdout.write(ls.formatNodes(nodes, !!o.verbose));
  });

program
  .command('config')
  .description('Prints an OpenSSH client configuration for the current login: add it to ~/.ssh/config to reach nodes as <login>@<node>.<cluster>')
  .action(() => {
    process.stdout.write(sshconfig.formatSshConfig(sshconfig.sshConfigFacts(cluster.currentLogin({ proxy: globalProxy() }))));
  });

program
  .command('clusters')
  .description('Lists the clusters you can reach through the proxy')
  .action(async () => {
    process.stdout.write(clusters.formatClusters(await clusters.listClusters(cluster.currentLogin({ proxy: globalProxy() }))));
  });

program
  .command('scp')
  .description('Copies files to or from a node, through the proxy: tsh scp [-r] [-P port] source... [user@]host:dest')
  .argument('<paths...>', 'Sources, then the destination; the remote side is [user@]host:path')
  .option('-r, --recursive', 'Copy directories recursively')
  .option('-P, --port <port>', 'Node SSH port', intArg('--port'))
  .option('-A, --forward-agent', 'Forward the agent to the proxy (a recording proxy, session_recording: proxy, needs it)')
  .option('--cluster <name>', CLUSTER_HELP)
  .action(async (paths: string[], o: { recursive?: boolean; port?: number; cluster?: string; forwardAgent?: boolean }) => {
    if (paths.length < 2) throw new BadParameterError('tsh scp: give at least one source and a destination');
    await scp.scpCommand({ sources: paths.slice(0, -1), destination: paths[paths.length - 1], recursive: o.recursive, port: o.port, proxy: globalProxy(), cluster: clusterOf(o), forwardAgent: o.forwardAgent });
  });

program
  .command('join')
  .description('Joins an interactive session running on a node (its ID is $TELEPORT_SESSION inside it)')
  .argument('<session-id>', 'The session ID')
  .option('--cluster <name>', CLUSTER_HELP)
  .action(async (sid: string, o: { cluster?: string }) => {
    process.exitCode = await join.joinSession({ sid, proxy: globalProxy(), cluster: clusterOf(o) });
  });

program
  .command('play')
  .description('Plays back a recorded session')
  .argument('<session-id>', 'The session ID (TELEPORT_SESSION inside a session, sid in the audit log)')
  .option('--speed <n>', 'Playback speed when writing to a terminal', (v: string) => {
    const n = Number(v);
    if (!(n > 0) || !Number.isFinite(n)) throw new BadParameterError(`--speed must be a positive number, got "${v}"`);
    return n;
  })
  .action(async (sid: string, o: { speed?: number }) => {
    await player.play(cluster.currentLogin({ proxy: globalProxy() }), sid, { out: process.stdout, speed: o.speed });
  });

interface SshFlags {
  cluster?: string;
  port?: number;
  login?: string;
  tty?: boolean;
  forwardAgent?: boolean;
  local?: ReturnType<typeof parseForwardSpec>[];
  remote?: ReturnType<typeof parseForwardSpec>[];
  dynamic?: ReturnType<typeof parseDynamicSpec>[];
  remoteCommand?: boolean;
}

void runCli(program);
