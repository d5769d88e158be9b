/**
 * Start-up (issue 22), three goal rows, each with its anchor measured in this run:
 * - `cli-start`: `tsh`/`tctl` commands that answer from the machine alone (`tsh version`, `tsh status` of a
 *   saved login, `tctl --help`, `tctl --version`), runs interleaved, median of each; the row is the slowest
 *   median, against `ssh -V`. `tctl status` and `tsh ls` (which ask the cluster) are printed for information.
 * - `npm-start`: `npm start` on an unchanged checkout (dist/ current, an existing cluster with a user) to the
 *   first login: from spawning `npm start` until `tsh login --insecure` (password and one-time code on stdin),
 *   started as soon as `/webapi/ping` answers, exits 0. Median of BENCH_START_RUNS.
 * - `cdk-synth`: `npx cdk synth` of both stacks (the cluster stack with its three bundled Lambdas, and the
 *   starter), as test/lib/cdk-synth.test.ts runs them, one after the other.
 *
 * Knobs: BENCH_RUNS (CLI runs per command, 10), BENCH_START_RUNS (3), BENCH_SYNTH=0 skips cdk synth.
 */
import { generateKeyPairSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { totp } from '../runtime/auth/totp';
import { saveKeys } from '../runtime/client/keystore';
import { saveProfile } from '../runtime/client/profile';
import { selfSignedCertFile } from '../runtime/proxy/web';
import { formatAuthorizedKey, publicKeyBlob, signUserCert } from '../runtime/sshcert';
import { collect, Daemon, freePort, waitFor } from '../sim/process';
import { cliPath, ROOT, tempDir } from '../test/helpers/proc';
import { webApiRequest } from '../test/helpers/webapi';
import { envNumber, fmt, formatTable, quantile } from './common';
import { reportGoal } from './goals';

const RUNS = envNumber('BENCH_RUNS', 10);
const START_RUNS = envNumber('BENCH_START_RUNS', 3);
const SYNTH = envNumber('BENCH_SYNTH', 1) > 0;
const CLI_GOAL_MS = 150;
const START_GOAL_MS = 3000;
const SYNTH_GOAL_MS = 15_000;

const now = () => Number(process.hrtime.bigint()) / 1e6;

/** GNU time, when installed: the CPU time (user + system) of a command and of the processes it waited for. */
const GNU_TIME = '/usr/bin/time';
let timeFiles = 0;

/**
 * Runs a command to its end: its wall time, its CPU time (NaN without GNU time), and its status and output
 * (to check it did what it should). CPU time moves less than wall time with the machine's load.
 */
async function timed(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string } = {}) {
  const cpuFile = fs.existsSync(GNU_TIME) ? path.join(os.tmpdir(), `bench-start-cpu-${process.pid}-${timeFiles++}`) : undefined;
  const [c, a] = cpuFile ? [GNU_TIME, ['-o', cpuFile, '-f', '%U %S', cmd, ...args]] : [cmd, args];
  const t0 = now();
  const r = await collect(c, a, { ...opts, env: { ...process.env, ...opts.env } });
  const ms = now() - t0;
  let cpuMs = NaN;
  if (cpuFile) {
    const [user, sys] = fs.readFileSync(cpuFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
    fs.rmSync(cpuFile, { force: true });
    cpuMs = (user + sys) * 1000;
  }
  return { ms, cpuMs, ...r };
}

function must(r: { code: number | null; stdout: string; stderr: string }, what: string): void {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${r.stderr}${r.stdout}`);
}

/** A saved tsh login (profile and key with a user certificate), as `tsh login` leaves it. */
function savedLogin(home: string): void {
  const ca = generateKeyPairSync('ed25519');
  const user = generateKeyPairSync('ed25519');
  const cert = signUserCert({
    caPrivateKey: ca.privateKey,
    publicKey: publicKeyBlob(user.publicKey),
    username: 'bench',
    logins: ['bench'],
    permit: { pty: true, portForwarding: true, agentForwarding: false, x11Forwarding: false },
    roles: ['access'],
  });
  saveProfile({ web_proxy_scheme: 'https', web_proxy_addr: 'proxy.example.com:3080', ssh_proxy_addr: 'proxy.example.com:3023', user: 'bench', cluster: 'example.com' }, home);
  saveKeys('proxy.example.com', 'bench', { privateKey: user.privateKey, sshCert: formatAuthorizedKey(cert), tlsCAs: [] }, home);
}

interface Command {
  name: string;
  cmd: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
}

interface Medians {
  wall: number;
  cpu: number;
}

/** Median wall and CPU time of each command, the runs interleaved so that the machine's load weighs on all alike. */
async function medians(commands: Command[], runs: number): Promise<Map<string, Medians>> {
  const times = new Map<string, { wall: number[]; cpu: number[] }>(commands.map((c) => [c.name, { wall: [], cpu: [] }]));
  for (let i = 0; i < runs; i++) {
    for (const c of commands) {
      const r = await timed(c.cmd, c.args, { env: c.env });
      must(r, c.name);
      times.get(c.name)!.wall.push(r.ms);
      times.get(c.name)!.cpu.push(r.cpuMs);
    }
  }
  return new Map([...times].map(([k, v]) => [k, { wall: quantile(v.wall, 0.5), cpu: quantile(v.cpu, 0.5) }]));
}

async function cliStart(dir: string): Promise<{ anchor: Medians; rows: [string, Medians][] }> {
  const home = path.join(dir, 'tsh-home');
  savedLogin(home);
  const env = { TELEPORT_HOME: home };
  const node = process.execPath;
  const commands: Command[] = [
    { name: 'ssh -V', cmd: 'ssh', args: ['-V'] },
    { name: 'tsh version', cmd: node, args: [cliPath('tsh'), 'version'], env },
    { name: 'tsh status', cmd: node, args: [cliPath('tsh'), 'status'], env },
    { name: 'tctl --help', cmd: node, args: [cliPath('tctl'), '--help'], env },
    { name: 'tctl --version', cmd: node, args: [cliPath('tctl'), '--version'], env },
    { name: 'node -e 0 (for reference)', cmd: node, args: ['-e', '0'] },
  ];
  const m = await medians(commands, RUNS);
  const anchor = m.get('ssh -V')!;
  return { anchor, rows: [...m].filter(([k]) => k !== 'ssh -V') };
}

/** A local cluster as `npm start` runs it, with its own config (TELEPORT_CONFIG), data dir and ports. */
class NpmStartCluster {
  readonly dataDir: string;
  readonly config: string;
  readonly home: string;
  webPort = 0;
  private secret = '';
  private lastStep = 0;
  readonly password = 'a long benchmark password';

  constructor(readonly dir: string) {
    this.dataDir = path.join(dir, 'data');
    this.config = path.join(dir, 'teleport.yaml');
    this.home = path.join(dir, 'home');
  }

  async writeConfig(): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true });
    const [auth, node, ssh, web, tunnel] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    this.webPort = web;
    fs.writeFileSync(
      this.config,
      [
        'teleport:',
        `  data_dir: ${this.dataDir}`,
        '  nodename: bench-start',
        'auth_service:',
        '  enabled: yes',
        `  listen_addr: 127.0.0.1:${auth}`,
        '  cluster_name: bench-start',
        'ssh_service:',
        '  enabled: yes',
        `  listen_addr: 127.0.0.1:${node}`,
        'proxy_service:',
        '  enabled: yes',
        `  listen_addr: 127.0.0.1:${ssh}`,
        `  web_listen_addr: 127.0.0.1:${web}`,
        `  tunnel_listen_addr: 127.0.0.1:${tunnel}`,
        '',
      ].join('\n'),
    );
  }

  get env(): NodeJS.ProcessEnv {
    return { TELEPORT_CONFIG: this.config, TELEPORT_HOME: this.home };
  }

  get base(): string {
    return `https://127.0.0.1:${this.webPort}`;
  }

  /** `npm start`, in its own process group (npm, the shell and teleport are stopped together). */
  start(): Daemon {
    return Daemon.spawn('npm', ['start', '--silent'], this.env, { cwd: ROOT, detached: true });
  }

  async stop(d: Daemon): Promise<void> {
    try {
      process.kill(-d.child.pid!, 'SIGTERM');
    } catch {
      // already gone
    }
    await d.exited;
    // the group's last member (teleport) may outlive npm: wait until the web port is free
    await waitFor('teleport to stop', async () => (await this.ping()) === false, 60_000, 100);
  }

  /** Whether `/webapi/ping` answers (false while nothing listens). */
  async ping(): Promise<boolean> {
    const certFile = selfSignedCertFile(this.dataDir);
    if (!fs.existsSync(certFile)) return false;
    try {
      return (await webApiRequest(this.base, fs.readFileSync(certFile, 'utf8'), 'GET', '/webapi/ping')).status === 200;
    } catch {
      return false;
    }
  }

  /** Whether a one-time code is left for a login now: the server takes one step either side of now, each once. */
  codeReady(): boolean {
    return this.lastStep <= Math.floor(Date.now() / 30_000);
  }

  private code(): string {
    const step = Math.max(Math.floor(Date.now() / 30_000), this.lastStep + 1);
    if (step > Math.floor(Date.now() / 30_000) + 1) throw new Error('no unused one-time code step within the accepted window');
    this.lastStep = step;
    return totp(this.secret, { timeMs: step * 30_000 });
  }

  /** `tctl users add`, then the sign-up through the web API with a password and a one-time code. */
  async addUser(): Promise<void> {
    const add = await collect(process.execPath, [cliPath('tctl'), '--config', this.config, 'users', 'add', 'bench', os.userInfo().username], { env: { ...process.env, ...this.env } });
    must(add, 'tctl users add');
    const token = /\/web\/newuser\/([0-9a-f]{32})/.exec(add.stdout)?.[1];
    if (!token) throw new Error(`no sign-up token in: ${add.stdout}`);
    const ca = fs.readFileSync(selfSignedCertFile(this.dataDir), 'utf8');
    const info = await webApiRequest(this.base, ca, 'GET', `/webapi/signuptokens/${token}`);
    this.secret = info.json?.otp_secret;
    if (!this.secret) throw new Error(`sign-up page: ${info.status} ${info.text}`);
    const done = await webApiRequest(this.base, ca, 'POST', `/webapi/signuptokens/${token}`, { body: { password: this.password, otp_token: this.code() } });
    if (done.status !== 200) throw new Error(`sign-up: ${done.status} ${done.text}`);
  }

  /** `tsh login` as a person types it: the password and the one-time code. */
  login() {
    return timed(process.execPath, [cliPath('tsh'), 'login', `--proxy=127.0.0.1:${this.webPort}`, '--insecure', '--user=bench'], {
      env: this.env,
      input: `${this.password}\n${this.code()}\n`,
    });
  }
}

