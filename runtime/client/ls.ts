/**
 * `tsh ls [label=value,...]`: the nodes the user's roles let them see, from
 * the auth server (through the proxy), optionally narrowed by labels, as a
 * table of name, address and labels (`-v` adds the node ID).
 */
import { formatServerLabels, Server, serverAddress, serverLabels } from '../auth/resources';
import { BadParameterError } from '../utils/errors';
import { table } from '../utils/table';
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

export function formatNodes(nodes: Server[], verbose: boolean): string {
  const sorted = [...nodes].sort((a, b) => a.spec.hostname.localeCompare(b.spec.hostname) || a.metadata.name.localeCompare(b.metadata.name));
  const header = verbose ? ['Node Name', 'Node ID', 'Address', 'Labels'] : ['Node Name', 'Address', 'Labels'];
  const rows = sorted.map((n) => (verbose ? [n.spec.hostname, n.metadata.name, serverAddress(n), formatServerLabels(n)] : [n.spec.hostname, serverAddress(n), formatServerLabels(n)]));
  return table(header, rows);
}

export async function listNodes(login: CurrentLogin, selector: Record<string, string> = {}): Promise<Server[]> {
  const nodes = await withCluster(login, (c) => c.auth.get<Server[]>('/v1/namespaces/default/nodes'));
  return nodes.filter((n) => matchesSelector(n, selector));
}
