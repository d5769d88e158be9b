#!/usr/bin/env node
/** `teleport`: the daemon (start, configure, version, status). */
import * as os from 'node:os';
import { Command } from 'commander';
import { buildConfig, DEFAULT_CONFIG_PATH, loadConfigFile, parseDuration, resolveConfigPath, sampleConfig } from '../config';
import { CONF_FILE, JOIN_ROLES, type JoinRole } from '../contract/aws';
import { loadConf } from '../instance/conf';
import { configureFromConf } from '../instance/configure';
import { DEFAULT_INSTANCE_PATHS } from '../instance/generate';
import { BadParameterError } from '../utils/errors';
import { setLogOutput } from '../service/logoutput';
import { formatNextSteps, gatherNextSteps, tctlFlagsFor } from '../service/nextsteps';
import { startProcess } from '../service/process';
import { logger, setLogLevel } from '../utils/logger';
import { VERSION } from '../version';
import { runCli } from './common';
import { startCommand, toStartFlags } from './start-flags';

const program = new Command('teleport').description('Teleport-compatible SSH access daemon: auth, proxy and node services').version(VERSION, '--version');

program.addCommand(
  startCommand().action(async (raw: Record<string, unknown>) => {
    const opts = toStartFlags(raw);
    if (opts.debug) setLogLevel('debug');
    const configPath = resolveConfigPath(opts.config, process.env);
    const load = () => buildConfig(configPath ? loadConfigFile(configPath) : {}, opts, process.env);
    const config = load();
    setLogOutput(config.log.output);
    if (!opts.debug) setLogLevel(config.log.severity);
    // The signal handlers are in place before anything starts: a supervisor may signal as soon as
    // teleport says it is running, and a signal that comes while it starts waits for the start.
    const starting = startProcess(config);
    /** The running services; undefined while starting and between a reload's close and start. */
    let proc: Awaited<typeof starting> | undefined;
    const log = logger('teleport');
    let stopping = false;
    // SIGHUP (systemd's ExecReload): re-read the config; if it is valid, restart the services
    // with it in this process; if not, say why and keep running the old one.
    let reloading: Promise<void> = starting.then(
      (p) => void (proc = p),
      () => undefined, // a failed start is reported below
    );
    const reload = async () => {
      let next;
      try {
        next = load();
        // Reopened even when unchanged, for log rotation.
        setLogOutput(next.log.output);
      } catch (err) {
        log.error('reload refused: the configuration is invalid; still running the previous one', { error: (err as Error).message });
        return;
      }
      log.info('reloading', { config: configPath ?? '(flags only)' });
      const old = proc;
      proc = undefined;
      await old?.close();
      if (stopping) return;
      try {
        proc = await startProcess(next);
        if (!opts.debug) setLogLevel(next.log.severity);
        log.info('reloaded');
      } catch (err) {
        log.error('cannot start with the new configuration', { error: err });
        process.exit(1);
      }
    };
    process.on('SIGHUP', () => {
      reloading = reloading.then(reload).catch((err) => {
        // Stopping the old services failed: their state is unknown, so exit for the supervisor to restart.
        log.error('reload failed', { error: err });
        process.exit(1);
      });
    });
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info('shutting down', { signal });
      reloading
        .then(() => proc?.close())
        .then(
          () => process.exit(0),
          (err) => {
            log.error('shutdown failed', { error: err });
            process.exit(1);
          },
        );
    };
    for (const s of ['SIGTERM', 'SIGINT'] as const) process.on(s, () => stop(s));
    const first = await starting;
    try {
      const facts = await gatherNextSteps(first, config, {
        osUser: os.userInfo().username,
        tctlFlags: first.auth ? tctlFlagsFor({ configPath, env: process.env, dataDir: config.dataDir, authAddr: first.auth.address }) : [],
        // From `npm start` the commands are the project's bins, reached with npx.
        commandPrefix: process.env.npm_lifecycle_event ? 'npx ' : '',
      });
      const lines = formatNextSteps(facts);
      if (lines.length > 0) process.stdout.write('\n' + lines.join('\n') + '\n\n');
    } catch (err) {
      log.warn('cannot work out the next steps to print', { error: err });
    }
  }),
);

