#!/usr/bin/env node
/** `teleport`: the daemon (start, configure, version, status). */
import './gcflags'; // first: see gcflags.ts
import * as os from 'node:os';
import { Command } from 'commander';
import { buildConfig, ConfigError, DEFAULT_CONFIG_PATH, loadConfigFile, parseDuration, resolveConfigPath, sampleConfig, type TeleportConfig } from '../config';
import { CONF_FILE, ConfVars, JOIN_ROLES, type JoinRole } from '../contract/aws';
import { loadConf } from '../instance/conf';
import { configureFromConf } from '../instance/configure';
import { DEFAULT_INSTANCE_PATHS } from '../instance/generate';
import { DEFAULT_INSTANCE_DIAG_ADDR } from '../contract/telemetry';
import { BadParameterError } from '../utils/errors';
import { setLogOutput } from '../service/logoutput';
import { formatNextSteps, gatherNextSteps, tctlFlagsFor } from '../service/nextsteps';
import { configProblems, issueAtSetting } from '../service/preflight';
import { announceRunning, drain, startSuccessor } from '../service/handover';
import { startProcess } from '../service/process';
import { requestRenewal } from '../proxy/acme';
import { diagnosticReport } from '../service/report';
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
    /** Opens the log output (a file that cannot be opened is an error at its line). */
    const openLog = (c: TeleportConfig) => {
      try {
        setLogOutput(c.log.output);
      } catch (err) {
        throw new ConfigError([issueAtSetting(c, ['teleport', 'log', 'output'], (err as Error).message)]);
      }
    };
    const config = load();
    openLog(config);
    if (!opts.debug) setLogLevel(config.log.severity);
    // The signal handlers are in place before anything starts: a supervisor may signal as soon as
    // teleport says it is running, and a signal that comes while it starts waits for the start
    // (a start that waits for auth_servers to answer stops waiting: `stopped`).
    const stopped = new AbortController();
    const starting = startProcess(config, { signal: stopped.signal });
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
        // What can be checked while the running services hold their ports (files, conflicts) is, before they stop.
        const problems = configProblems(next);
        if (problems.length > 0) throw new ConfigError(problems);
        // Reopened even when unchanged, for log rotation.
        openLog(next);
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
        proc = await startProcess(next, { signal: stopped.signal });
        if (!opts.debug) setLogLevel(next.log.severity);
        log.info('reloaded');
      } catch (err) {
        if (stopped.signal.aborted) return;
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
      stopped.abort();
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
    /** Stops accepting, waits for the open connections to end, then stops (QUIT, and after a USR2 handover). */
    const finish = async (why: string) => {
      stopping = true;
      stopped.abort();
      await reloading;
      await drain(log);
      log.info('the last connection ended; shutting down', { reason: why });
      await proc?.close();
      process.exit(0);
    };
    const fail = (err: unknown) => {
      log.error('graceful shutdown failed', { error: err });
      process.exit(1);
    };
    process.on('SIGQUIT', () => {
      if (stopping) return;
      log.info('graceful shutdown', { signal: 'SIGQUIT' });
      finish('SIGQUIT').catch(fail);
    });
    let handingOver = false;
    process.on('SIGUSR2', () => {
      if (stopping || handingOver) return;
      if (process.env.INVOCATION_ID) {
        // systemd would take the old process's exit for the service's end and stop the new one with it.
        log.error('USR2 ignored: under systemd a handover would end the service when this process exits; use `systemctl reload` (HUP) or `systemctl restart`');
        return;
      }
      handingOver = true;
      reloading
        .then(() => startSuccessor(log))
        .then(
          (child) => {
            log.info('the new process serves new connections; this one finishes its sessions', { new_pid: child.pid });
            return finish('SIGUSR2');
          },
          (err) => {
            handingOver = false;
            log.error('the new process did not start', { error: (err as Error).message });
          },
        )
        .catch(fail);
    });
    process.on('SIGUSR1', () => {
      diagnosticReport().then(
        (report) => log.info('diagnostic report', { ...report }),
        (err) => log.warn('cannot write the diagnostic report', { error: err }),
      );
    });
    let first;
    try {
      first = await starting;
    } catch (err) {
      if (stopped.signal.aborted) return; // stop() exits
      throw err;
    }
    announceRunning();
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
  .option('--diag-addr <host:port>', 'With --from-conf: the loopback address of the diagnostics endpoint (teleport.diag_addr) the CloudWatch agent scrapes', DEFAULT_INSTANCE_DIAG_ADDR)
  .action(async (opts: { fromConf?: string; output: string; dataDir: string; diagAddr: string }) => {
    if (!opts.fromConf) {
      process.stdout.write(sampleConfig());
      return;
    }
    const result = await configureFromConf({
      confFile: opts.fromConf,
      outputFile: opts.output,
      paths: { dataDir: opts.dataDir },
      diagAddr: opts.diagAddr,
      // The AWS SDK loads only when it is needed (it is slow to load and warns on old Node versions).
      facts: async () => (await import('../instance/imds')).readInstanceFacts(),
    });
    for (const name of result.ignored) process.stderr.write(`WARNING: ${opts.fromConf}: ${name} is not supported by this image and is ignored\n`);
    if (opts.output === '-') process.stdout.write(result.text!);
    else if (result.generated) process.stderr.write(`wrote ${opts.output} (mode ${result.mode})${result.agentConfigFile ? ` and ${result.agentConfigFile}` : ''}\n`);
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
  .command('signal-ready')
  .description(
    "Waits until this instance's role is healthy as its load balancer checks it and every target group of " +
      'TELEPORT_TARGET_GROUP_ARNS reports it healthy, then signals CloudFormation (SignalResource SUCCESS for the ' +
      "stack and resource the conf names, or FAILURE after the timeout): the AMI's health gate for rolling " +
      'updates. Without TELEPORT_CFN_STACK in the conf there is nothing to signal',
  )
  .option('--from-conf <file>', 'The KEY=value file naming the role, region, stack and resource', CONF_FILE)
  .option('--timeout <duration>', 'Signal FAILURE if the role is not healthy (its target groups included) after this long (e.g. 10m)', '10m')
  .option('--data-dir <path>', "Teleport's data dir, where a node keeps the identity it joined with", DEFAULT_INSTANCE_PATHS.dataDir)
  .action(async (opts: { fromConf: string; timeout: string; dataDir: string }) => {
    const timeoutMs = parseDuration(opts.timeout);
    if (timeoutMs < 0) throw new BadParameterError(`--timeout must not be negative, got ${JSON.stringify(opts.timeout)}`);
    const conf = loadConf(opts.fromConf);
    if (!conf.signal) {
      process.stderr.write(`nothing to signal: ${opts.fromConf} sets no ${ConfVars.cfnStack} and ${ConfVars.cfnResource}\n`);
      return;
    }
    const log = logger('signal');
    // The AWS SDK loads only when it is needed (it is slow to load).
    const { cloudFormationClient, loadBalancingClient, signalReady, targetGroupCheck } = await import('../instance/signal');
    const { localTargets, readinessChecks } = await import('../instance/readiness');
    const checks = readinessChecks(conf.role, localTargets(opts.dataDir));
    let last = '';
    const result = await signalReady({
      conf,
      checks,
      timeoutMs,
      instanceId: async () => {
        const facts = await (await import('../instance/imds')).readInstanceFacts();
        if (!facts.instanceId) throw new BadParameterError('the instance metadata service gave no instance-id: it is the unique id of the signal');
        return facts.instanceId;
      },
      cloudFormation: () => cloudFormationClient(conf.region!),
      loadBalancing: () => loadBalancingClient(conf.region!),
      // Logged when what is missing changes, not at every poll.
      onPoll: (unready) => {
        const now = unready.map((u) => `${u.check}: ${u.reason}`).join('; ');
        if (now !== last && unready.length > 0) log.info('waiting for this instance to be healthy', { role: conf.role, unready: unready.map((u) => `${u.check}: ${u.reason}`) });
        last = now;
      },
      retry: { onRetry: (error, attempt, delayMs, operation) => log.warn(`${operation} failed; retrying`, { error, attempt, retryInMs: delayMs }) },
    });
    if (!result.signalled) return; // not reached: the conf has a signal
    const { target, outcome } = result;
    if (outcome.delivered) {
      const held = [...checks.map((c) => c.name), ...conf.signal.targetGroups.map(targetGroupCheck)];
      process.stderr.write(`healthy (${held.join(', ')}): signalled SUCCESS for ${target.resource} in stack ${target.stack} (instance ${target.instanceId})\n`);
    } else {
      process.stderr.write(`healthy; no signal sent: ${outcome.reason}\n`);
    }
  });

program
  .command('acme')
  .description("The proxy's ACME (Let's Encrypt) certificate (proxy_service.acme)")
  .addCommand(
    new Command('renew')
      .description('Asks the running proxy to renew its ACME certificate now (open connections stay), and waits for the new one')
      .option('-c, --config <path>', `the configuration file (default ${DEFAULT_CONFIG_PATH})`)
      .option('--timeout <duration>', 'how long to wait for the new certificate', '5m')
      .action(async (o: { config?: string; timeout: string }) => {
        const configPath = resolveConfigPath(o.config, process.env);
        const config = buildConfig(configPath ? loadConfigFile(configPath) : {}, {}, process.env);
        if (!config.proxy.enabled || !config.proxy.acme) {
          throw new BadParameterError(`proxy_service.acme is not enabled in ${configPath ?? 'the configuration'}: there is no ACME certificate to renew`);
        }
        const cert = await requestRenewal(config.dataDir, parseDuration(o.timeout));
        process.stdout.write(`renewed: serial ${cert.serialNumber}, valid until ${new Date(cert.validTo).toISOString()}\n`);
      }),
  );

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
