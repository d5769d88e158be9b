/**
 * Reading a teleport process's diagnostics endpoint as a monitoring system would: `/metrics`
 * checked by Prometheus's own parser and linter (`promtool check metrics`, Debian's prometheus
 * package) and read with parse-prometheus-text-format (prom2json's shape) for the values,
 * `/readyz` as JSON. parse-prometheus-text-format drops the labels, `_sum` and `_count` of a
 * labelled histogram, so histograms are judged by promtool and by the buckets it keeps.
 */
import parsePrometheusTextFormat, { type ParsedFamily } from 'parse-prometheus-text-format';
import { run } from './proc';

export interface Scrape {
  readonly contentType: string;
  readonly text: string;
  readonly families: ParsedFamily[];
  /** The family called `name`; fails the test when there is none. */
  family(name: string): ParsedFamily;
  /** The value of the sample of counter or gauge `name` whose labels include `labels` (0 when no sample has them yet). */
  value(name: string, labels?: Record<string, string>): number;
}

/** GET `<base>/metrics`, parsed. */
export async function scrape(base: string): Promise<Scrape> {
  const res = await fetch(`${base}/metrics`);
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`);
  const text = await res.text();
  const families = parsePrometheusTextFormat(text);
  const family = (name: string) => {
    const f = families.find((x) => x.name === name);
    if (!f) throw new Error(`no metric ${name} in /metrics (has ${families.map((x) => x.name).join(', ')})`);
    return f;
  };
  return {
    contentType: res.headers.get('content-type') ?? '',
    text,
    families,
    family,
    value: (name, labels = {}) => {
      const sample = family(name).metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
      return sample ? Number(sample.value) : 0;
    },
  };
}

export interface Readyz {
  readonly status: number;
  readonly body: { status: string; checks: { name: string; status: 'ok' | 'failing'; reason?: string }[] };
}

/** GET `<base>/readyz`; undefined while nothing listens there. */
export async function readyz(base: string): Promise<Readyz | undefined> {
  try {
    const res = await fetch(`${base}/readyz`);
    return { status: res.status, body: (await res.json()) as Readyz['body'] };
  } catch {
    return undefined;
  }
}

/**
 * `promtool check metrics` on `text`: exit code 0 (clean), 3 (parsed, with lint problems) or
 * 1 (does not parse), and its lint problems, one a line.
 */
export async function promtoolCheck(text: string): Promise<{ code: number | null; problems: string[] }> {
  const r = await run('promtool', ['check', 'metrics'], { input: text });
  return { code: r.code, problems: `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.trim() !== '') };
}
