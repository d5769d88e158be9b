/**
 * `npm run deploy:local -- [options] [-c key=value ...]`: synthesizes the CDK app (or takes an
 * assembly), deploys it on this machine (sim/deploy.ts), prints progress per resource, waits until
 * every target is healthy, prints the cluster URL and how to create the first user, and runs until
 * interrupted (Ctrl-C tears it down). Needs root.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, Option } from 'commander';
import { LocalDeployment } from './deploy';
import { runFaults } from './faults';
import { REPO_ROOT } from './instance';
import { DEFAULT_CONTEXT, FAULTS_CONTEXT } from './cli-context';
import { synthesize } from './synth';

function parseContext(values: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf('=');
    if (eq <= 0) throw new Error(`-c ${v}: expected key=value`);
    out[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return out;
}

async function main(argv: string[]): Promise<void> {
  const program = new Command('deploy:local')
    .description('Deploy the synthesized HA stack on this machine, as AWS would run it')
    .option('-c, --context <key=value>', 'CDK context (repeatable), as for cdk synth', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--cdk-out <dir>', 'deploy this cloud assembly instead of synthesizing one')
    .option('--dir <dir>', 'where the deployment keeps its files', path.join(REPO_ROOT, '.deploy-local'))
    .addOption(new Option('--time-scale <n>', 'run template durations (health checks, grace periods, schedules) n times faster').default('1').argParser(Number))
    .option('--exit-when-healthy', 'tear down and exit 0 once every target is healthy (CI, benchmarks)')
    .addOption(new Option('--scenario <name>', 'once healthy, run a scenario, print its verdict, tear down and exit (0 when it held)').choices(['faults']))
    .option('--login <name>', 'the OS login the scenario\'s user gets on the nodes', 'root')
    .parse(argv);
  const opts = program.opts<{ context: string[]; cdkOut?: string; dir: string; timeScale: number; exitWhenHealthy?: boolean; scenario?: 'faults'; login: string }>();
  if (!(opts.timeScale > 0)) throw new Error(`--time-scale must be a positive number, got ${opts.timeScale}`);
  if (process.getuid?.() !== 0) throw new Error('deploy:local needs root: each instance gets its own network and mount namespaces');
  const started = Date.now();
  const t = () => `${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s`;
  const log = (line: string) => console.log(`${t()}  ${line}`);
  fs.rmSync(opts.dir, { recursive: true, force: true });
  fs.mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  let cdkOut = opts.cdkOut;
  if (!cdkOut) {
    const context = { ...DEFAULT_CONTEXT, ...(opts.scenario === 'faults' ? FAULTS_CONTEXT : {}), ...parseContext(opts.context) };
    log(`synthesizing bin/app.ts with ${Object.entries(context).map(([k, v]) => `-c ${k}=${v}`).join(' ')}`);
    cdkOut = await synthesize(path.join(opts.dir, 'cdk.out'), context);
  }
  const deployment = await LocalDeployment.deploy({ cdkOut, dir: path.join(opts.dir, 'deployment'), timeScale: opts.timeScale, log });
  let closing = false;
  const shutdown = async (code: number) => {
    if (closing) return;
    closing = true;
    console.log(`\nIAM audit of every AWS call made (denied calls, then permissions no call used):\n${deployment.audit.report()}`);
    log('tearing down');
    await deployment.close();
    process.exit(code);
  };
  process.on('SIGINT', () => void shutdown(130));
  process.on('SIGTERM', () => void shutdown(143));
  let healthyMs: number;
  try {
    healthyMs = await deployment.waitHealthy((15 * 60_000) / opts.timeScale + 120_000, started);
  } catch (err) {
    console.error(`deploy:local: ${(err as Error).message}`);
    return shutdown(1);
  }
  log(`every target is healthy (${(healthyMs / 1000).toFixed(1)} s after start)`);
  const auth = deployment.asg.groups.find((g) => g.logicalId.startsWith('Auth'))?.live()[0];
  const outputs = deployment.deployment.resolvedOutputs();
  console.log(`
The cluster:           ${outputs.ProxyUrl?.value ?? '(no ProxyUrl output)'}
DNS (Route 53 records, in the client namespace's /etc/hosts): ${Object.entries(deployment.hosts).map(([n, a]) => `${n} -> ${a}`).join(', ')}
A shell on an auth instance (Session Manager's stand-in):
  nsenter -t ${auth?.instance.pid ?? '<pid>'} -m -n bash
Then, as FirstUserCommand says: ${outputs.FirstUserCommand?.value ?? 'tctl users add <username> <logins>'}
Users' commands run "on the internet" with:  ip netns exec ${deployment.network.client(deployment.hosts).namespace} <command>
  (trust the load balancer's certificate with NODE_EXTRA_CA_CERTS=${deployment.publicCaFile})
Ctrl-C tears the deployment down.`);
  if (opts.scenario === 'faults') {
    try {
      const report = await runFaults(deployment, { login: opts.login, dir: opts.dir, log });
      log(`faults scenario held: ${JSON.stringify(report)}`);
    } catch (err) {
      console.error(`deploy:local: the faults scenario failed: ${(err as Error).message}`);
      return shutdown(1);
    }
    return shutdown(0);
  }
  if (opts.exitWhenHealthy) await shutdown(0);
}

main(process.argv).catch((err: Error) => {
  console.error(`deploy:local: ${err.message}`);
  process.exit(1);
});
