/**
 * Benchmark: keystroke echo through the browser terminal path (WebSocket →
 * proxy → node), beside `tsh ssh` (proxy → node) and OpenSSH straight to sshd
 * (the anchor), every client typing a key every 100 ms into its own
 * interactive PTY shell, 50 sessions at once on each path, one path at a time
 * (see steady-echo.ts for the typing and the timing):
 *   - web: `ws` clients authenticated as a browser is: the web session's
 *     cookie, its bearer token as a WebSocket subprotocol, the proxy's Origin;
 *     one web session (a browser's tabs share one) for all terminals;
 *   - tsh: one `tsh ssh -t <login>@<node>` process per session, logged in with
 *     `tsh login`, as a user runs it (its stdin and stdout are pipes; `-t` asks
 *     for the PTY);
 *   - OpenSSH: one `ssh -tt` process per session to a real sshd that trusts the
 *     cluster's user CA, with the same user's certificate.
 * The cluster (auth, node, proxy) is one `teleport start` process, as in the
 * tests. Prints a table (p50, p99, ratios to OpenSSH) and one JSON line.
 *
 *   npm run bench -- web-echo
 *
 * Knobs (environment): BENCH_SESSIONS (50, every path), BENCH_TSH_SESSIONS (as
 * BENCH_SESSIONS; 0 skips tsh), BENCH_ECHO_SECONDS (30), BENCH_ECHO_INTERVAL_MS
 * (100), BENCH_OPEN_CONCURRENCY (8). The login is the current user; its shell
 * start-up files run in every session.
 */
import { ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import { SESSION_COOKIE, TERMINAL_PROTOCOL } from '../runtime/proxy/terminal';
import { startCluster, TestAuth } from '../test/helpers/cluster';
import { SshUser } from '../test/helpers/openssh';
import { cliPath, tempDir } from '../test/helpers/proc';
import { LOGIN, startSshd, Sshd } from '../test/helpers/sshd';
import { TshUser } from '../test/helpers/users';
import { webApiRequest } from '../test/helpers/webapi';
import { envNumber, fmt, formatTable, quantile, ratio } from './common';
import { runSteadyEcho, SteadyEchoResult, TermStream } from './steady-echo';

const SESSIONS = Math.round(envNumber('BENCH_SESSIONS', 50));
const TSH_SESSIONS = Math.round(envNumber('BENCH_TSH_SESSIONS', SESSIONS));
const ECHO_SECONDS = envNumber('BENCH_ECHO_SECONDS', 30);
const INTERVAL_MS = envNumber('BENCH_ECHO_INTERVAL_MS', 100);
const OPEN_CONCURRENCY = Math.max(1, Math.round(envNumber('BENCH_OPEN_CONCURRENCY', 8)));
const SITE = 'example.com';
const NODE = 'test-auth';

type PathName = 'web' | 'tsh' | 'openssh';

const started = performance.now();
/** Progress on stderr; the figures go to stdout. */
function note(what: string): void {
  process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(1)}s] ${what}\n`);
}

/** A browser terminal: the proxy's WebSocket, authenticated as the web UI's page is. */
function webTerminal(o: { base: string; ca: string; token: string; cookie: string; serverId: string }): Promise<TermStream> {
  const params = JSON.stringify({ server_id: o.serverId, login: LOGIN, term: { w: 80, h: 24 } });
  const url = `${o.base.replace(/^https:/, 'wss:')}/webapi/sites/${SITE}/connect?params=${encodeURIComponent(params)}`;
  const ws = new WebSocket(url, [TERMINAL_PROTOCOL, `bearer.${o.token}`], { ca: o.ca, headers: { cookie: o.cookie, origin: o.base } });
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  return new Promise((resolve, reject) => {
    ws.once('unexpected-response', (_req, res) => reject(new Error(`the proxy refused the terminal: HTTP ${res.statusCode}`)));
    ws.once('error', reject);
    ws.once('open', () => {
      ws.on('error', () => undefined);
      resolve({
        write: (data) => ws.send(Buffer.from(data), { binary: true }),
        onData: (cb) => ws.on('message', (data, isBinary) => isBinary && cb(Buffer.from(data as Buffer).toString('latin1'))),
        close: () => {
          ws.close(1000);
          return closed;
        },
      });
    });
  });
}

/** A client process (`tsh ssh -t`, `ssh -tt`) whose pipes carry the remote PTY; closed with Ctrl-D (the shell exits), killed after 10 s. */
function processTerminal(child: ChildProcessWithoutNullStreams): TermStream {
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-2000)));
  child.stdin.on('error', () => undefined);
  child.once('close', (code) => {
    if (code !== 0 && code !== null && stderr) note(`${path.basename(child.spawnfile)} exited ${code}: ${stderr.trim()}`);
  });
  return {
    write: (data) => child.stdin.write(data),
    onData: (cb) => child.stdout.on('data', (d: Buffer) => cb(d.toString('latin1'))),
    close: async () => {
      child.stdin.write('\x04');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

interface Rig {
  open: Record<PathName, () => Promise<TermStream>>;
  close(): Promise<void>;
}

async function startRig(): Promise<Rig> {
  const work = tempDir('bench-web-echo-');
  const c: TestAuth = await startCluster({ proxy: {} });
  let sshd: Sshd | undefined;
  const users: TshUser[] = [];
  const close = async () => {
    await sshd?.close();
    await c.cleanup();
    users.forEach((u) => u.cleanup());
    fs.rmSync(work, { recursive: true, force: true });
  };
  try {
    const base = c.webUrl();
    const ca = fs.readFileSync(path.join(c.dataDir, 'webproxy_cert.pem'), 'utf8');
    // The browser's user: a web session, as the login page makes one.
    const webUser = await TshUser.signUp(c, 'web-bench', [LOGIN]);
    users.push(webUser);
    const login = await webApiRequest(base, ca, 'POST', '/webapi/sessions', { body: { user: webUser.name, pass: webUser.password, second_factor_token: webUser.nextCode() } });
    if (login.status !== 200) throw new Error(`web login: HTTP ${login.status} ${login.text}`);
    const token = login.json.token as string;
    const cookie = ([] as string[]).concat(login.headers['set-cookie'] ?? []).find((h) => h.startsWith(`${SESSION_COOKIE}=`))!.split(';')[0];
    const nodes = await webApiRequest(base, ca, 'GET', `/webapi/sites/${SITE}/nodes`, { token });
    const serverId = (nodes.json.items as { id: string; hostname: string }[]).find((n) => n.hostname === NODE)!.id;
    // The command-line user: `tsh login`.
    const tshUser = await TshUser.signUp(c, 'tsh-bench', [LOGIN]);
    users.push(tshUser);
    await tshUser.login();
    // The anchor: sshd trusting the user CA, a certificate for the same login.
    await c.tctlOk('users', 'add', 'ssh-bench', LOGIN);
    const sshUser = await SshUser.create(c, work, 'ssh-bench', LOGIN);
    const hostKey = path.join(work, 'sshd-host');
    await c.tctlOk('auth', 'sign', '--host', `sshd.${SITE}`, '--format', 'openssh', '-o', hostKey);
    const userCA = (await c.tctlOk('auth', 'export', '--type=user')).replace(/^cert-authority /, '');
    sshd = await startSshd({ trustedUserCAKeys: userCA, hostKey, hostCert: `${hostKey}-cert.pub`, extraConfig: ['MaxStartups 1000:30:1000', 'MaxSessions 1000', 'PrintMotd no', 'PrintLastLog no'] });
    const sshdPort = sshd.port;
    return {
      open: {
        web: () => webTerminal({ base, ca, token, cookie, serverId }),
        tsh: async () =>
          processTerminal(
            spawn(process.execPath, [cliPath('tsh'), 'ssh', '-t', `${LOGIN}@${NODE}`], { env: { ...process.env, HOME: tshUser.home, TELEPORT_HOME: '' }, stdio: 'pipe' }),
          ),
        openssh: async () => processTerminal(spawn('ssh', ['-tt', ...sshUser.options('sshd'), '-p', String(sshdPort), `${LOGIN}@127.0.0.1`], { stdio: 'pipe' })),
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

function report(results: Partial<Record<PathName, SteadyEchoResult>>, load: [number, number]): void {
  const q = (p: PathName, at: number) => (results[p] ? quantile(results[p]!.samples, at) : undefined);
  const col = (label: string, f: (p: PathName, r: SteadyEchoResult) => string) => [label, ...(['web', 'tsh', 'openssh'] as const).map((p) => (results[p] ? f(p, results[p]!) : '-'))];
  const rows = [
    ['measure', 'browser terminal (ws)', 'tsh ssh', 'OpenSSH → sshd'],
    col('sessions open at once', (p, r) => `${r.opened}/${p === 'tsh' ? TSH_SESSIONS : SESSIONS}`),
    col('time to open them (s)', (_p, r) => fmt(r.openMs / 1000)),
    col('keystrokes timed (timeouts)', (_p, r) => `${r.samples.length} (${r.timeouts})`),
    col('echo p50 (ms)', (p) => fmt(q(p, 0.5), 2)),
    col('echo p99 (ms)', (p) => fmt(q(p, 0.99), 2)),
    col('p50 / OpenSSH p50', (p) => ratio(q(p, 0.5), q('openssh', 0.5))),
    col('p99 / OpenSSH p99', (p) => ratio(q(p, 0.99), q('openssh', 0.99))),
  ];
  console.log('keystroke echo: browser terminal path (WebSocket → proxy → node) vs tsh ssh vs OpenSSH to sshd, loopback');
  console.log(`node ${process.version}; ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'unknown CPU'}; load average ${load[0].toFixed(2)} before, ${load[1].toFixed(2)} after; login ${LOGIN}`);
  console.log(`${ECHO_SECONDS}s of typing, a key every ${INTERVAL_MS} ms per session, the paths one after another\n`);
  console.log(formatTable(rows));
  for (const [p, r] of Object.entries(results)) if (r?.firstOpenError) console.log(`${p}: ${r.failedToOpen} sessions failed to open, the first with: ${r.firstOpenError}`);
  const r2 = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? null : +n.toFixed(2));
  const out = Object.fromEntries(
    Object.entries(results).map(([p, r]) => [
      p,
      { opened: r!.opened, failed_to_open: r!.failedToOpen, open_s: r2(r!.openMs / 1000), samples: r!.samples.length, timeouts: r!.timeouts, p50_ms: r2(q(p as PathName, 0.5)), p99_ms: r2(q(p as PathName, 0.99)) },
    ]),
  );
  console.log(
    JSON.stringify({ bench: 'web-echo', sessions: SESSIONS, tsh_sessions: TSH_SESSIONS, echo_seconds: ECHO_SECONDS, interval_ms: INTERVAL_MS, login: LOGIN, cpus: os.cpus().length, loadavg_before: r2(load[0]), loadavg_after: r2(load[1]), ...out }),
  );
}

let rig: Rig | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void (rig ? rig.close() : Promise.resolve()).finally(() => process.exit(130));
  });
}

async function main(): Promise<void> {
  const load0 = os.loadavg()[0];
  rig = await startRig();
  try {
    note('cluster, proxy and sshd are up');
    const results: Partial<Record<PathName, SteadyEchoResult>> = {};
    const common = { openConcurrency: OPEN_CONCURRENCY, seconds: ECHO_SECONDS, intervalMs: INTERVAL_MS };
    for (const [p, sessions] of [['web', SESSIONS], ['tsh', TSH_SESSIONS], ['openssh', SESSIONS]] as const) {
      if (sessions <= 0) continue;
      note(`${p}: opening ${sessions} sessions, then ${ECHO_SECONDS}s of typing`);
      results[p] = await runSteadyEcho(rig.open[p], { ...common, sessions });
    }
    report(results, [load0, os.loadavg()[0]]);
  } finally {
    await rig.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
