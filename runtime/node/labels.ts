/**
 * Node labels: static ones from the config and `--labels`, and dynamic ones
 * whose value is the output of a command run every `period`. A change of any
 * dynamic value is reported at once so the heartbeat can announce it.
 */
import { execFile } from 'node:child_process';
import { CommandLabel } from '../config';
import { Logger } from '../utils/logger';

export interface CommandLabelState {
  command: string[];
  /** Nanoseconds, as the Go system in the seeds sends durations. */
  period: number;
  result: string;
}

const MAX_OUTPUT = 4096;

export class DynamicLabels {
  private readonly results = new Map<string, string>();
  private readonly timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly commands: CommandLabel[],
    private readonly onChange: () => void,
    private readonly log: Logger,
  ) {}

  /** Runs every command once (so the first heartbeat has values), then on its period. */
  async start(): Promise<void> {
    await Promise.all(this.commands.map((c) => this.run(c)));
    for (const c of this.commands) {
      const t = setInterval(() => void this.run(c), Math.max(1000, c.periodMs));
      t.unref();
      this.timers.push(t);
    }
  }

  private run(c: CommandLabel): Promise<void> {
    return new Promise((resolve) => {
      execFile(c.command[0], c.command.slice(1), { timeout: 30_000, maxBuffer: MAX_OUTPUT * 4 }, (err, stdout) => {
        const value = err ? `error: ${err.message.split('\n')[0]}` : stdout.trim().slice(0, MAX_OUTPUT);
        if (err) this.log.warn('label command failed', { label: c.name, error: err.message });
        if (this.results.get(c.name) !== value) {
          this.results.set(c.name, value);
          this.onChange();
        }
        resolve();
      });
    });
  }

  snapshot(): Record<string, CommandLabelState> {
    return Object.fromEntries(
      this.commands.map((c) => [c.name, { command: c.command, period: c.periodMs * 1e6, result: this.results.get(c.name) ?? '' }]),
    );
  }

  stop(): void {
    this.timers.forEach(clearInterval);
  }
}
