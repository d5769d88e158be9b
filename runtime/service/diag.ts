/**
 * The diagnostics endpoint (`--diag-addr`, `teleport.diag_addr`), plain HTTP as in Teleport:
 * `GET /healthz` answers 200 while the process runs; `GET /readyz` answers 200 when every
 * readiness check of the services it runs holds and 503 naming the ones that do not (the one
 * readiness decision of runtime/instance/readiness.ts); `GET /metrics` is the process's
 * registry (metrics.ts) in the Prometheus text format, whose `teleport_ready` gauge is that same
 * decision (1 when `/readyz` would answer 200). Off unless asked for, and never on a
 * service's port (checkPorts refuses it).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { formatAddr, type HostPort } from '../config';
import { unreadyChecks, type ReadinessCheck, type Unready } from '../instance/readiness';
import type { Logger } from '../utils/logger';
import { limitBeforeRequest } from './httplimits';
import { listen } from './listen';
import { collectProcessMetrics, ready, registry } from './metrics';

/** The check that holds once every service of the process has started. */
const STARTING: ReadinessCheck = { name: 'teleport: the services have started', probe: async () => 'teleport is starting' };

export interface DiagServer {
  /** Where it listens (the real port when 0 was asked for). */
  readonly address: HostPort;
  /** The checks `/readyz` makes from now on (the services' own, once they run). */
  setReadiness(checks: readonly ReadinessCheck[]): void;
  close(): Promise<void>;
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/** Serves the diagnostics endpoint on `addr`; `/readyz` answers 503 until {@link DiagServer.setReadiness}. */
export async function startDiagServer(addr: HostPort, log: Logger): Promise<DiagServer> {
  collectProcessMetrics();
  let checks: readonly ReadinessCheck[] = [STARTING];
  // Requests that come while the checks are being probed share that round: a burst of /readyz
  // makes one round of backend reads and auth pings, not one per request.
  let round: { checks: readonly ReadinessCheck[]; unready: Promise<Unready[]> } | undefined;
  const probe = (): { checks: readonly ReadinessCheck[]; unready: Promise<Unready[]> } => {
    if (round && round.checks === checks) return round;
    const current = { checks, unready: unreadyChecks(checks) };
    round = current;
    void current.unready.finally(() => {
      if (round === current) round = undefined;
    });
    return current;
  };
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(res, 405, { status: `method ${req.method ?? ''} not allowed` });
    }
    switch (path) {
      case '/healthz':
        return send(res, 200, { status: 'ok' });
      case '/readyz': {
        const { checks: now, unready: probing } = probe();
        const unready = await probing;
        const failing = new Map(unready.map((u) => [u.check, u.reason]));
        const results = now.map((c) => ({ name: c.name, status: failing.has(c.name) ? 'failing' : 'ok', ...(failing.has(c.name) ? { reason: failing.get(c.name) } : {}) }));
        const status = unready.length ? unready.map((u) => `${u.check}: ${u.reason}`).join('; ') : 'ok';
        return send(res, unready.length ? 503 : 200, { status, checks: results });
      }
      case '/metrics': {
        const text = await registry.metrics();
        res.writeHead(200, { 'content-type': registry.contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
        return void res.end(text);
      }
      default:
        return send(res, 404, { status: 'not found: the diagnostics endpoint serves /healthz, /readyz and /metrics' });
    }
  };
  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      log.warn('diagnostics request failed', { path: (req.url ?? '').slice(0, 100), error: err.message });
      if (!res.headersSent) send(res, 500, { status: 'internal error' });
      else res.destroy();
    });
  });
  limitBeforeRequest(server, false);
  await listen(server, addr, 'diag');
  const untrack = ready.track(async () => ((await probe().unready).length === 0 ? 1 : 0));
  const address = { host: addr.host, port: (server.address() as AddressInfo).port };
  log.info('diagnostics endpoint is listening', { addr: `http://${formatAddr(address)}` });
  return {
    address,
    setReadiness: (next) => (checks = [...next]),
    close: () =>
      new Promise<void>((resolve) => {
        untrack();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
