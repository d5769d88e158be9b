/**
 * `npm run bench`: runs every benchmark in turn, each in its own process
 * (`node dist/bench/<name>.js`), or only those named on the command line:
 * `npm run bench -- proxy-ssh`. Arguments that start with `--` (`--nodes=3000`,
 * or `--mib 0` with its value) go to each benchmark run. Each prints its own table; at the end this prints
 * the goals of issue 22 (bench/goals.ts), each with the figure and the anchor
 * its benchmark measured in this run, and the ratio.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { formatTable } from './common';
import { goalsTable, parseGoalLine, type GoalRow } from './goals';

const BENCHES = ['cert-issuance', 'ca-signer', 'node-ssh', 'proxy-ssh', 'datapath', 'backend', 'kex', 'access', 'deploy-local', 'tunnel-agents', 'web-echo', 'scale', 'scale-out', 'cache-range', 'idle-sessions', 'start'];

/** Runs one benchmark with its stdout passed through; resolves with its exit status and the goal rows it reported. */
function runBench(name: string, args: string[]): Promise<{ ok: boolean; rows: GoalRow[] }> {
  return new Promise((resolve) => {
    const rows: GoalRow[] = [];
    const child = spawn(process.execPath, [path.join(__dirname, `${name}.js`), ...args], { stdio: ['inherit', 'pipe', 'inherit'] });
    let pending = '';
    child.stdout.on('data', (chunk: Buffer) => {
      process.stdout.write(chunk);
      const lines = (pending + chunk.toString('utf8')).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        const row = parseGoalLine(line);
        if (row) rows.push(row);
      }
    });
    child.on('close', (code) => {
      const row = parseGoalLine(pending);
      if (row) rows.push(row);
      resolve({ ok: code === 0, rows });
    });
  });
}

/**
 * Benchmark names, and the arguments every run gets: `--x=v`, or `--x v` (the value
 * that follows a flag and is not a benchmark's name), or a bare `--x`.
 */
function splitArgs(args: string[]): { wanted: string[]; passed: string[] } {
  const wanted: string[] = [];
  const passed: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith('--')) {
      wanted.push(a);
      continue;
    }
    passed.push(a);
    const next = args[i + 1];
    if (!a.includes('=') && next !== undefined && !next.startsWith('--') && !BENCHES.includes(next)) passed.push(args[++i]);
  }
  return { wanted, passed };
}

async function main(): Promise<void> {
  const { wanted, passed } = splitArgs(process.argv.slice(2));
  const unknown = wanted.filter((w) => !BENCHES.includes(w));
  if (unknown.length) {
    process.stderr.write(`unknown benchmark ${unknown.join(', ')}; there are: ${BENCHES.join(', ')}\n`);
    process.exit(2);
  }
  const names = wanted.length ? wanted : BENCHES;
  const rows: GoalRow[] = [];
  let failed = 0;
  for (const name of names) {
    process.stdout.write(`\n=== ${name} ===\n`);
    const r = await runBench(name, passed);
    rows.push(...r.rows);
    if (!r.ok) failed++;
  }
  process.stdout.write(`\n=== goals (issue 22) ===\n${formatTable(goalsTable(rows, names))}\n`);
  process.exit(failed ? 1 : 0);
}

void main();
