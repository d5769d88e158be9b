/**
 * Node labels: the label-name rule shared by the file and the flag, and the
 * `--labels` syntax of `teleport start`:
 * `env=prod,uptime=[1m:"uptime -p"],kernel=[1h:"uname -r"]`.
 */

import { BadParameterError } from '../utils/errors';
import { parseDuration } from './duration';

export interface CommandLabel {
  readonly name: string;
  readonly command: string[];
  readonly periodMs: number;
}

const LABEL_NAME = /^[A-Za-z0-9/._-]+$/;

/** Why `name` is not a valid label name, or undefined when it is. */
export function labelNameProblem(name: string): string | undefined {
  if (name === '') return 'a label name cannot be empty';
  if (!LABEL_NAME.test(name)) {
    return `invalid label name ${JSON.stringify(name)}: use letters, digits and . / _ -`;
  }
  return undefined;
}

/**
 * Splits a command line into words on whitespace, honouring single and double
 * quotes. A command wrapped whole in one pair of quotes (`"uname -r"`) is
 * unwrapped first, as the manual writes it.
 */
export function splitCommand(text: string): string[] {
  let s = text.trim();
  if (s.length >= 2 && (s[0] === '"' || s[0] === "'") && s.endsWith(s[0]) && !s.slice(1, -1).includes(s[0])) {
    s = s.slice(1, -1).trim();
  }
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: string | undefined;
  for (const ch of s) {
    if (quote) {
      if (ch === quote) quote = undefined;
      else word += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += ch;
      inWord = true;
    }
  }
  if (quote) throw new BadParameterError(`unterminated ${quote} quote in command ${JSON.stringify(text)}`);
  if (inWord) words.push(word);
  return words;
}

/** Splits on commas that are outside brackets and quotes. */
function splitTopLevel(spec: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quote: string | undefined;
  let cur = '';
  for (const ch of spec) {
    if (quote) {
      if (ch === quote) quote = undefined;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
    } else if (ch === '[') {
      depth++;
    } else if (ch === ']') {
      depth--;
    } else if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
      continue;
    }
    cur += ch;
  }
  if (quote) throw new BadParameterError(`unterminated ${quote} quote`);
  if (depth !== 0) throw new BadParameterError('unbalanced "[" and "]"');
  parts.push(cur);
  return parts;
}

function unquote(s: string): string {
  if (s.length >= 2 && (s[0] === '"' || s[0] === "'") && s.endsWith(s[0])) return s.slice(1, -1);
  return s;
}

/**
 * Parses the `--labels` flag into static labels and command labels.
 * Errors are BadParameterErrors naming the offending item.
 */
export function parseLabelsFlag(spec: string): { labels: Record<string, string>; commands: CommandLabel[] } {
  const labels: Record<string, string> = {};
  const commands: CommandLabel[] = [];
  const seen = new Set<string>();
  let items: string[];
  try {
    items = splitTopLevel(spec);
  } catch (err) {
    throw new BadParameterError(`--labels ${JSON.stringify(spec)}: ${(err as Error).message}`);
  }
  for (const raw of items) {
    const item = raw.trim();
    if (item === '') continue;
    const fail = (why: string) => new BadParameterError(`--labels: ${JSON.stringify(item)}: ${why}`);
    const eq = item.indexOf('=');
    if (eq < 0) throw fail('expected name=value or name=[period:command]');
    const name = item.slice(0, eq).trim();
    const value = item.slice(eq + 1).trim();
    const nameProblem = labelNameProblem(name);
    if (nameProblem) throw fail(nameProblem);
    if (seen.has(name)) throw fail(`label ${JSON.stringify(name)} is given more than once`);
    seen.add(name);
    if (!value.startsWith('[')) {
      labels[name] = unquote(value);
      continue;
    }
    if (!value.endsWith(']')) throw fail('a command label must end with "]"');
    const inner = value.slice(1, -1);
    const colon = inner.indexOf(':');
    if (colon < 0) throw fail('expected [period:command], e.g. [1h:"uname -r"]');
    let periodMs: number;
    let command: string[];
    try {
      periodMs = parseDuration(inner.slice(0, colon));
      command = splitCommand(inner.slice(colon + 1));
    } catch (err) {
      throw fail((err as Error).message);
    }
    if (periodMs <= 0) throw fail('the period must be greater than zero');
    if (command.length === 0) throw fail('the command is empty');
    commands.push({ name, command, periodMs });
  }
  return { labels, commands };
}
