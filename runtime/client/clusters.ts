/**
 * `tsh clusters`: the clusters the user can reach through the current proxy, as the auth server
 * names them (reached through the proxy, so "online" means both answered). There are no trusted
 * (leaf) clusters in this implementation, so it is the root cluster alone.
 */
import { table } from '../utils/table';
import { CurrentLogin, withCluster } from './cluster';

export interface ClusterStatus {
  name: string;
  status: 'online';
}

export async function listClusters(login: CurrentLogin): Promise<ClusterStatus[]> {
  const ping = await withCluster(login, (c) => c.auth.get<{ cluster_name: string }>('/v1/ping'));
  return [{ name: ping.cluster_name, status: 'online' }];
}

export function formatClusters(clusters: ClusterStatus[]): string {
  return table(['Cluster Name', 'Status'], clusters.map((c) => [c.name, c.status]));
}
