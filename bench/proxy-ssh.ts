/**
 * Benchmark: reaching a node through the proxy against OpenSSH's ProxyJump
 * through a real sshd jump host to a real sshd target, all on loopback, with
 * the same user certificate on both paths (see jump-rig.ts):
 *   1. throughput of one stream (1 GiB by default) into `wc -c` at the far
 *      end, with the stock OpenSSH client;
 *   2. connection setup, `ssh <host> true`, p50 and p90 over N runs, the two
 *      paths interleaved: once with OpenSSH's default key exchange (sshd
 *      offers sntrup761x25519-sha512, the proxy and node do not) and once
 *      with every hop pinned to curve25519-sha256;
 *   3. keystroke echo latency, p50 and p99, over many PTY shells held open at
 *      once (200 by default) through one proxy (and, as the reference, one
 *      jump sshd), each typing a key at random intervals, with the ssh2 client.
 * Prints a table with ratios (proxy / ProxyJump), then one JSON line with every figure.
 *
 *   npx tsc -p . && node dist/bench/proxy-ssh.js
 *
 * Knobs (environment): BENCH_BYTES (default 1G; e.g. 64M), BENCH_RUNS (30),
 * BENCH_SESSIONS (200), BENCH_REFERENCE_SESSIONS (as BENCH_SESSIONS; 0 skips
 * the sshd side of 3), BENCH_ECHO_SECONDS (30), BENCH_ECHO_INTERVAL_MS (500),
 * BENCH_OPEN_CONCURRENCY (16), BENCH_LOGIN (the OS login at both far ends;
 * default the current user), BENCH_CPU_PROF (a directory: the proxy runs under
 * V8's --cpu-prof and writes its profile there). The login's shell start-up files run in every
 * `ssh true` and every shell on both paths, so a heavy ~/.bashrc (pyenv init,
 * say) dominates the setup figures: pick a login with a stock one. sshd refuses
 * a locked account (`!` in /etc/shadow) since it runs without PAM here.
 */
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import { performance } from 'node:perf_hooks';
import { Daemon } from '../test/helpers/proc';
import { LOGIN as CURRENT_USER } from '../test/helpers/sshd';
import { envBytes, envNumber, fmt, formatTable, quantile, ratio, timeSsh } from './common';
import { EchoLoadResult, runEchoLoad } from './echo';
import { reportGoal } from './goals';
import { PathName, Rig, startRig } from './jump-rig';

const BYTES = envBytes('BENCH_BYTES', 1024 ** 3);
const RUNS = Math.max(1, Math.round(envNumber('BENCH_RUNS', 30)));
const SESSIONS = Math.round(envNumber('BENCH_SESSIONS', 200));
const REF_SESSIONS = Math.round(envNumber('BENCH_REFERENCE_SESSIONS', SESSIONS));
const ECHO_SECONDS = envNumber('BENCH_ECHO_SECONDS', 30);
const ECHO_INTERVAL_MS = envNumber('BENCH_ECHO_INTERVAL_MS', 500);
const OPEN_CONCURRENCY = Math.max(1, Math.round(envNumber('BENCH_OPEN_CONCURRENCY', 16)));
const LOGIN = process.env.BENCH_LOGIN?.trim() || CURRENT_USER;

const PATHS: PathName[] = ['proxy', 'jump'];

interface PathFigures {
  /** The OpenSSH client's end-to-end hop, default configuration: `kex, cipher`. */
  negotiated: string;
  mibps: number;
  setupMs: number[];
  setupSameKexMs: number[];
  echo?: EchoLoadResult;
}

