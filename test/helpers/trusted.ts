/**
 * The trusted-cluster pair the e2e tests set up: a root ("root.example") and a
 * leaf ("leaf.example" with node "test-auth"), the leaf role root admins map
 * to, and the leaf's `trusted_cluster` resource naming the root.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { selfSignedCertFile } from '../../runtime/proxy/web';
import { createAuth, type TestAuth } from './cluster';
import { freePort, run, RunResult } from './proc';
import { LOGIN } from './sshd';
import type { TshUser } from './users';

export const ROOT = 'root.example';
export const LEAF = 'leaf.example';
export const NODE = 'test-auth';
export const TOKEN = 'trusted-cluster-token-0123456789';
/** Leaf roles: what root admins become there. */
export const LEAF_ROLE = `kind: role\nversion: v3\nmetadata:\n  name: leaf-access\nspec:\n  allow:\n    logins: ['{{internal.logins}}']\n    node_labels:\n      '*': '*'\n`;

/**
 * The leaf (auth, proxy and node NODE in one process) trusting the root proxy's self-signed HTTPS
 * certificate, with LEAF_ROLE created (`work` holds its YAML). Gone again when it does not start.
 */
export async function startLeaf(root: TestAuth, work: string): Promise<TestAuth> {
  const leaf = await createAuth({ clusterName: LEAF, proxy: {}, nodePort: await freePort() });
  leaf.start({ ...process.env, NODE_EXTRA_CA_CERTS: selfSignedCertFile(root.dataDir) });
  try {
    await leaf.ready();
    fs.writeFileSync(path.join(work, 'roles.yaml'), LEAF_ROLE);
    await leaf.tctlOk('create', path.join(work, 'roles.yaml'));
  } catch (err) {
    await leaf.cleanup();
    throw err;
  }
  return leaf;
}

/** Restarts the leaf's process (auth, proxy and node) as startLeaf started it: its proxy dials the root anew. */
export async function restartLeaf(root: TestAuth, leaf: TestAuth): Promise<void> {
  await leaf.stop();
  leaf.start({ ...process.env, NODE_EXTRA_CA_CERTS: selfSignedCertFile(root.dataDir) });
  await leaf.ready();
}

/** The leaf's trusted_cluster resource for `root`, root admins mapped to leaf-access. */
export function trustedCluster(root: TestAuth, o: { name?: string; token?: string; enabled?: boolean } = {}): string {
  return [
    'kind: trusted_cluster',
    'version: v2',
    'metadata:',
    `  name: ${o.name ?? ROOT}`,
    'spec:',
    `  enabled: ${o.enabled ?? true}`,
    `  token: ${o.token ?? TOKEN}`,
    `  web_proxy_addr: 127.0.0.1:${root.proxyPorts!.web}`,
    `  tunnel_addr: 127.0.0.1:${root.proxyPorts!.tunnel}`,
    '  role_map:',
    '    - remote: admin',
    '      local: [leaf-access]',
    '',
  ].join('\n');
}

/** Stock ssh straight to the leaf node's port (no proxy in front: the node decides alone) with a root user's tsh key. */
export function directToLeafNode(leaf: TestAuth, user: TshUser, command: string): Promise<RunResult> {
  const key = path.join(user.home, '.tsh', 'keys', '127.0.0.1', user.name);
  return run('ssh', [
    '-F', '/dev/null', '-i', key, '-o', `CertificateFile=${key}-cert.pub`, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
    '-o', `UserKnownHostsFile=${path.join(user.home, '.tsh', 'known_hosts')}`, '-o', 'StrictHostKeyChecking=yes',
    '-o', `HostKeyAlias=${NODE}.${LEAF}`, '-o', 'LogLevel=ERROR', '-p', String(leaf.nodePort), `${LOGIN}@127.0.0.1`, command,
  ]);
}
