/**
 * EventBridge event patterns, the language that Lambda's event filtering (`FilterCriteria`) shares:
 * a pattern is a JSON object whose keys name fields of the event; an object value matches the
 * nested object, an array value lists what the field may be (any one suffices). Array fields of
 * the event match when any element matches. The entries of a list: a literal (string, number,
 * boolean, null) that must be equal, or one operator object: `prefix`, `suffix`,
 * `equals-ignore-case`, `wildcard`, `anything-but` (a value, a list, or a `prefix`/`suffix`/
 * `equals-ignore-case`/`wildcard`), `numeric` (`[">", 0, "<=", 5]`), `exists` and `cidr`.
 * `$or` takes a list of patterns. A pattern is checked when it is compiled: what this does not
 * understand is refused with a `PatternError`, never silently matched.
 */
import * as net from 'node:net';

export class PatternError extends Error {
  constructor(readonly reason: string) {
    super(`invalid event pattern: ${reason}`);
    this.name = 'PatternError';
  }
}

/** Whether an event (any JSON value) matches the compiled pattern. */
export type EventMatcher = (event: unknown) => boolean;

type Obj = Record<string, unknown>;
/** A field test: `present` tells whether the key exists; `value` is its value when it does. */
type FieldTest = (present: boolean, value: unknown) => boolean;
/** A test of one scalar value. */
type ValueTest = (value: unknown) => boolean;

const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isScalar = (v: unknown) => v === null || ['string', 'number', 'boolean'].includes(typeof v);

/** Compiles a pattern (an object, or its JSON text as in `FilterCriteria`). */
export function compilePattern(pattern: unknown): EventMatcher {
  let parsed = pattern;
  if (typeof pattern === 'string') {
    try {
      parsed = JSON.parse(pattern);
    } catch (err) {
      throw new PatternError(`not JSON: ${(err as Error).message}`);
    }
  }
  if (!isObject(parsed)) throw new PatternError(`a pattern is a JSON object, not ${JSON.stringify(parsed)}`);
  return objectMatcher(parsed, '');
}

function objectMatcher(pattern: Obj, at: string): (value: unknown) => boolean {
  const parts = Object.entries(pattern).map(([key, want]): ((obj: Obj | undefined) => boolean) => {
    const path = at ? `${at}.${key}` : key;
    if (key === '$or') {
      if (!Array.isArray(want) || want.length < 2 || !want.every(isObject)) throw new PatternError(`${path}: $or takes a list of at least two patterns`);
      const alternatives = want.map((p, i) => objectMatcher(p, `${path}[${i}]`));
      return (obj) => alternatives.some((m) => m(obj));
    }
    if (Array.isArray(want)) {
      const test = fieldTest(want, path);
      return (obj) => (obj !== undefined && Object.hasOwn(obj, key) ? test(true, obj[key]) : test(false, undefined));
    }
    if (isObject(want)) {
      const nested = objectMatcher(want, path);
      return (obj) => {
        const v = obj?.[key];
        return Array.isArray(v) ? v.some((e) => nested(e)) : nested(v);
      };
    }
    throw new PatternError(`${path}: a value of a pattern is a list or an object, not ${JSON.stringify(want)}`);
  });
  return (value) => {
    const obj = isObject(value) ? value : undefined;
    return parts.every((p) => p(obj));
  };
}

/** The test of a field from its list of accepted values and operators. */
function fieldTest(wants: unknown[], path: string): FieldTest {
  if (wants.length === 0) throw new PatternError(`${path}: an empty list matches nothing`);
  const tests = wants.map((w) => entryTest(w, path));
  return (present, value) => tests.some((t) => t(present, value));
}

/** Applies a value test to a present field: any element of an array, the value itself otherwise. */
function anyValue(test: ValueTest): FieldTest {
  return (present, value) => present && (Array.isArray(value) ? value.some(test) : test(value));
}

function entryTest(want: unknown, path: string): FieldTest {
  if (isScalar(want)) return anyValue((v) => v === want);
  const [op, arg] = operator(want, path);
  switch (op) {
    case 'exists':
      if (typeof arg !== 'boolean') throw new PatternError(`${path}: exists takes true or false`);
      return (present, value) => (arg ? present && !isObject(value) : !present);
    case 'anything-but': {
      const excluded = anythingBut(arg, path);
      return anyValue((v) => isScalar(v) && !excluded(v));
    }
    case 'numeric':
      return anyValue(numeric(arg, path));
    case 'cidr':
      return anyValue(cidr(arg, path));
    default:
      return anyValue(stringTest(op, arg, path));
  }
}