async function npmStart(dir: string): Promise<{ runs: { ping: number; login: number }[]; networked: Map<string, Medians> }> {
  const c = new NpmStartCluster(dir);
  await c.writeConfig();
  // The cluster and its user, made once (the README's first start); the timed runs restart it.
  const first = c.start();
  try {
    await waitFor('the first npm start to answer /webapi/ping', () => c.ping(), 600_000, 100);
    await c.addUser();
  } finally {
    await c.stop(first);
  }
  const runs: { ping: number; login: number }[] = [];
  let networked = new Map<string, Medians>();
  for (let i = 0; i < START_RUNS; i++) {
    // Outside the timed part: a one-time code step this run's login can use.
    await waitFor('an unused one-time code step', () => c.codeReady(), 60_000, 200);
    const t0 = now();
    const d = c.start();
    try {
      await waitFor('npm start to answer /webapi/ping', () => c.ping(), 120_000, 20);
      const ping = now() - t0;
      const login = await c.login();
      if (login.code !== 0) process.stderr.write(`--- teleport output ---\n${d.stdout}${d.stderr}\n`);
      must(login, 'tsh login');
      runs.push({ ping, login: now() - t0 });
      if (i === START_RUNS - 1) {
        // For information: commands that ask the cluster, against the running one.
        networked = await medians(
          [
            { name: 'tctl status (asks auth)', cmd: process.execPath, args: [cliPath('tctl'), '--config', c.config, 'status'], env: c.env },
            { name: 'tsh ls (asks the cluster through the proxy)', cmd: process.execPath, args: [cliPath('tsh'), 'ls'], env: c.env },
          ],
          Math.min(RUNS, 5),
        );
      }
    } finally {
      await c.stop(d);
    }
  }
  return { runs, networked };
}

