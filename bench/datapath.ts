/**
 * Benchmark: where the time of a bulk transfer goes, on the four paths of
 * issue 22's data-path goals, with the stock OpenSSH client:
 *   node      straight to the teleport node;
 *   sshd      straight to an OpenSSH sshd (the anchor of `node`);
 *   proxy     through the teleport proxy to the node (proxy subsystem);
 *   jump      OpenSSH ProxyJump through an sshd jump host to an sshd (the anchor of `proxy`).
 * For each path and each cipher asked for, one stream of BENCH_BYTES into
 * `wc -c` (checked), the wall time, and the CPU time of each process on the
 * way: the client (ssh, and the ProxyCommand's ssh), the teleport process(es)
 * and the sshd (with their per-connection children and the session's
 * command). Prints a table, then one JSON line.
 *
 *   npx tsc -p . && node dist/bench/datapath.js
 *
 * Knobs (environment): BENCH_BYTES (default 1G), BENCH_CIPHERS (comma list;
 * default `default,aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com`:
 * `default` lets the client and server choose), BENCH_PATHS (comma list, default all four),
 * BENCH_RUNS (2: the best run of each is kept, the machine being shared), BENCH_LOGIN.
 * The teleport processes run with bench/process-probe.ts, which counts their
 * garbage collections (the table shows the major ones in each run); with
 * BENCH_CPU_PROF=<dir> they also record a V8 CPU profile, left in <dir> as
 * `<pid>.cpuprofile` when the rig stops.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LOGIN as CURRENT_USER } from '../test/helpers/sshd';
import { envBytes, envNumber, fmt, formatTable, timeSsh } from './common';
import { NODE, startRig, type Rig } from './jump-rig';
import { tempDir, waitFor, type Daemon } from '../test/helpers/proc';

const BYTES = envBytes('BENCH_BYTES', 1024 ** 3);
const RUNS = Math.max(1, Math.round(envNumber('BENCH_RUNS', 2)));
const LOGIN = process.env.BENCH_LOGIN?.trim() || CURRENT_USER;
const CIPHERS = (process.env.BENCH_CIPHERS || 'default,aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com').split(',').map((c) => c.trim()).filter(Boolean);
const ALL_PATHS = ['node', 'sshd', 'proxy', 'jump'] as const;
type Path = (typeof ALL_PATHS)[number];
const PATHS = (process.env.BENCH_PATHS ? process.env.BENCH_PATHS.split(',').map((p) => p.trim()) : [...ALL_PATHS]) as Path[];
for (const p of PATHS) if (!ALL_PATHS.includes(p)) throw new Error(`BENCH_PATHS: unknown path ${p}; there are ${ALL_PATHS.join(', ')}`);

const CLK_TCK = 100;

/** CPU seconds (user + system, with reaped children) of a process from /proc; 0 when it is gone. */
function cpuOf(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields 14-17 (utime stime cutime cstime) are 11-14 after the command
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** The child processes of `pid` (from /proc/<pid>/task/<tid>/children). */
function childrenOf(pid: number | undefined): number[] {
  if (!pid) return [];
  try {
    return fs
      .readdirSync(`/proc/${pid}/task`)
      .flatMap((t) => fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').split(' ').filter(Boolean).map(Number));
  } catch {
    return [];
  }
}

interface Run {
  mibps: number;
  seconds: number;
  negotiated: string;
  /** CPU seconds of each process group during the run. */
  cpu: Record<string, number>;
  /** When it ran (ms since the epoch), to count the garbage collections in it. */
  from: number;
  to: number;
  /** Major (mark-compact) collections in each teleport process during the run. */
  majorGCs?: Record<string, number>;
}

function argsFor(rig: Rig, p: Path, cmd: string, cipher: string): string[] {
  const c = cipher === 'default' ? [] : ['-c', cipher];
  const base = rig.sshArgs(p === 'node' || p === 'proxy' ? 'proxy' : 'jump', cmd);
  const cfg = base.slice(0, 2); // -F file
  switch (p) {
    case 'proxy':
      // the ProxyCommand's ssh (client to proxy) keeps its default cipher: only the end-to-end hop is pinned
      return [...cfg, ...c, NODE, cmd];
    case 'node':
      return [...cfg, ...c, '-o', 'ProxyCommand=none', '-o', 'HostName=127.0.0.1', NODE, cmd];
    case 'sshd':
      return [...cfg, ...c, 'target', cmd];
    case 'jump':
      return [...cfg, ...c, '-J', 'jump', 'target', cmd];
  }
}

async function once(rig: Rig, p: Path, cipher: string, daemons: Record<string, Daemon | undefined>): Promise<Run> {
  const probe = await timeSsh(['-v', ...argsFor(rig, p, 'true', cipher)]);
  // the last one: with -J the jump host's hop is logged first
  const m = [...probe.stderr.matchAll(/kex: client->server cipher: (\S+) MAC: (\S+)/g)].pop();
  const negotiated = m ? (m[2] === '<implicit>' ? m[1] : `${m[1]}+${m[2]}`) : '?';
  const before = Object.fromEntries(Object.entries(daemons).map(([k, d]) => [k, cpuOf(d?.child.pid)]));
  const from = Date.now();
  const self0 = cpuOf(process.pid) - process.cpuUsage().user / 1e6 - process.cpuUsage().system / 1e6;
  const r = await timeSsh(argsFor(rig, p, 'wc -c', cipher), BYTES);
  if (Number(r.stdout.trim()) !== BYTES) throw new Error(`${p}: the far end counted ${r.stdout.trim()} bytes, not ${BYTES}`);
  // sshd's per-connection processes count once their parent has reaped them
  await waitFor('the servers to reap their connection processes', () => Object.values(daemons).every((d) => childrenOf(d?.child.pid).length === 0), 10_000);
  const cpu: Record<string, number> = {};
  for (const [k, d] of Object.entries(daemons)) cpu[k] = cpuOf(d?.child.pid) - before[k];
  cpu.client = cpuOf(process.pid) - process.cpuUsage().user / 1e6 - process.cpuUsage().system / 1e6 - self0;
  return { mibps: BYTES / 1024 ** 2 / (r.ms / 1000), seconds: r.ms / 1000, negotiated, cpu, from, to: Date.now() };
}

async function main(): Promise<void> {
  const probeDir = process.env.BENCH_CPU_PROF || tempDir('bench-datapath-probe-');
  fs.mkdirSync(probeDir, { recursive: true });
  process.env.BENCH_PROBE_DIR = probeDir;
  if (process.env.BENCH_CPU_PROF) process.env.BENCH_PROBE_CPU_PROF = '1';
  const nodeOptions = process.env.NODE_OPTIONS;
  process.env.NODE_OPTIONS = `${nodeOptions ?? ''} --require ${path.join(__dirname, 'process-probe.js')}`.trim();
  const load0 = os.loadavg()[0];
  const children: Daemon[] = [];
  const rig = await startRig(LOGIN, (d) => children.push(d));
  if (nodeOptions === undefined) delete process.env.NODE_OPTIONS;
  else process.env.NODE_OPTIONS = nodeOptions;
  // startRig's order: the cluster (auth + node), the jump sshd, the target sshd, the proxy
  const [teleport, jumpSshd, targetSshd, proxy] = children;
  const daemons = { teleport, proxy, jumpSshd, targetSshd };
  const results: { path: Path; cipher: string; best: Run }[] = [];
  try {
    for (const cipher of CIPHERS) {
      for (const p of PATHS) {
        let best: Run | undefined;
        for (let i = 0; i < RUNS; i++) {
          const r = await once(rig, p, cipher, daemons);
          process.stderr.write(`${p} ${cipher}: ${r.mibps.toFixed(1)} MiB/s ${JSON.stringify(r.cpu)}\n`);
          if (!best || r.mibps > best.mibps) best = r;
        }
        results.push({ path: p, cipher, best: best! });
      }
    }
  } finally {
    await rig.close();
  }
  const gcs = (pid: number | undefined) => {
    try {
      return (JSON.parse(fs.readFileSync(path.join(probeDir, `${pid}.gc.json`), 'utf8')) as { log: [number, string, number][] }).log;
    } catch {
      return [];
    }
  };
  const logs = { teleport: gcs(teleport?.child.pid), proxy: gcs(proxy?.child.pid) };
  for (const r of results) r.best.majorGCs = Object.fromEntries(Object.entries(logs).map(([k, log]) => [k, log.filter(([at, kind]) => kind === 'major' && at >= r.best.from && at <= r.best.to).length]));
  if (!process.env.BENCH_CPU_PROF) fs.rmSync(probeDir, { recursive: true, force: true });
  const cpuCols = ['client', 'teleport', 'proxy', 'jumpSshd', 'targetSshd'];
  const rows = [['path', 'cipher asked', 'negotiated', 'MiB/s', ...cpuCols.map((c) => `${c} CPU s`), 'major GCs (node, proxy)']];
  for (const r of results) {
    const gc = r.best.majorGCs ?? {};
    rows.push([r.path, r.cipher, r.best.negotiated, fmt(r.best.mibps), ...cpuCols.map((c) => fmt(r.best.cpu[c], 2)), `${gc.teleport ?? '-'}, ${gc.proxy ?? '-'}`]);
  }
  console.log(`${fmt(BYTES / 1024 ** 2, 0)} MiB into wc -c, best of ${RUNS}; node ${process.version}; ${os.cpus().length} x ${os.cpus()[0]?.model}; load average ${load0.toFixed(2)} before, ${os.loadavg()[0].toFixed(2)} after`);
  console.log(formatTable(rows));
  console.log(JSON.stringify({ bench: 'datapath', bytes: BYTES, runs: RUNS, results }));
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