/** The single operator of an operator object (`{ "prefix": "x" }` → `["prefix", "x"]`). */
function operator(want: unknown, path: string): [string, unknown] {
  if (!isObject(want) || Object.keys(want).length !== 1) throw new PatternError(`${path}: ${JSON.stringify(want)} is neither a value nor one operator`);
  const [op] = Object.keys(want);
  return [op, want[op]];
}

/** The string operators: `prefix` and `suffix` (optionally `{ "equals-ignore-case": ... }`), `equals-ignore-case`, `wildcard`. */
function stringTest(op: string, arg: unknown, path: string): ValueTest {
  const text = (a: unknown): string => {
    if (typeof a !== 'string') throw new PatternError(`${path}: ${op} takes a string, not ${JSON.stringify(a)}`);
    return a;
  };
  switch (op) {
    case 'prefix':
    case 'suffix': {
      let [fold, s] = [false, arg];
      if (isObject(arg)) {
        const [inner, value] = operator(arg, path);
        if (inner !== 'equals-ignore-case') throw new PatternError(`${path}: ${op} takes a string or { "equals-ignore-case": string }`);
        [fold, s] = [true, value];
      }
      const norm = (v: string) => (fold ? v.toLowerCase() : v);
      const want = norm(text(s));
      return (v) => typeof v === 'string' && (op === 'prefix' ? norm(v).startsWith(want) : norm(v).endsWith(want));
    }
    case 'equals-ignore-case': {
      const want = text(arg).toLowerCase();
      return (v) => typeof v === 'string' && v.toLowerCase() === want;
    }
    case 'wildcard': {
      const re = new RegExp(`^${text(arg).split('*').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 's');
      return (v) => typeof v === 'string' && re.test(v);
    }
    default:
      throw new PatternError(`${path}: unknown operator ${op}`);
  }
}

/** What `anything-but` excludes: values, a list of values, or one string operator. */
function anythingBut(arg: unknown, path: string): ValueTest {
  if (isScalar(arg)) return (v) => v === arg;
  if (Array.isArray(arg)) {
    if (!arg.every(isScalar) || arg.length === 0) throw new PatternError(`${path}: anything-but takes a non-empty list of values`);
    return (v) => arg.includes(v);
  }
  const [op, inner] = operator(arg, path);
  if (op === 'equals-ignore-case' && Array.isArray(inner)) {
    const tests = inner.map((i) => stringTest(op, i, path));
    return (v) => tests.some((t) => t(v));
  }
  return stringTest(op, inner, path);
}

/** `numeric`: one or two comparisons, ANDed. */
function numeric(arg: unknown, path: string): ValueTest {
  const compare: Record<string, (a: number, b: number) => boolean> = {
    '<': (a, b) => a < b,
    '<=': (a, b) => a <= b,
    '=': (a, b) => a === b,
    '>': (a, b) => a > b,
    '>=': (a, b) => a >= b,
  };
  if (!Array.isArray(arg) || arg.length === 0 || arg.length % 2 !== 0 || arg.length > 4) throw new PatternError(`${path}: numeric takes one or two [operator, number] pairs`);
  const checks: ValueTest[] = [];
  for (let i = 0; i < arg.length; i += 2) {
    const [op, n] = [arg[i], arg[i + 1]];
    if (typeof op !== 'string' || !compare[op] || typeof n !== 'number') throw new PatternError(`${path}: numeric: ${JSON.stringify(op)} ${JSON.stringify(n)} is not an operator and a number`);
    checks.push((v) => typeof v === 'number' && compare[op](v, n));
  }
  return (v) => checks.every((c) => c(v));
}

/** `cidr`: an IPv4 or IPv6 address within the block. */
function cidr(arg: unknown, path: string): ValueTest {
  const m = typeof arg === 'string' ? /^(.+)\/(\d{1,3})$/.exec(arg) : null;
  const family = m ? net.isIP(m[1]) : 0;
  if (!m || family === 0) throw new PatternError(`${path}: cidr takes an address block, not ${JSON.stringify(arg)}`);
  const type = family === 4 ? 'ipv4' : 'ipv6';
  const block = new net.BlockList();
  block.addSubnet(m[1], Number(m[2]), type);
  return (v) => typeof v === 'string' && net.isIP(v) === family && block.check(v, type);
}
