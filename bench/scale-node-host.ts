/**
 * A child process of bench/scale.ts, forked with an IPC channel: simulates
 * many nodes against one auth server with the node's own code. Each node
 * joins with the token (runtime/auth/register.ts `register`, as `teleport
 * start` does), then does what a node does with the auth service, with the
 * same classes runtime/node/service.ts uses: one AuthClient with its host
 * identity, the cluster configuration, the access data (AccessCache: users,
 * roles, CA keys, kept current by long polls) and its heartbeats
 * (service/heartbeat.ts Heartbeat, at the real announce period). The SSH
 * server itself is left out: it does not talk to the auth service while no
 * one logs in. The process exits when its parent goes away (the IPC channel closes).
 *
 * Protocol: the child sends `{ loaded: true }`; the parent sends one
 * ScaleHostInit; the child then sends a ScaleHostReport every REPORT_MS.
 */
import * as net from 'node:net';
import { randomUUID } from 'node:crypto';
import { AuthClient, HostPort } from '../runtime/auth/client';
import { register } from '../runtime/auth/register';
import { AccessCache } from '../runtime/auth/access/cache';
import { announceTtlMs } from '../runtime/auth/presence';
import { Server } from '../runtime/auth/resources';
import { ClusterConfig } from '../runtime/auth/server';
import { Heartbeat } from '../runtime/service/heartbeat';
import { isReason } from '../runtime/utils/errors';
import { logger, setLogLevel } from '../runtime/utils/logger';
import { VERSION } from '../runtime/version';

export interface ScaleHostInit {
  /** The auth servers: node i of the run (this process's first is number `authOffset`) uses auths[i % auths.length]. */
  auths: HostPort[];
  authOffset: number;
  token: string;
  caPin: string;
  /** How many nodes this process runs; their names start with `prefix`. */
  nodes: number;
  prefix: string;
  /** Joins in flight at a time (a fleet that boots together). */
  joinConcurrency: number;
  /** Loopback source addresses the joins come from, in turn (one: a fleet behind one NAT address). */
  joinFrom: string[];
}

export interface ScaleHostReport {
  loaded?: boolean;
  joined: number;
  /** Join attempts the auth server refused with limit_exceeded (each retried after a second). */
  refused: number;
  /** Nodes whose last heartbeat failed. */
  failing: number;
  /** Other join errors, the first few. */
  errors: string[];
}

const REPORT_MS = 500;

async function main(): Promise<void> {
  setLogLevel('error');
  const log = logger('bench:node');
  const report: ScaleHostReport = { joined: 0, refused: 0, failing: 0, errors: [] };
  const heartbeats: Heartbeat[] = [];
  const stoppers: (() => void)[] = [];
  process.on('disconnect', () => {
    for (const s of stoppers) s();
    process.exit(0);
  });
  const init = await new Promise<ScaleHostInit>((resolve) => {
    process.once('message', (m: ScaleHostInit) => resolve(m));
    process.send?.({ ...report, loaded: true });
  });
  setInterval(() => {
    void Promise.all(heartbeats.map((h) => h.readiness('').probe())).then((problems) => {
      report.failing = problems.filter(Boolean).length;
      process.send?.(report);
    });
  }, REPORT_MS);

  const runNode = async (i: number) => {
    const hostUUID = randomUUID();
    const from = init.joinFrom[i % init.joinFrom.length];
    const auth = init.auths[(init.authOffset + i) % init.auths.length];
    let identity;
    for (;;) {
      try {
        identity = await register({
          servers: [auth],
          token: init.token,
          caPins: [init.caPin],
          role: 'Node',
          hostUUID,
          nodeName: `${init.prefix}-${i}`,
          additionalPrincipals: [],
          dnsNames: [],
          log,
          connect: (s) => connectFrom(s, from),
        });
        break;
      } catch (err) {
        if (!isReason(err, 'limit_exceeded')) {
          if (report.errors.length < 5) report.errors.push((err as Error).message);
          throw err;
        }
        report.refused++;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    report.joined++;
    // From here on, what runtime/node/service.ts does with the auth service.
    const client = new AuthClient({ servers: [auth], credentials: { key: identity.tlsKey, cert: identity.tlsCert, ca: identity.tlsCACerts } });
    stoppers.push(() => client.close());
    await client.get<ClusterConfig>('/v1/configuration/cluster');
    const access = new AccessCache(client, log);
    stoppers.push(() => access.stop());
    await access.start();
    const record = (): Server => ({
      kind: 'node',
      version: 'v2',
      metadata: { name: hostUUID, namespace: 'default', labels: { bench: 'scale' } },
      spec: { addr: `127.0.0.1:${3022}`, hostname: `${init.prefix}-${i}`, cmd_labels: {}, version: VERSION },
    });
    const heartbeat = new Heartbeat(client, record, announceTtlMs(), log);
    heartbeats.push(heartbeat);
    stoppers.push(() => heartbeat.stop());
    await heartbeat.start();
  };

  let next = 0;
  const worker = async () => {
    while (next < init.nodes) await runNode(next++).catch(() => undefined);
  };
  await Promise.all(Array.from({ length: Math.min(init.joinConcurrency, init.nodes) }, worker));
}

/** A TCP connection to `server` from the loopback address `from`. */
function connectFrom(server: HostPort, from: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: server.host, port: server.port, localAddress: from });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

void main();