/** `npx cdk synth` of both stacks, one after the other, as test/lib/cdk-synth.test.ts runs them. */
async function cdkSynth(dir: string): Promise<{ cluster: Medians; starter: Medians }> {
  const common = ['cdk', 'synth', '--quiet', '--no-notices', '--no-version-reporting'];
  const cluster = await timed('npx', [
    ...common, '--output', path.join(dir, 'cdk.out-cluster'),
    '-c', 'clusterName=benchsynth', '-c', 'domainName=teleport.example.com',
    '-c', 'hostedZoneId=Z0123456789ABCDEFGHIJ', '-c', 'hostedZoneName=example.com',
    '-c', 'certificateArn=arn:aws:acm:eu-west-1:123456789012:certificate/0f2e5a1c-7d3b-4c1e-9a8b-123456789abc',
  ], { cwd: ROOT });
  must(cluster, 'cdk synth (cluster)');
  const starter = await timed('npx', [
    ...common, '--output', path.join(dir, 'cdk.out-starter'),
    '-c', 'stack=starter', '-c', 'clusterName=benchstarter', '-c', 'storage=dynamodb',
    '-c', 'vpcId=vpc-0123456789abcdef0', '-c', 'availabilityZones=eu-west-1a,eu-west-1b',
    '-c', 'publicSubnetIds=subnet-0000000000000000a,subnet-0000000000000000b',
  ], { cwd: ROOT });
  must(starter, 'cdk synth (starter)');
  return { cluster: { wall: cluster.ms, cpu: cluster.cpuMs }, starter: { wall: starter.ms, cpu: starter.cpuMs } };
}

