/**
 * Reading teleport.yaml: YAML syntax, then the schema, every problem turned
 * into one `<file>:<line>:<col>: <what is wrong>` line of a ConfigError. Also
 * finds which config file to read (-c/--config, TELEPORT_CONFIG, /etc/teleport.yaml).
 */

import { existsSync, readFileSync, statSync } from 'node:fs';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { closestName } from '../utils/didyoumean';
import { ConfigError, type ConfigIssue } from './errors';
import { FileConfigSchema, knownKeysAt, REQUIRED, type FileConfig } from './schema';

export const DEFAULT_CONFIG_PATH = '/etc/teleport.yaml';

type Path = readonly (string | number)[];

interface Spot {
  /** Offset of the key (for mapping entries). */
  readonly key?: number;
  /** Offset of the value. */
  readonly value: number;
}

/** Where each key and value of a parsed file is, so later errors can point at it. */
export class SourceMap {
  private readonly spots = new Map<string, Spot>();

  constructor(
    readonly file: string,
    private readonly lines: LineCounter,
  ) {}

  set(path: Path, spot: Spot): void {
    this.spots.set(JSON.stringify(path), spot);
  }

  /** Whether the file sets `path` (a default or a flag does not). */
  has(path: Path): boolean {
    return this.spots.has(JSON.stringify(path));
  }

  /** The issue for `path`, at its key (`at: 'key'`) or value, or at the nearest enclosing node that exists. */
  issue(path: Path, message: string, at: 'key' | 'value' = 'value'): ConfigIssue {
    for (let n = path.length; n >= 0; n--) {
      const spot = this.spots.get(JSON.stringify(path.slice(0, n)));
      if (!spot) continue;
      const offset = n === path.length && at === 'key' && spot.key !== undefined ? spot.key : spot.value;
      const pos = this.lines.linePos(offset);
      return { file: this.file, line: pos.line, col: pos.col, message };
    }
    return { file: this.file, message };
  }
}

const sourceMaps = new WeakMap<object, SourceMap>();

/**
 * The source positions of a FileConfig returned by parseConfig, or of the
 * TeleportConfig buildConfig made from one, if it came from a file.
 */
export function sourceMapOf(config: object): SourceMap | undefined {
  return sourceMaps.get(config);
}

/** Lets checks of `derived` (built from `from`) point at the lines of `from`'s file. */
export function shareSourceMap(from: object, derived: object): void {
  const map = sourceMaps.get(from);
  if (map) sourceMaps.set(derived, map);
}

/** `teleport.storage.type`, `ssh_service.commands[0].period`. */
export function formatPath(path: Path): string {
  let out = '';
  for (const step of path) {
    if (typeof step === 'number') out += `[${step}]`;
    else out += out === '' ? step : `.${step}`;
  }
  return out;
}

/**
 * Turns the YAML tree into plain data, recording positions. Scalars keep
 * their source text (so `0123` and long numeric tokens stay as written);
 * empty and null values become undefined, i.e. "not set".
 */
