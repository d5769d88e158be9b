/**
 * `tsh clusters`: the clusters the user can reach through the current proxy: its own (reached
 * through the proxy, so "online" means both answered) and its leaf clusters (trusted clusters),
 * online while one of their proxies holds a reverse tunnel to this cluster.
 */
import type { RemoteClusterStatus } from '../auth/trust';
import { table } from '../utils/table';
import { CurrentLogin, withCluster } from './cluster';

export interface ClusterStatus {
  name: string;
  status: 'online' | 'offline';
}

export async function listClusters(login: CurrentLogin): Promise<ClusterStatus[]> {
  const own = { ...login, cluster: login.profile.cluster };
  const [ping, leaves] = await withCluster(own, (c) =>
    Promise.all([c.auth.get<{ cluster_name: string }>('/v1/ping'), c.auth.get<RemoteClusterStatus[]>('/v1/remoteclusters')]),
  );
  const sorted = [...leaves].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  return [{ name: ping.cluster_name, status: 'online' }, ...sorted.map((l) => ({ name: l.metadata.name, status: l.status.connection }))];
}

export function formatClusters(clusters: ClusterStatus[]): string {
  return table(['Cluster Name', 'Status'], clusters.map((c) => [c.name, c.status]));
}
