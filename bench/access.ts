/**
 * Benchmark: what the access decision costs where a connection lands. The
 * proxy and the node each call `checkAccess` once per connection, from their
 * in-memory copy of the users and roles; this measures that call, and the
 * load of a whole copy (what a proxy or node does when a role changes), at a
 * realistic cluster size. The end-to-end session setup through the proxy,
 * check included, is `proxy-ssh`'s setup figure.
 *
 *   npx tsc -p . && node dist/bench/access.js
 *
 * Knobs: BENCH_USERS (default 10000), BENCH_ROLES (200), BENCH_RUNS (100000).
 */
import { performance } from 'node:perf_hooks';
import { parseSnapshot } from '../runtime/auth/access/cache';
import { AccessView, checkAccess } from '../runtime/auth/access/decision';
import type { AccessSnapshot } from '../runtime/auth/access/feed';
import { logger } from '../runtime/utils/logger';
import { newUser, Role, roleSchema, User } from '../runtime/auth/resources';
import { envNumber, fmt, formatTable, quantile } from './common';

const USERS = Math.round(envNumber('BENCH_USERS', 10_000));
const ROLES = Math.round(envNumber('BENCH_ROLES', 200));
const RUNS = Math.round(envNumber('BENCH_RUNS', 100_000));

function roleAt(i: number): Role {
  return roleSchema.parse({
    kind: 'role',
    version: 'v3',
    metadata: { name: `role-${i}` },
    spec: {
      allow: { logins: ['{{internal.logins}}', `svc-${i}`], node_labels: { env: ['prod', 'staging'], team: `team-${i % 20}` } },
      deny: { logins: ['root'], node_labels: { quarantine: 'yes' } },
    },
  });
}

const roles = Array.from({ length: ROLES }, (_, i) => roleAt(i));
const users = new Map<string, User>();
for (let i = 0; i < USERS; i++) {
  const mine = [0, 1, 2].map((k) => `role-${(i + k * 7) % ROLES}`);
  users.set(`user-${i}`, newUser(`user-${i}`, mine, [`user${i}`, 'deploy'], 'bench'));
}
const byName = new Map(roles.map((r) => [r.metadata.name, r]));
const view: AccessView = { user: (n) => users.get(n), role: (n) => byName.get(n), trustedCluster: () => undefined };

const samples: number[] = [];
let allowed = 0;
for (let i = 0; i < RUNS; i++) {
  const u = `user-${i % USERS}`;
  const user = users.get(u)!;
  const t0 = performance.now();
  const d = checkAccess(view, { user: u, certRoles: user.spec.roles, login: i % 3 ? 'deploy' : 'root', node: { name: 'web-1', labels: { env: 'prod', team: `team-${i % 20}`, arch: 'x86_64' } } });
  samples.push((performance.now() - t0) * 1000);
  if (d.allowed) allowed++;
}

// What a proxy or node does with each change: parse the whole snapshot.
const snapshot = JSON.stringify({
  version: 'bench.1',
  user_ca_keys: [],
  roles,
  users: [...users.values()].map((u) => ({ name: u.metadata.name, roles: u.spec.roles, traits: u.spec.traits })),
});
const loads: number[] = [];
for (let i = 0; i < 20; i++) {
  const t0 = performance.now();
  parseSnapshot(JSON.parse(snapshot) as AccessSnapshot, logger('bench'));
  loads.push(performance.now() - t0);
}

process.stdout.write(
  formatTable([
    ['figure', 'p50', 'p99', 'max'],
    [`checkAccess (µs), ${USERS} users, ${ROLES} roles`, fmt(quantile(samples, 0.5), 2), fmt(quantile(samples, 0.99), 2), fmt(Math.max(...samples), 1)],
    [`snapshot parse (ms), ${(snapshot.length / 1024 / 1024).toFixed(1)} MiB`, fmt(quantile(loads, 0.5)), fmt(quantile(loads, 0.99)), fmt(Math.max(...loads))],
  ]) + '\n',
);
process.stdout.write(JSON.stringify({ users: USERS, roles: ROLES, runs: RUNS, allowed, checkUsP50: quantile(samples, 0.5), checkUsP99: quantile(samples, 0.99), snapshotMs: quantile(loads, 0.5) }) + '\n');
