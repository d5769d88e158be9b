/**
 * The README's shell blocks as a test reads them: the fenced ```bash blocks
 * of one section, split into commands (backslash continuations joined,
 * comments and blank lines dropped), in order.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './proc';

export interface ReadmeCommand {
  /** The command as written in the README. */
  text: string;
  /** Line of the README where it starts (1-based), for messages. */
  line: number;
}

/** The lines of `## <title>` up to the next `## ` heading. */
function section(lines: string[], title: string): { start: number; lines: string[] } {
  const start = lines.findIndex((l) => l.trim() === `## ${title}`);
  if (start < 0) throw new Error(`README.md has no "## ${title}" section`);
  const end = lines.findIndex((l, i) => i > start && /^## /.test(l));
  return { start, lines: lines.slice(start, end < 0 ? undefined : end) };
}

/** The commands of the ```bash blocks of README section `title`, in order. */
export function readmeCommands(title: string, readme = path.join(ROOT, 'README.md')): ReadmeCommand[] {
  const { start, lines } = section(fs.readFileSync(readme, 'utf8').split('\n'), title);
  const out: ReadmeCommand[] = [];
  let inBash = false;
  let inFence = false;
  let pending: ReadmeCommand | undefined;
  lines.forEach((raw, i) => {
    const fence = /^```(\S*)/.exec(raw);
    if (fence) {
      if (inFence) {
        inFence = inBash = false;
      } else {
        inFence = true;
        inBash = fence[1] === 'bash';
      }
      return;
    }
    if (!inBash) return;
    const line = start + i + 1;
    const text = raw.replace(/\s+#(?![^'"]*['"]).*$/, '').trimEnd(); // a trailing comment (not inside quotes)
    if (pending) {
      pending.text += ' ' + text.trim().replace(/\\$/, '').trim();
      if (!text.endsWith('\\')) out.push(pending), (pending = undefined);
      return;
    }
    if (text.trim() === '' || text.trim().startsWith('#')) return;
    if (text.endsWith('\\')) pending = { text: text.replace(/\\$/, '').trim(), line };
    else out.push({ text: text.trim(), line });
  });
  return out;
}

/** The lines of the unlabelled fenced blocks (shown output) of README section `title`, without `...` elisions. */
export function readmeOutputLines(title: string, readme = path.join(ROOT, 'README.md')): string[] {
  const { lines } = section(fs.readFileSync(readme, 'utf8').split('\n'), title);
  const out: string[] = [];
  let fence: string | undefined;
  for (const raw of lines) {
    const m = /^```(\S*)/.exec(raw);
    if (m) {
      fence = fence === undefined ? m[1] : undefined;
      continue;
    }
    if (fence === '' && raw.trim() !== '' && raw.trim() !== '...') out.push(raw.trim());
  }
  return out;
}
