/**
 * `tsh ls [label=value,...]`: the nodes the user's roles let them see, from
 * the auth server (through the proxy), optionally narrowed by labels, as a
 * table of name, address and labels (`-v` adds the node ID).
 */
import { Server, serverLabels } from '../auth/resources';
import { BadParameterError } from '../utils/errors';
import { CurrentLogin, withCluster } from './cluster';

/** `env=prod,role=db` (or several arguments) → {env: 'prod', role: 'db'}. */
export function parseLabelSelector(args: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of args.flatMap((a) => a.split(',')).filter((p) => p.trim() !== '')) {
    const eq = part.indexOf('=');
    const k = eq > 0 ? part.slice(0, eq).trim() : '';
    if (!k) throw new BadParameterError(`"${part}" is not a label selector: expected key=value`);
    out[k] = part.slice(eq + 1).trim();
  }
  return out;
}

export function matchesSelector(node: Server, selector: Record<string, string>): boolean {
  const labels = serverLabels(node);
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

function formatLabels(node: Server): string {
  const labels = serverLabels(node);
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',');
}

/** A left-aligned table with a dashed rule under the header, as tsh prints it. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join(' ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n') + '\n';
}

export function formatNodes(nodes: Server[], verbose: boolean): string {
  const sorted = [...nodes].sort((a, b) => a.spec.hostname.localeCompare(b.spec.hostname) || a.metadata.name.localeCompare(b.metadata.name));
  const header = verbose ? ['Node Name', 'Node ID', 'Address', 'Labels'] : ['Node Name', 'Address', 'Labels'];
  const rows = sorted.map((n) => (verbose ? [n.spec.hostname, n.metadata.name, n.spec.addr, formatLabels(n)] : [n.spec.hostname, n.spec.addr, formatLabels(n)]));
  return formatTable(header, rows);
}

export async function listNodes(login: CurrentLogin, selector: Record<string, string> = {}): Promise<Server[]> {
  const nodes = await withCluster(login, (c) => c.auth.get<Server[]>('/v1/namespaces/default/nodes'));
  return nodes.filter((n) => matchesSelector(n, selector));
}
