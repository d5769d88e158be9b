#!/usr/bin/env node
/** `teleport`: the daemon (start, configure, version, status). */
import * as os from 'node:os';
import { Command } from 'commander';
import { buildConfig, loadConfigFile, resolveConfigPath, sampleConfig, StartFlags } from '../config';
import { formatNextSteps, gatherNextSteps, tctlFlagsFor } from '../service/nextsteps';
import { startProcess } from '../service/process';
import { logger, setLogLevel } from '../utils/logger';
import { VERSION } from '../version';
import { collect, runCli } from './common';

const program = new Command('teleport').description('Teleport-compatible SSH access daemon: auth, proxy and node services').version(VERSION, '--version');

program
  .command('start')
  .description('Starts the Teleport services')
  .option('-d, --debug', 'Enable verbose logging to stderr')
  .option('--insecure-no-tls', 'Disable TLS for the web socket')
  .option('-r, --roles <roles>', 'Comma-separated list of roles to start with [proxy,node,auth]')
  .option('--pid-file <path>', 'Full path to the PID file. By default no PID file will be created')
  .option('--advertise-ip <ip>', 'IP to advertise to clients if running behind NAT')
  .option('-l, --listen-ip <ip>', 'IP address to bind to [0.0.0.0]')
  .option('--auth-server <addr>', 'Address of the auth server [127.0.0.1:3025] (repeatable)', collect)
  .option('--token <token>', 'Invitation token to join a cluster [none]')
  .option('--ca-pin <pin>', 'CA pin to validate the auth server (sha256:<hex>, repeatable)', collect)
  .option('--nodename <name>', 'Name of this node, defaults to hostname')
  .option('-c, --config <path>', 'Path to a configuration file [/etc/teleport.yaml]')
  .option('--labels <labels>', 'List of labels for this node, e.g. env=prod,kernel=[1h:"uname -r"]')
  .option('--insecure', 'Do not verify the proxy or auth server TLS certificates (testing only)')
  .option('--permit-user-env', 'Enables reading of ~/.tsh/environment when creating a session')
  .option('--data-dir <path>', 'Directory for keys and state [/var/lib/teleport, or ~/.local/share/teleport for non-root]')
  .action(async (raw: StartFlags & { config?: string; nodename?: string }) => {
    const { nodename, ...rest } = raw;
    const opts: StartFlags & { config?: string } = { ...rest, ...(nodename !== undefined ? { nodeName: nodename } : {}) };
    if (opts.debug) setLogLevel('debug');
    const configPath = resolveConfigPath(opts.config, process.env);
    const file = configPath ? loadConfigFile(configPath) : {};
    const config = buildConfig(file, opts, process.env);
    if (!opts.debug) setLogLevel(config.log.severity);
    const proc = await startProcess(config);
    const log = logger('teleport');
    try {
      const facts = await gatherNextSteps(proc, config, {
        osUser: os.userInfo().username,
        tctlFlags: proc.auth ? tctlFlagsFor({ configPath, env: process.env, dataDir: config.dataDir, authAddr: proc.auth.address }) : [],
        // From `npm start` the commands are the project's bins, reached with npx.
        commandPrefix: process.env.npm_lifecycle_event ? 'npx ' : '',
      });
      const lines = formatNextSteps(facts);
      if (lines.length > 0) process.stdout.write('\n' + lines.join('\n') + '\n\n');
    } catch (err) {
      log.warn('cannot work out the next steps to print', { error: err });
    }
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info('shutting down', { signal });
      proc.close().then(
        () => process.exit(0),
        (err) => {
          log.error('shutdown failed', { error: err });
          process.exit(1);
        },
      );
    };
    for (const s of ['SIGTERM', 'SIGINT'] as const) process.on(s, () => stop(s));
  });

program
  .command('configure')
  .description('Prints a sample configuration file (YAML) to standard output')
  .action(() => {
    process.stdout.write(sampleConfig());
  });

program
  .command('version')
  .description('Prints the version')
  .action(() => {
    process.stdout.write(`Teleport v${VERSION} node ${process.version}\n`);
  });

program
  .command('status')
  .description('Shows the status of the current Teleport session (only inside a session)')
  .action(() => {
    const sid = process.env.TELEPORT_SESSION;
    if (!sid) throw new Error('not inside a Teleport SSH session (TELEPORT_SESSION is not set)');
    process.stdout.write(`Session ID: ${sid}\n`);
  });

void runCli(program);
