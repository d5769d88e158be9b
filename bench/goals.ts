/**
 * The performance goals of issue 22, each a row that `npm run bench` prints at
 * the end with its anchor measured in the same run and the ratio. A benchmark
 * reports a row with `reportGoal` (a `GOAL {json}` line on its stdout, which
 * bench/run.ts collects); a goal no benchmark reported in the run is printed as
 * not measured, so the table always has every row.
 */

/** The goals, in the order: `id` is what a benchmark reports, `bench` the benchmark that measures it. */
export const GOALS = [
  { id: 'nodes-one-auth', bench: 'scale', metric: 'Nodes on one auth process', goal: '10,000 nodes under 50% of one core; join ≤ 10 min' },
  { id: 'auth-scale-out', bench: 'scale-out', metric: 'Auth servers scale out', goal: '2 auth processes ≥ 1.8× the nodes of one' },
  { id: 'proxy-throughput', bench: 'proxy-ssh', metric: '1 GiB through proxy → node', goal: '≥ 0.9× ProxyJump' },
  { id: 'node-throughput', bench: 'node-ssh', metric: '1 GiB to a node', goal: '≥ 0.95× sshd' },
  { id: 'node-setup', bench: 'node-ssh', metric: '200 × ssh true, concurrency 20', goal: '≤ 1.0× sshd' },
  { id: 'proxy-setup', bench: 'proxy-ssh', metric: 'Session setup through proxy p50', goal: '≤ 1.0× ProxyJump' },
  { id: 'watch-sqlite', bench: 'backend', metric: 'Watch propagation, SQLite across processes', goal: 'p50 ≤ 50 ms' },
  { id: 'npm-start', bench: 'start', metric: '`npm start` (unchanged checkout) to first login', goal: '≤ 3 s' },
  { id: 'cli-start', bench: 'start', metric: '`tctl` / `tsh` command start', goal: '≤ 150 ms' },
  { id: 'cdk-synth', bench: 'start', metric: '`cdk synth` of both stacks', goal: '≤ 15 s' },
  { id: 'idle-session-memory', bench: 'idle-sessions', metric: 'Memory per idle session', goal: '≤ 0.5× sshd' },
] as const;

export type GoalId = (typeof GOALS)[number]['id'];

/** One measured goal row. */
export interface GoalRow {
  /** Which goal (see GOALS). */
  readonly id: GoalId;
  /** The measured figure with its unit, as printed: `118 MiB/s`, `2.4 s`. */
  readonly value: string;
  /** The anchor and its figure measured in the same run, as printed: `ProxyJump 152 MiB/s`; `-` where the goal has none. */
  readonly anchor: string;
  /** value / anchor (or the figure against its limit where there is no anchor), as the goal states it. */
  readonly ratio: number | null;
  /** Whether the goal is met in this run. */
  readonly met: boolean;
  /** Anything a reader needs to weigh the figure (a smaller run than the goal's, a machine limit). */
  readonly note?: string;
}

const PREFIX = 'GOAL ';

/** Reports one goal row to bench/run.ts (a line on stdout; also readable by a person). */
export function reportGoal(row: GoalRow): void {
  process.stdout.write(`${PREFIX}${JSON.stringify(row)}\n`);
}

/** The goal row in a line of a benchmark's output, or undefined. */
export function parseGoalLine(line: string): GoalRow | undefined {
  if (!line.startsWith(PREFIX)) return undefined;
  try {
    const row = JSON.parse(line.slice(PREFIX.length)) as GoalRow;
    return GOALS.some((g) => g.id === row.id) ? row : undefined;
  } catch {
    return undefined;
  }
}

/** The goals table: every goal, in order, with the row reported for it last in the run, or "not measured". */
export function goalsTable(rows: GoalRow[], ran: readonly string[]): string[][] {
  const out = [['goal', 'measured', 'anchor (same run)', 'ratio', 'target', 'met']];
  for (const g of GOALS) {
    const r = [...rows].reverse().find((x) => x.id === g.id);
    if (!r) {
      out.push([g.metric, ran.includes(g.bench) ? 'failed' : `not run (${g.bench})`, '-', '-', g.goal, '-']);
      continue;
    }
    const ratio = r.ratio === null || !Number.isFinite(r.ratio) ? '-' : `${r.ratio.toFixed(2)}×`;
    out.push([g.metric, r.value, r.anchor, ratio, g.goal, r.met ? 'yes' : 'NO' + (r.note ? ` (${r.note})` : '')]);
  }
  return out;
}
