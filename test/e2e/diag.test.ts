/**
 * The diagnostics endpoint of real `teleport start` processes: `/healthz`, `/readyz` following
 * the services' dependencies (a node whose auth server is paused, then up, then stopped, then
 * back; a proxy whose auth server stops and comes back; an auth server whose etcd stops and
 * comes back), and `/metrics` read with a Prometheus text-format parser, whose counters move when a
 * user logs in, fails to, and runs a session.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createAuth, startAuth, startCluster, TestAuth, TestNode } from '../helpers/cluster';
import { EtcdServer } from '../helpers/etcd';
import { promtoolCheck, readyz, scrape } from '../helpers/metrics';
import { cliPath, Daemon, freePort, tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';

describe('diagnostics endpoint of an all-in-one process (teleport.diag_addr)', () => {
  let c: TestAuth;
  let alice: TshUser;

  beforeAll(async () => {
    c = await startCluster({ proxy: { insecureNoTls: true }, diag: true });
    alice = await TshUser.signUp(c, 'alice', [LOGIN]);
  });
  afterAll(async () => {
    await c?.cleanup();
    alice?.cleanup();
  });

  it('GIVEN a running process WHEN /healthz is asked THEN it answers 200 ok; other paths are 404, other methods 405', async () => {
    // WHEN
    const health = await fetch(`${c.diagUrl}/healthz`);
    // THEN
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    expect((await fetch(`${c.diagUrl}/debug/pprof`)).status).toBe(404);
    expect((await fetch(`${c.diagUrl}/healthz`, { method: 'POST' })).status).toBe(405);
  });

  it('GIVEN auth, node and proxy up WHEN /readyz is asked THEN it answers 200 naming every check of the three services', async () => {
    // WHEN
    const r = await waitFor('/readyz to answer 200', async () => {
      const got = await readyz(c.diagUrl);
      return got?.status === 200 ? got : undefined;
    });
    // THEN
    expect(r.body.status).toBe('ok');
    const names = r.body.checks.map((ch) => ch.name);
    for (const part of [/^auth backend: /, /^auth CA: /, /^auth API: TCP 127\.0\.0\.1:/, /^node joined: /, /^node heartbeat: /, /^proxy auth server: /, /^proxy SSH: /, /^proxy web: /]) {
      expect(names.some((n) => part.test(n))).toBe(true);
    }
    expect(r.body.checks.every((ch) => ch.status === 'ok')).toBe(true);
    // AND the readiness gauge of /metrics is the same decision
    expect((await scrape(c.diagUrl)).value('teleport_ready')).toBe(1);
  });

  it('GIVEN the public web listener WHEN /metrics or /healthz is asked there THEN it serves neither (only the diagnostics address does)', async () => {
    // WHEN
    const metrics = await fetch(`${c.webUrl()}/metrics`);
    const health = await fetch(`${c.webUrl()}/healthz`);
    // THEN
    expect(metrics.status).toBe(404);
    expect(await metrics.text()).not.toMatch(/^# TYPE /m);
    expect(health.status).toBe(404);
  });

  it("GIVEN /metrics WHEN Prometheus's promtool checks it THEN it parses, and its only lint remarks are gauges named _total by Teleport and prom-client", async () => {
    // GIVEN
    const m = await scrape(c.diagUrl);
    // WHEN
    const check = await promtoolCheck(m.text);
    // THEN (exit code 1 would be a parse error; 3 is lint remarks only)
    const totalGauges = [
      // Teleport's names
      'backend_watcher_queues_total',
      'proxy_ssh_sessions_total',
      'server_interactive_sessions_total',
      // prom-client's default process metrics
      'nodejs_active_handles_total',
      'nodejs_active_requests_total',
      'nodejs_active_resources_total',
    ];
    expect(check.problems.sort()).toEqual(totalGauges.sort().map((name) => `${name} non-counter metrics should not have "_total" suffix`));
    expect(check.code).toBe(3);
  });

  it('GIVEN /metrics WHEN parsed as the Prometheus text format THEN it has process metrics, backend latency histograms and the heartbeats received', async () => {
    // WHEN
    const m = await scrape(c.diagUrl);
    // THEN
    expect(m.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(m.family('process_cpu_user_seconds_total').type).toBe('COUNTER');
    expect(m.value('process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(m.family('nodejs_eventloop_lag_seconds').type).toBe('GAUGE');
    const reads = m.family('backend_read_seconds');
    expect(reads.type).toBe('HISTOGRAM');
    expect(Number(reads.metrics[0].buckets!['+Inf'])).toBeGreaterThan(0);
    expect(m.family('backend_write_seconds').type).toBe('HISTOGRAM');
    expect(m.value('backend_read_requests_total', { component: 'backend' })).toBeGreaterThan(0);
    expect(m.value('backend_write_requests_total', { component: 'backend' })).toBeGreaterThan(0);
    expect(m.family('backend_read_requests_failed_total').type).toBe('COUNTER');
    expect(m.value('auth_heartbeats_received_total', { kind: 'node' })).toBeGreaterThan(0);
    expect(m.value('auth_heartbeats_received_total', { kind: 'proxy' })).toBeGreaterThan(0);
    expect(m.family('audit_events_queued').type).toBe('GAUGE');
    expect(m.family('recording_uploads_pending').type).toBe('GAUGE');
    expect(m.family('backend_watcher_queues_total').type).toBe('GAUGE');
  });

  it('GIVEN a user WHEN they fail a login, log in, and run a command on the node THEN failed logins, user certificates and sessions started each move by one', async () => {
    // GIVEN
    const before = await scrape(c.diagUrl);
    // WHEN a login with a wrong password
    const wrong = await alice.tsh(['login', '--proxy', `${c.webUrl()},${c.proxyPorts!.ssh}`, '--insecure', '--user', 'alice'], `not alice's password\n000000\n`);
    expect(wrong.code).not.toBe(0);
    const afterFailure = await scrape(c.diagUrl);
    // THEN
    expect(afterFailure.value('failed_login_attempts_total')).toBe(before.value('failed_login_attempts_total') + 1);
    expect(afterFailure.value('auth_certificates_issued_total', { type: 'user' })).toBe(before.value('auth_certificates_issued_total', { type: 'user' }));

    // WHEN a login that works
    await alice.login();
    const afterLogin = await scrape(c.diagUrl);
    // THEN
    expect(afterLogin.value('auth_certificates_issued_total', { type: 'user' })).toBe(before.value('auth_certificates_issued_total', { type: 'user' }) + 1);
    expect(afterLogin.value('failed_login_attempts_total')).toBe(afterFailure.value('failed_login_attempts_total'));

    // WHEN a session on the node through the proxy
    const r = await alice.tsh(['ssh', 'test-auth', 'echo', 'through the proxy']);
    expect(r.stdout).toBe('through the proxy\n');
    // THEN (the session has ended once tsh has its exit status; the gauges drop when each side sees the close,
    // and the node's audit events of the session reach the auth server)
    const after = await waitFor('the active session gauges and the audit queue to drop back', async () => {
      const m = await scrape(c.diagUrl);
      return m.value('server_interactive_sessions_total') === 0 && m.value('proxy_ssh_sessions_total') === 0 && m.value('audit_events_queued') === 0 ? m : undefined;
    });
    expect(after.value('server_sessions_started_total')).toBe(before.value('server_sessions_started_total') + 1);
    expect(after.value('proxy_ssh_sessions_started_total')).toBe(before.value('proxy_ssh_sessions_started_total') + 1);
    expect(after.family('server_interactive_sessions_total').type).toBe('GAUGE');
  });
});

describe('/readyz of a node follows its auth server (--diag-addr)', () => {
  let auth: TestAuth;
  let node: TestNode;
  let diagUrl: string;
  let authPaused = false;

  const TOKEN = 'node:diag-node-join-token';

  beforeAll(async () => {
    auth = await startAuth({ tokens: [TOKEN] });
    const port = await freePort();
    diagUrl = `http://127.0.0.1:${port}`;
    // A heartbeat every second (half the announce TTL), so that a stopped auth server shows soon.
    node = await TestNode.create(auth, { token: 'diag-node-join-token', caPin: await auth.caPin(), extraArgs: [`--diag-addr=127.0.0.1:${port}`], env: { TELEPORT_ANNOUNCE_TTL: '2' } });
  });
  afterAll(async () => {
    if (authPaused) process.kill(auth.daemon!.child.pid!, 'SIGCONT');
    await node?.cleanup();
    await auth?.cleanup();
  });

  const failing = (r: Awaited<ReturnType<typeof readyz>>) => r?.body.checks.filter((ch) => ch.status === 'failing').map((ch) => ch.name) ?? [];

  it('GIVEN a node started while its auth server does not answer WHEN the auth server answers, stops and comes back THEN /readyz goes 503, 200, 503 naming the heartbeat, 200; /healthz stays 200', async () => {
    // GIVEN the auth server paused: connections are accepted but nothing answers, so the node cannot finish starting
    process.kill(auth.daemon!.child.pid!, 'SIGSTOP');
    authPaused = true;
    node.start();
    const starting = await waitFor('the node to serve /readyz', () => readyz(diagUrl));
    expect(starting.status).toBe(503);
    expect(failing(starting)).toEqual(['teleport: the services have started']);
    expect(starting.body.status).toMatch(/teleport is starting/);
    expect((await fetch(`${diagUrl}/healthz`)).status).toBe(200);

    // WHEN the auth server answers
    process.kill(auth.daemon!.child.pid!, 'SIGCONT');
    authPaused = false;
    // THEN
    const up = await waitFor('/readyz 200', async () => {
      const r = await readyz(diagUrl);
      return r?.status === 200 ? r : undefined;
    });
    expect(up.body.checks.map((ch) => ch.name)).toEqual([expect.stringMatching(/^node joined: host certificate in /), 'node heartbeat: the last announce reached the auth server']);

    // WHEN the auth server stops
    await auth.stop();
    // THEN
    const down = await waitFor('/readyz 503', async () => {
      const r = await readyz(diagUrl);
      return r?.status === 503 ? r : undefined;
    });
    expect(failing(down)).toEqual(['node heartbeat: the last announce reached the auth server']);
    expect(down.body.checks.find((ch) => ch.status === 'failing')!.reason).toMatch(/^the last heartbeat failed: /);
    expect((await fetch(`${diagUrl}/healthz`)).status).toBe(200);

    // WHEN it comes back
    auth.start();
    await auth.ready();
    // THEN
    await waitFor('/readyz 200 again', async () => (await readyz(diagUrl))?.status === 200);
  });
});

describe('/readyz of an auth server follows its backend (etcd)', () => {
  let etcd: EtcdServer;
  let etcdDir: string | undefined;
  let auth: TestAuth;

  beforeAll(async () => {
    etcd = await EtcdServer.start();
    etcdDir = path.dirname(etcd.dataDir);
    auth = await createAuth({ diag: true, teleportExtra: ['storage:', '  type: etcd', '  peers:', `    - ${etcd.url}`] });
    auth.start();
    await auth.ready();
  });
  afterAll(async () => {
    await auth?.cleanup();
    await etcd?.stop();
    // The restarted etcd runs on the first one's data directory, which only the first would remove.
    if (etcdDir) fs.rmSync(etcdDir, { recursive: true, force: true });
  });

  const BACKEND = 'auth backend: the etcd storage answers a read';

  it('GIVEN an auth server on etcd WHEN etcd stops and starts again THEN /readyz goes 200, 503 naming the backend, 200', async () => {
    // GIVEN
    const up = await waitFor('/readyz 200', async () => {
      const r = await readyz(auth.diagUrl);
      return r?.status === 200 ? r : undefined;
    });
    expect(up.body.checks.map((ch) => ch.name)).toContain(BACKEND);

    // WHEN etcd stops
    await etcd.kill();
    // THEN
    const down = await waitFor('/readyz 503', async () => {
      const r = await readyz(auth.diagUrl);
      return r?.status === 503 ? r : undefined;
    });
    expect(down.body.checks.filter((ch) => ch.status === 'failing').map((ch) => ch.name)).toEqual([BACKEND]);
    expect(down.body.status).toMatch(/^auth backend: the etcd storage answers a read: the etcd backend does not answer/);
    expect((await fetch(`${auth.diagUrl}/healthz`)).status).toBe(200);

    // WHEN etcd starts again on its data
    etcd = await EtcdServer.start({ dataDir: etcd.dataDir, clientPort: etcd.clientPort, peerPort: etcd.peerPort });
    // THEN
    await waitFor('/readyz 200 again', async () => (await readyz(auth.diagUrl))?.status === 200, 60_000);
  });
});

describe('/readyz of a proxy follows its auth server', () => {
  let auth: TestAuth;
  let dir: string;
  let proxy: Daemon | undefined;
  let diagUrl: string;

  beforeAll(async () => {
    auth = await startAuth({ tokens: ['proxy:diag-proxy-join-token'] });
    dir = tempDir('diag-proxy-');
    const diagPort = await freePort();
    diagUrl = `http://127.0.0.1:${diagPort}`;
    const config = path.join(dir, 'teleport.yaml');
    const lines = [
      'auth_service:',
      '  enabled: no',
      'ssh_service:',
      '  enabled: no',
      'proxy_service:',
      `  listen_addr: 127.0.0.1:${await freePort()}`,
      `  web_listen_addr: 127.0.0.1:${await freePort()}`,
      `  tunnel_listen_addr: 127.0.0.1:${await freePort()}`,
    ];
    fs.writeFileSync(config, lines.join('\n') + '\n');
    const args = ['start', '--roles=proxy', '-c', config, `--data-dir=${path.join(dir, 'data')}`, `--auth-server=${auth.addr}`];
    proxy = Daemon.spawn(process.execPath, [cliPath('teleport'), ...args, '--token=diag-proxy-join-token', `--ca-pin=${await auth.caPin()}`, `--diag-addr=127.0.0.1:${diagPort}`]);
    await proxy.waitForOutput(/teleport is running/);
  });
  afterAll(async () => {
    await proxy?.stop('SIGKILL');
    await auth?.cleanup();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('GIVEN a proxy in its own process WHEN its auth server stops and comes back THEN /readyz goes 200, 503 naming the auth ping, 200', async () => {
    // GIVEN
    const up = await waitFor('/readyz 200', async () => {
      const r = await readyz(diagUrl);
      return r?.status === 200 ? r : undefined;
    });
    expect(up.body.checks.map((ch) => ch.name)).toEqual([
      `proxy auth server: GET /v1/ping on ${auth.addr}`,
      expect.stringMatching(/^proxy SSH: TCP 127\.0\.0\.1:\d+$/),
      expect.stringMatching(/^proxy web: TCP 127\.0\.0\.1:\d+$/),
      expect.stringMatching(/^proxy reverse tunnel: TCP 127\.0\.0\.1:\d+$/),
    ]);

    // WHEN the auth server stops
    await auth.stop();
    // THEN
    const down = await readyz(diagUrl);
    expect(down?.status).toBe(503);
    expect(down?.body.checks.filter((ch) => ch.status === 'failing').map((ch) => ch.name)).toEqual([`proxy auth server: GET /v1/ping on ${auth.addr}`]);
    expect(down?.body.status).toMatch(/: the auth server does not answer: /);
    // AND the readiness gauge the CloudWatch agent publishes says so too
    expect((await scrape(diagUrl)).value('teleport_ready')).toBe(0);

    // WHEN it comes back
    auth.start();
    await auth.ready();
    // THEN
    await waitFor('/readyz 200 again', async () => (await readyz(diagUrl))?.status === 200);
    expect((await scrape(diagUrl)).value('teleport_ready')).toBe(1);
  });
});