async function main(): Promise<void> {
  const dir = tempDir('bench-start-');
  try {
    process.stdout.write(`load average at start: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (${os.cpus().length} CPUs)\n`);
    const cli = await cliStart(dir);
    const slowest = cli.rows.filter(([k]) => !k.startsWith('node ')).reduce((a, b) => (b[1].wall > a[1].wall ? b : a));
    const start = await npmStart(path.join(dir, 'npm-start'));
    const synth = SYNTH ? await cdkSynth(dir) : undefined;

    const table = [['what', 'median wall ms', 'median CPU ms']];
    const row = (k: string, m: Medians) => table.push([k, fmt(m.wall), fmt(m.cpu, 0)]);
    row('ssh -V (anchor)', cli.anchor);
    for (const [k, v] of cli.rows) row(k, v);
    for (const [k, v] of start.networked) row(k, v);
    const pingMs = quantile(start.runs.map((r) => r.ping), 0.5);
    const loginMs = quantile(start.runs.map((r) => r.login), 0.5);
    table.push(['npm start → /webapi/ping', fmt(pingMs), '-']);
    table.push(['npm start → first tsh login done', fmt(loginMs), '-']);
    if (synth) {
      row('cdk synth, cluster stack', synth.cluster);
      row('cdk synth, starter stack', synth.starter);
    }
    process.stdout.write(formatTable(table) + '\n');
    process.stdout.write(`load average at end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);

    const load = `load ${os.loadavg()[0].toFixed(1)}`;
    reportGoal({
      id: 'cli-start',
      value: `${fmt(slowest[1].wall, 0)} ms (${slowest[0]}; CPU ${fmt(slowest[1].cpu, 0)} ms)`,
      anchor: `ssh -V ${fmt(cli.anchor.wall, 0)} ms`,
      ratio: slowest[1].wall / cli.anchor.wall,
      met: slowest[1].wall <= CLI_GOAL_MS,
      note: load,
    });
    reportGoal({
      id: 'npm-start',
      value: `${fmt(loginMs / 1000, 2)} s`,
      anchor: '-',
      ratio: loginMs / START_GOAL_MS,
      met: loginMs <= START_GOAL_MS,
      note: load,
    });
    if (synth) {
      const total = synth.cluster.wall + synth.starter.wall;
      const cpu = synth.cluster.cpu + synth.starter.cpu;
      reportGoal({ id: 'cdk-synth', value: `${fmt(total / 1000, 1)} s (CPU ${fmt(cpu / 1000, 1)} s)`, anchor: '-', ratio: total / SYNTH_GOAL_MS, met: total <= SYNTH_GOAL_MS, note: load });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