function toData(node: unknown, doc: Document, path: Path, map: SourceMap, issues: ConfigIssue[]): unknown {
  if (node === null || node === undefined) return undefined;
  if (isAlias(node)) return toData(node.resolve(doc), doc, path, map, issues);
  if (isScalar(node)) {
    const v = node.value;
    if (v === null || v === undefined) return undefined;
    if (typeof v === 'string') return v;
    if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return node.source ?? String(v);
    return String(v);
  }
  if (isSeq(node)) {
    return node.items.map((item, i) => {
      const p = [...path, i];
      map.set(p, { value: (item as Node | null)?.range?.[0] ?? node.range?.[0] ?? 0 });
      return toData(item, doc, p, map, issues);
    });
  }
  if (isMap(node)) {
    const out: Record<string, unknown> = {};
    for (const pair of node.items) {
      const keyNode = pair.key as Node | null;
      if (!isScalar(keyNode) || keyNode.value === null || typeof keyNode.value === 'object') {
        const pos = keyNode?.range?.[0] ?? node.range?.[0] ?? 0;
        map.set([...path, '?'], { value: pos });
        issues.push(map.issue([...path, '?'], `${formatPath(path) || 'top level'}: keys must be plain names`));
        continue;
      }
      const key = typeof keyNode.value === 'string' ? keyNode.value : (keyNode.source ?? String(keyNode.value));
      const p = [...path, key];
      const valueNode = pair.value as Node | null;
      const keyStart = keyNode.range?.[0] ?? 0;
      map.set(p, { key: keyStart, value: valueNode?.range?.[0] ?? keyNode.range?.[1] ?? keyStart });
      Object.defineProperty(out, key, {
        value: toData(valueNode, doc, p, map, issues),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }
  return undefined;
}

const TOP_LEVEL = ['teleport', 'auth_service', 'ssh_service', 'proxy_service'];

function unknownKeyMessage(path: Path, key: string): string {
  const where = path.length === 0 ? 'at the top level' : `in ${formatPath(path)}`;
  let msg = `unknown key ${JSON.stringify(key)} ${where}`;
  const best = closestName(key.toLowerCase(), knownKeysAt(path) ?? [], Math.max(2, Math.floor(key.length / 3)));
  if (best) {
    msg += ` (did you mean ${JSON.stringify(best)}?)`;
  } else if (path.length > 0 && TOP_LEVEL.includes(key)) {
    msg += ` (${key} is a top-level section)`;
  } else if (path.length === 0) {
    msg += ` (expected ${TOP_LEVEL.join(', ')})`;
  }
  return msg;
}

function schemaIssues(error: z.ZodError, map: SourceMap): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const iss of error.issues) {
    const path = iss.path.filter((p): p is string | number => typeof p !== 'symbol');
    if (iss.code === 'unrecognized_keys') {
      for (const key of iss.keys) out.push(map.issue([...path, key], unknownKeyMessage(path, key), 'key'));
      continue;
    }
    if (iss.code === 'custom' && iss.message.startsWith(REQUIRED) && path.length > 0) {
      const parent = path.slice(0, -1);
      const what = iss.message.slice(REQUIRED.length).trim();
      const msg = `missing ${JSON.stringify(path[path.length - 1])}${what ? ' ' + what : ''}`;
      out.push(map.issue(parent, parent.length > 0 ? `${formatPath(parent)}: ${msg}` : msg));
      continue;
    }
    const where = formatPath(path);
    out.push(map.issue(path, where ? `${where}: ${iss.message}` : iss.message));
  }
  return out;
}

function yamlMessage(err: { code: string; message: string }): string {
  if (err.code === 'TAB_AS_INDENT') return 'tabs are not allowed in indentation; indent with spaces';
  const first = err.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
  return 'YAML syntax error: ' + first.charAt(0).toLowerCase() + first.slice(1);
}

function byPosition(a: ConfigIssue, b: ConfigIssue): number {
  return (a.line ?? 0) - (b.line ?? 0) || (a.col ?? 0) - (b.col ?? 0);
}

/**
 * Parses and validates teleport.yaml text. `source` names the file in error
 * messages. An empty document is an empty config. Throws a ConfigError listing
 * every problem found.
 */
export function parseConfig(text: string, source: string): FileConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  const map = new SourceMap(source, lines);
  if (doc.errors.length > 0) {
    const issues = doc.errors.map((e): ConfigIssue => {
      const pos = e.linePos?.[0] ?? lines.linePos(e.pos[0]);
      return { file: source, line: pos.line, col: pos.col, message: yamlMessage(e) };
    });
    throw new ConfigError(issues.sort(byPosition));
  }
  const issues: ConfigIssue[] = [];
  map.set([], { value: doc.contents?.range?.[0] ?? 0 });
  const data = toData(doc.contents, doc, [], map, issues) ?? {};
  const result = FileConfigSchema.safeParse(data);
  if (!result.success) issues.push(...schemaIssues(result.error, map));
  if (issues.length > 0 || !result.success) throw new ConfigError(issues.sort(byPosition));
  sourceMaps.set(result.data, map);
  return result.data;
}

/** Reads and validates a teleport.yaml file; errors name the path as given. */
export function loadConfigFile(path: string): FileConfig {
  let text: string;
  try {
    if (statSync(path).isDirectory()) throw new ConfigError([{ file: path, message: 'is a directory, not a config file' }]);
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'config file not found' : code === 'EACCES' ? 'permission denied reading the config file' : (err as Error).message;
    throw new ConfigError([{ file: path, message: why }]);
  }
  return parseConfig(text, path);
}

/**
 * Which config file to read: the -c/--config flag, else TELEPORT_CONFIG, else
 * /etc/teleport.yaml when it exists; undefined when there is none. A path
 * named explicitly that does not exist is an error.
 */
export function resolveConfigPath(
  flagValue: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  defaultPath: string = DEFAULT_CONFIG_PATH,
): string | undefined {
  const [path, from] = flagValue ? [flagValue, '--config'] : [env.TELEPORT_CONFIG, 'TELEPORT_CONFIG'];
  if (!path) return existsSync(defaultPath) ? defaultPath : undefined;
  if (!existsSync(path)) {
    throw new ConfigError([{ message: `${from}: config file ${JSON.stringify(path)} does not exist` }]);
  }
  return path;
}
