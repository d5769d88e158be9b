#!/usr/bin/env node
/**
 * `tsh`: the user client. `login` gets certificates from the proxy's web API,
 * `status` shows them, `logout` removes them, `ssh` reaches nodes through
 * the proxy's SSH port. State lives in `$TELEPORT_HOME` or `~/.tsh`.
 */
import { Command, Option } from 'commander';
import { formatStatus } from '../client/status';
import { login } from '../client/login';
import { loadKey, removeKeys } from '../client/keystore';
import { loadCurrentProfile, profileProxyHost, removeProfile } from '../client/profile';
import { Prompter } from '../client/prompt';
import { sshCommand } from '../client/ssh';
import { BadParameterError } from '../utils/errors';
import { VERSION } from '../version';
import { runCli } from './common';

function intArg(name: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v)) throw new BadParameterError(`${name} must be a positive integer, got "${v}"`);
    return Number(v);
  };
}

const program = new Command('tsh').description('Teleport user client').version(VERSION, '--version');
program.option('-d, --debug', 'Verbose errors').enablePositionalOptions();

program
  .command('version')
  .description('Prints the version')
  .action(() => {
    process.stdout.write(`Teleport v${VERSION} node ${process.version}\n`);
  });

program
  .command('login')
  .description('Logs in to the cluster through the proxy and saves the certificates')
  .requiredOption('--proxy <addr>', 'Proxy address: [http(s)://]host[:webport][,sshport] (defaults 3080, 3023; HTTPS unless http:// is given)')
  .requiredOption('--user <name>', 'Teleport user name')
  .option('--ttl <minutes>', 'Certificate lifetime in minutes', intArg('--ttl'))
  .addOption(new Option('--insecure', 'Do not verify the proxy\'s HTTPS certificate; allow plain HTTP when the proxy does not speak HTTPS'))
  .action(async (o: { proxy: string; user: string; ttl?: number; insecure?: boolean }) => {
    const { profile, cert } = await login({ proxy: o.proxy, user: o.user, ttlMinutes: o.ttl, insecure: o.insecure, prompter: new Prompter() });
    process.stdout.write(formatStatus(profile, cert));
  });

program
  .command('status')
  .description('Shows the current profile and its certificate')
  .action(() => {
    const profile = loadCurrentProfile();
    const key = loadKey(profileProxyHost(profile), profile.user);
    process.stdout.write(formatStatus(profile, key.cert));
  });

program
  .command('logout')
  .description('Removes the keys and profile of the current login')
  .action(() => {
    const profile = loadCurrentProfile();
    const host = profileProxyHost(profile);
    removeKeys(host, profile.user);
    removeProfile(host);
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
  .passThroughOptions()
  .action(async (dest: string, command: string[], o: { port?: number; login?: string; tty?: boolean }) => {
    process.exitCode = await sshCommand({ target: dest, command, login: o.login, port: o.port, forcePty: o.tty });
  });

void runCli(program);
