/**
 * Whether this instance's role is healthy as its load balancer's health checks judge it (the
 * target groups of lib/: TCP to auth 3025 and proxy SSH 3023, HTTPS `GET /webapi/ping` answering
 * 200 on the proxy's web port, whose certificate is the instance's own and not verified), plus,
 * for a node, which no load balancer checks, that it has joined the cluster. Each check probes
 * once and says why it is not ready; `teleport signal-ready` polls them. Addresses come from
 * {@link ReadinessTargets} (the CLI passes this instance's loopback and the role's real ports).
 */
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';
import type { InstanceRole } from '../contract/aws';
import { Ports } from '../contract/ports';

/** Where the checks look. */
export interface ReadinessTargets {
  /** The address the role's listeners are reached on (this instance's loopback). */
  readonly host: string;
  readonly ports: { readonly auth: number; readonly node: number; readonly proxySsh: number; readonly web: number };
  /** teleport's data dir, where a node keeps the identity it was issued when it joined. */
  readonly dataDir: string;
  /** How long one probe may take before it counts as not ready. @default 3000 */
  readonly probeTimeoutMs?: number;
}

/** How long one probe may take before it counts as not ready, unless told otherwise. */
export const READINESS_PROBE_MS = 3000;

/** This instance's listeners on their real ports (runtime/contract/ports.ts). */
export function localTargets(dataDir: string): ReadinessTargets {
  return { host: '127.0.0.1', ports: { auth: Ports.auth, node: Ports.node, proxySsh: Ports.proxySsh, web: Ports.web }, dataDir };
}

/** One thing that must hold before the instance counts as healthy. */
export interface ReadinessCheck {
  /** What is checked, with where: `auth API: TCP 127.0.0.1:3025`. */
  readonly name: string;
  /** Resolves to undefined when ready, else to why not (never rejects). */
  probe(): Promise<string | undefined>;
}

/** A check that does not hold, with why. */
export interface Unready {
  readonly check: string;
  readonly reason: string;
}

/**
 * Probes every check once, together: what does not hold, in the checks' order (empty when
 * everything does). The one readiness decision: `teleport signal-ready` and the diagnostics
 * endpoint's `/readyz` both take it.
 */
export async function unreadyChecks(checks: readonly ReadinessCheck[]): Promise<Unready[]> {
  const results = await Promise.all(
    checks.map(async (c) => ({ check: c.name, reason: await c.probe().catch((err: Error) => `cannot check: ${err.message}`) })),
  );
  return results.filter((r): r is Unready => r.reason !== undefined);
}

/**
 * Undefined when `call` settles within `timeoutMs`, resolving or failing with an error that
 * `isAnswer` accepts (a missing key is an answer); else why `what` is not ready.
 */
export function answers(what: string, call: () => Promise<unknown>, timeoutMs: number, isAnswer: (err: unknown) => boolean = () => false): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`${what} does not answer within ${timeoutMs} ms`), timeoutMs)));
  const answered = call().then(
    () => undefined,
    (err: Error) => (isAnswer(err) ? undefined : `${what} does not answer: ${err.message}`),
  );
  return Promise.race([answered, late]).finally(() => clearTimeout(timer));
}

/** The web API path the proxy target groups' HTTPS health check requests (lib/proxy-tier.ts). */
export const PING_PATH = '/webapi/ping';