program
  .command('configure')
  .description(
    'Prints a sample configuration file (YAML) to standard output; with --from-conf, generates teleport.yaml ' +
      `for an AMI instance from ${CONF_FILE} and the instance metadata (once: an existing file is kept)`,
  )
  .option('--from-conf <file>', `Generate from this KEY=value file (the AMI's ${CONF_FILE})`)
  .option('-o, --output <path>', 'With --from-conf: the file to write, or - to print it', DEFAULT_CONFIG_PATH)
  .option('--data-dir <path>', 'With --from-conf: the data directory the config names', DEFAULT_INSTANCE_PATHS.dataDir)
  .action(async (opts: { fromConf?: string; output: string; dataDir: string }) => {
    if (!opts.fromConf) {
      process.stdout.write(sampleConfig());
      return;
    }
    const result = await configureFromConf({
      confFile: opts.fromConf,
      outputFile: opts.output,
      paths: { dataDir: opts.dataDir },
      // The AWS SDK loads only when it is needed (it is slow to load and warns on old Node versions).
      facts: async () => (await import('../instance/imds')).readInstanceFacts(),
    });
    for (const name of result.ignored) process.stderr.write(`WARNING: ${opts.fromConf}: ${name} is not supported by this image and is ignored\n`);
    if (opts.output === '-') process.stdout.write(result.text!);
    else if (result.generated) process.stderr.write(`wrote ${opts.output} (mode ${result.mode})\n`);
    else {
      process.stderr.write(`${opts.output} exists and was kept (mode ${result.mode}); remove it and run again to regenerate\n`);
      if (result.confMode) process.stderr.write(`WARNING: ${opts.fromConf} now asks for mode ${result.confMode}: remove ${opts.output} and run again to switch\n`);
    }
  });

program
  .command('fetch-join-secrets')
  .description(`Waits for this instance's join token and CA pin in SSM and writes them to the files teleport.yaml names (AMI proxies and nodes)`)
  .option('--from-conf <file>', 'The KEY=value file naming the cluster and region', CONF_FILE)
  .option('--role <role>', 'proxy or node [the conf file\'s TELEPORT_ROLE]')
  .option('--data-dir <path>', 'Where to write token and ca-pin', DEFAULT_INSTANCE_PATHS.dataDir)
  .option('--timeout <duration>', 'Give up after this long (e.g. 5m)', '5m')
  .action(async (opts: { fromConf: string; role?: string; dataDir: string; timeout: string }) => {
    const conf = loadConf(opts.fromConf);
    const role = opts.role ?? conf.role;
    if (!(JOIN_ROLES as readonly string[]).includes(role)) {
      throw new BadParameterError(`join secrets are for ${JOIN_ROLES.join(' and ')} instances, not ${JSON.stringify(role)} (use --role)`);
    }
    const log = logger('join-secrets');
    const { SSMClient } = await import('@aws-sdk/client-ssm');
    const { refreshJoinSecrets } = await import('../instance/join-secrets');
    const ssm = new SSMClient({ region: conf.region, requestHandler: { connectionTimeout: 5_000, requestTimeout: 10_000 } });
    try {
      const r = await refreshJoinSecrets(ssm, conf.clusterName!, role as JoinRole, { dataDir: opts.dataDir }, {
        timeoutMs: parseDuration(opts.timeout),
        onWait: (missing, ms) => log.info('waiting for the control plane to publish the join secrets', { missing, retryInMs: ms }),
      });
      if (r.refreshed) process.stderr.write(`wrote the ${role} join token and CA pin to ${opts.dataDir}\n`);
      else process.stderr.write(`WARNING: keeping the join token and CA pin fetched earlier in ${opts.dataDir}: ${r.reason}\n`);
    } finally {
      ssm.destroy();
    }
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

// A failed command exits at once: a start-up that failed has closed what it opened, and this
// makes sure that nothing missed (a timer, a socket) keeps a failed daemon alive.
void runCli(program).then(() => {
  if (process.exitCode) process.exit();
});