const started = performance.now();
/** Progress on stderr, so that a long run shows where it is; the figures go to stdout. */
function note(what: string): void {
  process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(1)}s] ${what}\n`);
}

/** Long-running children, stopped by Rig.close, or here if the run is interrupted before there is a rig. */
const children: Daemon[] = [];
let rig: Rig | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    const stop = rig ? rig.close() : Promise.resolve();
    void stop.finally(() => {
      for (const d of children) d.child.kill();
      process.exit(130);
    });
  });
}

/** Warms a path up (page cache, the proxy's node list) and reads what the end-to-end hop negotiated. */
async function warmUp(rig: Rig, p: PathName): Promise<string> {
  const v = await timeSsh(['-v', ...rig.sshArgs(p, 'true')]);
  await timeSsh(rig.sshArgs(p, 'true'));
  const kex = /kex: algorithm: (\S+)/.exec(v.stderr)?.[1] ?? '?';
  const cipher = /kex: client->server cipher: (\S+) MAC: (\S+)/.exec(v.stderr);
  return `${kex}, ${cipher ? (cipher[2] === '<implicit>' ? cipher[1] : `${cipher[1]}+${cipher[2]}`) : '?'}`;
}

/** 1. One stream; `wc -c` at the far end also proves that every byte arrived. Includes connection setup, as a user's `ssh host cmd < file` does. */
async function throughput(rig: Rig, p: PathName): Promise<number> {
  const r = await timeSsh(rig.sshArgs(p, 'wc -c'), BYTES);
  if (Number(r.stdout.trim()) !== BYTES) throw new Error(`${p}: the far end counted ${r.stdout.trim()} bytes, not ${BYTES}`);
  return BYTES / 1024 ** 2 / (r.ms / 1000);
}

async function measure(rig: Rig): Promise<Record<PathName, PathFigures>> {
  const f = {} as Record<PathName, PathFigures>;
  for (const p of PATHS) {
    note(`warm-up: ${p}`);
    f[p] = { negotiated: await warmUp(rig, p), mibps: 0, setupMs: [], setupSameKexMs: [] };
  }
  for (const p of PATHS) {
    note(`throughput, ${p}: ${BYTES} bytes`);
    f[p].mibps = await throughput(rig, p);
  }
  note(`connection setup: ${RUNS} runs of each path, default and pinned key exchange`);
  // Interleaved, so that background load hits every variant alike.
  for (let i = 0; i < RUNS; i++) {
    for (const p of PATHS) {
      f[p].setupMs.push((await timeSsh(rig.sshArgs(p, 'true'))).ms);
      f[p].setupSameKexMs.push((await timeSsh(rig.sshArgs(p, 'true', true))).ms);
    }
  }
  const echo = { openConcurrency: OPEN_CONCURRENCY, seconds: ECHO_SECONDS, intervalMs: ECHO_INTERVAL_MS };
  for (const [p, sessions] of [['proxy', SESSIONS], ['jump', REF_SESSIONS]] as const) {
    if (sessions <= 0) continue;
    note(`${sessions} PTY sessions through the ${p === 'proxy' ? 'proxy' : 'jump sshd'}, ${ECHO_SECONDS}s of typing`);
    f[p].echo = await runEchoLoad(() => rig.dial(p), { ...echo, sessions });
  }
  return f;
}

function report(f: Record<PathName, PathFigures>, load: [number, number]): void {
  const p = f.proxy;
  const j = f.jump;
  const q = quantile;
  const row = (label: string, a: number | undefined, b: number | undefined, digits = 1) => [label, fmt(a, digits), fmt(b, digits), ratio(a, b)];
  const echoQ = (x: PathFigures, at: number) => (x.echo ? q(x.echo.samples, at) : undefined);
  const rows = [
    ['measure', 'via proxy', 'via ProxyJump (sshd)', 'ratio proxy/jump'],
    row(`throughput, ${fmt(BYTES / 1024 ** 2, 0)} MiB stream (MiB/s)`, p.mibps, j.mibps),
    row(`ssh true p50 (ms, ${RUNS} runs), default kex`, q(p.setupMs, 0.5), q(j.setupMs, 0.5)),
    row(`ssh true p90 (ms, ${RUNS} runs), default kex`, q(p.setupMs, 0.9), q(j.setupMs, 0.9)),
    row(`ssh true p50 (ms, ${RUNS} runs), curve25519`, q(p.setupSameKexMs, 0.5), q(j.setupSameKexMs, 0.5)),
    row(`ssh true p90 (ms, ${RUNS} runs), curve25519`, q(p.setupSameKexMs, 0.9), q(j.setupSameKexMs, 0.9)),
    ['PTY sessions open at once', `${p.echo?.opened ?? '-'}/${SESSIONS}`, `${j.echo?.opened ?? '-'}/${REF_SESSIONS}`, ''],
    row('time to open them (s)', p.echo && p.echo.openMs / 1000, j.echo && j.echo.openMs / 1000),
    ['keystrokes timed (timeouts)', p.echo ? `${p.echo.samples.length} (${p.echo.timeouts})` : '-', j.echo ? `${j.echo.samples.length} (${j.echo.timeouts})` : '-', ''],
    row('keystroke echo p50 (ms)', echoQ(p, 0.5), echoQ(j, 0.5), 2),
    row('keystroke echo p99 (ms)', echoQ(p, 0.99), echoQ(j, 0.99), 2),
  ];
  const sshVersion = spawnSync('ssh', ['-V'], { encoding: 'utf8' }).stderr.trim();
  console.log('a node through the proxy vs OpenSSH ProxyJump through sshd to sshd, loopback, same user certificate');
  console.log(`node ${process.version}; ${sshVersion}; ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'unknown CPU'}; load average ${load[0].toFixed(2)} before, ${load[1].toFixed(2)} after; login ${LOGIN}`);
  console.log(`1-2: OpenSSH client; end-to-end hop by default: proxy path ${p.negotiated}, ProxyJump path ${j.negotiated}`);
  console.log(`3: ssh2 client (curve25519-sha256 on every hop), ${ECHO_SECONDS}s of typing, a key every ~${ECHO_INTERVAL_MS} ms per session\n`);
  console.log(formatTable(rows));
  // issue 22's data-path goal: 1 GiB through proxy → node at ≥ 0.9× ProxyJump's throughput (same client, default ciphers)
  reportGoal({ id: 'proxy-throughput', value: `${fmt(p.mibps)} MiB/s`, anchor: `ProxyJump ${fmt(j.mibps)} MiB/s`, ratio: p.mibps / j.mibps, met: p.mibps / j.mibps >= 0.9, ...(BYTES !== 1024 ** 3 ? { note: `${fmt(BYTES / 1024 ** 2, 0)} MiB, not 1 GiB` } : {}) });
  for (const n of PATHS) {
    const e = f[n].echo;
    if (e?.firstOpenError) console.log(`${n}: ${e.failedToOpen} sessions failed to open, the first with: ${e.firstOpenError}`);
  }
  const r = (n: number | undefined, d = 1) => (n === undefined || !Number.isFinite(n) ? null : +n.toFixed(d));
  const out = (x: PathFigures) => ({
    negotiated: x.negotiated,
    throughput_mibps: r(x.mibps),
    setup_p50_ms: r(q(x.setupMs, 0.5)),
    setup_p90_ms: r(q(x.setupMs, 0.9)),
    setup_curve25519_p50_ms: r(q(x.setupSameKexMs, 0.5)),
    setup_curve25519_p90_ms: r(q(x.setupSameKexMs, 0.9)),
    ...(x.echo
      ? {
          echo: {
            opened: x.echo.opened,
            failed_to_open: x.echo.failedToOpen,
            open_s: r(x.echo.openMs / 1000, 2),
            samples: x.echo.samples.length,
            timeouts: x.echo.timeouts,
            p50_ms: r(q(x.echo.samples, 0.5), 2),
            p99_ms: r(q(x.echo.samples, 0.99), 2),
          },
        }
      : {}),
  });
  console.log(
    JSON.stringify({
      bench: 'proxy-ssh',
      bytes: BYTES,
      runs: RUNS,
      sessions: SESSIONS,
      reference_sessions: REF_SESSIONS,
      echo_seconds: ECHO_SECONDS,
      echo_interval_ms: ECHO_INTERVAL_MS,
      login: LOGIN,
      cpus: os.cpus().length,
      loadavg_before: r(load[0], 2),
      loadavg_after: r(load[1], 2),
      proxy: out(p),
      jump: out(j),
    }),
  );
}

/**
 * Goal `proxy-setup`: `ssh true` p50 through the proxy against ProxyJump, every hop on both paths pinned to
 * curve25519-sha256 (with OpenSSH's default, sshd negotiates the slower sntrup761x25519 and the ratio flatters the proxy).
 */
function reportSetupGoal(f: Record<PathName, PathFigures>): void {
  const p = quantile(f.proxy.setupSameKexMs, 0.5);
  const j = quantile(f.jump.setupSameKexMs, 0.5);
  const dflt = quantile(f.proxy.setupMs, 0.5) / quantile(f.jump.setupMs, 0.5);
  reportGoal({
    id: 'proxy-setup',
    value: `${fmt(p)} ms`,
    anchor: `ProxyJump ${fmt(j)} ms`,
    ratio: p / j,
    met: p <= j,
    note: `p50 of ${RUNS}, curve25519 on every hop; default kex ${dflt.toFixed(2)}×`,
  });
}

async function main(): Promise<void> {
  const load0 = os.loadavg()[0];
  // BENCH_CPU_PROF=<dir>: the proxy runs under V8's --cpu-prof, its profile written there.
  const prof = process.env.BENCH_CPU_PROF;
  rig = await startRig(LOGIN, (d) => children.push(d), prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []);
  try {
    note('cluster, proxy and both sshd are up');
    const figures = await measure(rig);
    report(figures, [load0, os.loadavg()[0]]);
    reportSetupGoal(figures);
  } finally {
    await rig.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