/** The checks of `role`; `auth,node,proxy` has every role's. */
export function readinessChecks(role: InstanceRole, t: ReadinessTargets): ReadinessCheck[] {
  const timeoutMs = t.probeTimeoutMs ?? READINESS_PROBE_MS;
  const hostPort = (port: number) => (t.host.includes(':') ? `[${t.host}]:${port}` : `${t.host}:${port}`);
  const tcp = (what: string, port: number): ReadinessCheck => ({
    name: `${what}: TCP ${hostPort(port)}`,
    probe: () => tcpAccepts(t.host, port, timeoutMs),
  });
  const roles = role.split(',');
  const checks: ReadinessCheck[] = [];
  if (roles.includes('auth')) checks.push(tcp('auth API', t.ports.auth));
  if (roles.includes('proxy')) {
    checks.push({ name: `proxy web: GET https://${hostPort(t.ports.web)}${PING_PATH}`, probe: () => httpsAnswers200(t.host, t.ports.web, PING_PATH, timeoutMs) });
    checks.push(tcp('proxy SSH', t.ports.proxySsh));
  }
  if (roles.includes('node')) {
    checks.push(tcp('node SSH', t.ports.node));
    const file = nodeIdentityFile(t.dataDir);
    checks.push({ name: `node joined: host certificate in ${file}`, probe: () => nodeJoined(file) });
  }
  return checks;
}

/** Undefined when a TCP connection to host:port is accepted. */
export function tcpAccepts(host: string, port: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (reason: string | undefined) => {
      socket.destroy();
      resolve(reason);
    };
    socket.setTimeout(timeoutMs, () => done(`no answer within ${timeoutMs} ms`));
    socket.once('connect', () => done(undefined));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'connection refused, nothing listens yet' : err.message));
  });
}

/**
 * Undefined when `GET https://host:port/path` answers 200. The certificate is not verified, as a
 * load balancer's HTTPS health check does not verify its target's (here the instance's own).
 */
export function httpsAnswers200(host: string, port: number, urlPath: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (reason: string | undefined) => {
      if (settled) return;
      settled = true;
      req.destroy();
      resolve(reason);
    };
    const req = https.get({ host, port, path: urlPath, rejectUnauthorized: false, agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      done(res.statusCode === 200 ? undefined : `answered HTTP ${res.statusCode ?? '(no status)'}, not 200`);
    });
    req.on('timeout', () => done(`no answer within ${timeoutMs} ms`));
    req.on('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'connection refused, nothing listens yet' : err.message));
  });
}

/**
 * The node's own storage, `<data_dir>/proc/sqlite.db` (runtime/service/datadir.ts). A node writes
 * its identity there, under `/ids/node/current`, only once it holds a host certificate: right
 * after the join (or, in an all-in-one, after its local auth service issued it). The token and
 * CA pin files, host_uuid and the database file itself all exist before that, so none of them
 * says the node joined.
 */
export function nodeIdentityFile(dataDir: string): string {
  return path.join(dataDir, 'proc', 'sqlite.db');
}

/** Undefined when `file` holds a node identity whose SSH host certificate is valid now. */
export async function nodeJoined(file: string, now: Date = new Date()): Promise<string | undefined> {
  // Loaded here: the native SQLite module is needed only on instances that run a node.
  const { peekSqliteItem } = await import('../backend/sqlite');
  const { decodeIdentity, identityKey } = await import('../auth/identity');
  const { parseCertificate } = await import('../sshcert');
  let raw: Buffer | undefined;
  try {
    raw = peekSqliteItem(file, identityKey('Node'), now.getTime());
  } catch (err) {
    return (err as Error).message;
  }
  if (raw === undefined) return 'the node has not joined yet, no node identity is stored';
  try {
    const cert = parseCertificate(decodeIdentity(raw).sshCert);
    const secs = BigInt(Math.floor(now.getTime() / 1000));
    if (cert.certType !== 'host') return `the stored node identity holds a ${cert.certType} certificate, not a host certificate`;
    if (secs < cert.validAfter) return `the node's host certificate is not valid before ${new Date(Number(cert.validAfter) * 1000).toISOString()}`;
    if (secs >= cert.validBefore) return `the node's host certificate expired at ${new Date(Number(cert.validBefore) * 1000).toISOString()}`;
    return undefined;
  } catch (err) {
    return `the stored node identity cannot be read: ${(err as Error).message}`;
  }
}
