/**
 * `teleport signal-ready` (runtime/instance/signal.ts, readiness.ts): an AMI instance waits until
 * its role is healthy as its load balancer judges it, and until its target groups report it
 * healthy, then signals CloudFormation. The real AWS SDK talks to local imitations of
 * CloudFormation's SignalResource and Elastic Load Balancing's DescribeTargetHealth (both in the
 * query protocol) and of IMDSv2;
 * local listeners on free ports stand in for the role's (the CLI checks the real 3025, 3080, 3023
 * and 3022, which other tests may use).
 */
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';
import { IdentityStore, type Identity } from '../../../runtime/auth/identity';
import { MemoryBackend } from '../../../runtime/backend/memory';
import { SqliteBackend } from '../../../runtime/backend/sqlite';
import { FileAuditLog } from '../../../runtime/events/filelog';
import { readInstanceFacts } from '../../../runtime/instance/imds';
import { localTargets, nodeIdentityFile, nodeJoined, readinessChecks, type ReadinessTargets } from '../../../runtime/instance/readiness';
import {
  cloudFormationClient,
  loadBalancingClient,
  RoleNotReadyError,
  sendSignal,
  signalReady,
  TargetHealthUncheckableError,
  waitUntilReady,
  type SignalTarget,
  type Unready,
} from '../../../runtime/instance/signal';
import { formatAuthorizedKey, generateKeyPair, publicKeyBlob, signHostCert } from '../../../runtime/sshcert';
import { selfSignedServerCert } from '../../../runtime/tlsca';
import { AccessDeniedError, BadParameterError, ConnectionProblemError } from '../../../runtime/utils/errors';
import { initTestAuthServer } from '../../helpers/authserver';
import {
  startCloudFormation,
  startImds,
  startLoadBalancing,
  TargetHealths,
  type CloudFormationImitation,
  type Imitation,
  type LoadBalancingImitation,
} from '../../helpers/ec2-imitations';
import { freePort, runCli, tempDir, waitFor } from '../../helpers/proc';

const INSTANCE_ID = 'i-0123456789abcdef0';
const META = {
  'local-ipv4': '10.0.1.17',
  'local-hostname': 'ip-10-0-1-17.eu-west-1.compute.internal',
  'instance-id': INSTANCE_ID,
  'instance-type': 't3.small',
  'placement/availability-zone': 'eu-west-1a',
};
const SIGNAL = { signal: { stack: 'Teleport-acme', resource: 'AuthAutoScalingGroup1A2B3C4D', targetGroups: [] } };
const TARGET: SignalTarget = { stack: SIGNAL.signal.stack, resource: SIGNAL.signal.resource, instanceId: INSTANCE_ID };
const FAST = { attempts: 3, initialDelayMs: 1, maxDelayMs: 5 };
const CREDENTIALS = { accessKeyId: 'AKIDSIGNALTEST', secretAccessKey: 'signal-test-secret' };

let imds: Imitation;
let cfn: CloudFormationImitation;
let elb: LoadBalancingImitation;
let dir: string;
/** Servers a test opened; closed after it. */
let servers: (net.Server | https.Server)[] = [];
/** A node identity issued by a real auth server (its CA made once: it is slow). */
let nodeIdentity: Identity;
let proxyIdentity: Identity;

beforeAll(async () => {
  imds = await startImds(META);
  const authDir = tempDir('signal-auth-');
  const backend = new MemoryBackend({ sweepPeriodMs: 0 });
  const audit = new FileAuditLog(authDir);
  try {
    const auth = await initTestAuthServer({ backend, audit, clusterName: 'acme' });
    try {
      nodeIdentity = await auth.localIdentity('Node', ['10.0.1.17'], []);
      proxyIdentity = await auth.localIdentity('Proxy', ['10.0.1.17'], []);
    } finally {
      await auth.close();
    }
  } finally {
    await backend.close();
    await audit.close();
    fs.rmSync(authDir, { recursive: true, force: true });
  }
});
afterAll(() => imds.close());
beforeEach(async () => {
  cfn = await startCloudFormation();
  elb = await startLoadBalancing();
  dir = tempDir('signal-');
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => ((s as net.Server & { closeAllConnections?: () => void }).closeAllConnections?.(), s.close(() => r())))));
  await cfn.close();
  await elb.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Free ports for every listener of a role, and the test's data dir. */
async function targets(): Promise<ReadinessTargets> {
  return { host: '127.0.0.1', ports: { auth: await freePort(), node: await freePort(), proxySsh: await freePort(), web: await freePort() }, dataDir: dir, probeTimeoutMs: 2000 };
}

/** A TCP listener on `port` (a role's port coming up). */
async function listenTcp(port: number): Promise<void> {
  const srv = net.createServer((s) => s.destroy());
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
}

/** The proxy's web listener with a self-signed certificate; `/webapi/ping` answers `status.code`. */
async function listenWeb(port: number, status: { code: number }): Promise<void> {
  const { cert, key } = await selfSignedServerCert(['localhost']);
  const srv = https.createServer({ cert, key }, (req, res) => {
    res.writeHead(req.url === '/webapi/ping' ? status.code : 404, { 'content-type': 'application/json' }).end('{}');
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
}

/** The node's storage as `teleport start` opens it (before the join), optionally holding an identity. */
async function nodeStorage(...ids: Identity[]): Promise<SqliteBackend> {
  const proc = await SqliteBackend.open({ path: nodeIdentityFile(dir) });
  for (const id of ids) await new IdentityStore(proc).save(id);
  return proc;
}

const instanceId = async () => (await readInstanceFacts({ endpoint: imds.url, retries: 0 })).instanceId!;
const client = (endpoint = cfn.url) => () => cloudFormationClient('eu-west-1', { endpoint, credentials: CREDENTIALS });
const lb = () => () => loadBalancingClient('eu-west-1', { endpoint: elb.url, credentials: CREDENTIALS });

describe('readiness checks, as the load balancers judge the role', () => {
  test('GIVEN each role WHEN its checks are listed THEN they are its load balancer checks (plus the join for a node), on the real ports by default', () => {
    // GIVEN the real targets
    const t = localTargets('/var/lib/teleport');
    // WHEN / THEN
    const names = (role: Parameters<typeof readinessChecks>[0]) => readinessChecks(role, t).map((c) => c.name);
    expect(names('auth')).toEqual(['auth API: TCP 127.0.0.1:3025']);
    expect(names('proxy')).toEqual(['proxy web: GET https://127.0.0.1:3080/webapi/ping', 'proxy SSH: TCP 127.0.0.1:3023']);
    expect(names('node')).toEqual(['node SSH: TCP 127.0.0.1:3022', 'node joined: host certificate in /var/lib/teleport/proc/sqlite.db']);
    expect(names('auth,node,proxy')).toEqual([...names('auth'), ...names('proxy'), ...names('node')]);
  });

  test('GIVEN a node storage WHEN the node has not joined, has joined, has stopped, or holds only a proxy identity THEN only a valid node host certificate counts', async () => {
    const file = nodeIdentityFile(dir);
    // GIVEN no storage yet THEN not joined
    expect(await nodeJoined(file)).toBe('the node has not joined yet, no node identity is stored');
    // GIVEN the storage opened by teleport start, holding only a proxy identity (an all-in-one's other service)
    const proc = await nodeStorage(proxyIdentity);
    try {
      expect(await nodeJoined(file)).toBe('the node has not joined yet, no node identity is stored');
      // WHEN the join stores the node identity while the node holds the database open (WAL) THEN joined
      await new IdentityStore(proc).save(nodeIdentity);
      expect(await nodeJoined(file)).toBeUndefined();
    } finally {
      await proc.close();
    }
    // WHEN the node has stopped THEN still joined; and the check wrote nothing the node stores
    expect(await nodeJoined(file)).toBeUndefined();
    const reopened = await SqliteBackend.open({ path: file });
    try {
      expect((await new IdentityStore(reopened).load('Node')).sshCert).toBe(nodeIdentity.sshCert);
    } finally {
      await reopened.close();
    }
    // GIVEN a host certificate as the auth server issues it (no expiry) THEN it stays valid
    const inTwoHours = new Date(Date.now() + 2 * 3600_000);
    expect(await nodeJoined(file, inTwoHours)).toBeUndefined();
    // GIVEN one valid for an hour WHEN two hours have passed THEN not ready, saying so
    const ca = generateKeyPair('ed25519');
    const host = generateKeyPair('ed25519');
    const hourLong = signHostCert({ caPrivateKey: ca.privateKey, publicKey: publicKeyBlob(host.publicKey), hostUUID: 'host-1', clusterName: 'acme', role: 'Node', ttlMs: 3600_000 });
    const again = await SqliteBackend.open({ path: file });
    try {
      await new IdentityStore(again).save({ ...nodeIdentity, sshCert: formatAuthorizedKey(hourLong) });
    } finally {
      await again.close();
    }
    expect(await nodeJoined(file)).toBeUndefined();
    expect(await nodeJoined(file, inTwoHours)).toMatch(/^the node's host certificate expired at \d{4}-\d\d-\d\dT/);
  });

  test('GIVEN an all-in-one with every listener up and the node joined WHEN waited on THEN it is ready at the first round', async () => {
    // GIVEN
    const t = await targets();
    await Promise.all([listenTcp(t.ports.auth), listenTcp(t.ports.proxySsh), listenTcp(t.ports.node), listenWeb(t.ports.web, { code: 200 })]);
    const proc = await nodeStorage(nodeIdentity);
    try {
      // WHEN
      const rounds: Unready[][] = [];
      const unready = await waitUntilReady(readinessChecks('auth,node,proxy', t), { timeoutMs: 10_000, pollMs: 20, onPoll: (u) => rounds.push(u) });
      // THEN
      expect(unready).toEqual([]);
      expect(rounds).toEqual([[]]);
    } finally {
      await proc.close();
    }
  });
});

describe('signalReady', () => {
  test('GIVEN an auth instance whose port is not open yet WHEN it waits THEN nothing is signalled until the listener appears, then SUCCESS with the instance id', async () => {
    // GIVEN
    const t = await targets();
    const rounds: Unready[][] = [];
    // WHEN
    const result = signalReady({ conf: SIGNAL, checks: readinessChecks('auth', t), instanceId, cloudFormation: client(), loadBalancing: lb(), timeoutMs: 60_000, pollMs: 20, onPoll: (u) => rounds.push(u) });
    await waitFor('two rounds of probes finding the auth port closed', () => rounds.length >= 2);
    // THEN not ready, and no signal yet
    expect(rounds[0]).toEqual([{ check: `auth API: TCP 127.0.0.1:${t.ports.auth}`, reason: 'connection refused, nothing listens yet' }]);
    expect(cfn.requests).toEqual([]);
    // WHEN the auth service starts listening THEN SUCCESS is signalled for this instance
    await listenTcp(t.ports.auth);
    expect(await result).toEqual({ signalled: true, target: TARGET, outcome: { delivered: true } });
    expect(cfn.signals).toEqual([{ StackName: 'Teleport-acme', LogicalResourceId: 'AuthAutoScalingGroup1A2B3C4D', UniqueId: INSTANCE_ID, Status: 'SUCCESS' }]);
    expect(imds.requests).toContain('GET /latest/meta-data/instance-id');
  });

  test('GIVEN a conf without a stack to signal WHEN run THEN nothing is asked of IMDS or CloudFormation', async () => {
    const asked: string[] = [];
    const r = await signalReady({
      conf: {},
      checks: readinessChecks('auth', await targets()),
      instanceId: async () => (asked.push('imds'), INSTANCE_ID),
      cloudFormation: () => (asked.push('cloudformation'), client()()),
      loadBalancing: () => (asked.push('elb'), lb()()),
      timeoutMs: 0,
    });
    expect(r).toEqual({ signalled: false, reason: expect.stringContaining('no TELEPORT_CFN_STACK') });
    expect(asked).toEqual([]);
    expect(cfn.requests).toEqual([]);
  });

  test('GIVEN a node that listens but never joins WHEN the timeout passes THEN FAILURE is signalled and the error names the unready check only', async () => {
    // GIVEN the node's SSH port is up, but no identity is stored
    const t = await targets();
    await listenTcp(t.ports.node);
    // WHEN
    const run = signalReady({ conf: SIGNAL, checks: readinessChecks('node', t), instanceId, cloudFormation: client(), loadBalancing: lb(), timeoutMs: 200, pollMs: 20, retry: FAST });
    // THEN
    const err = (await run.catch((e: unknown) => e)) as RoleNotReadyError;
    expect(err).toBeInstanceOf(RoleNotReadyError);
    expect(err.reason).toBe('connection_problem');
    expect(err.unready).toEqual([{ check: `node joined: host certificate in ${nodeIdentityFile(dir)}`, reason: 'the node has not joined yet, no node identity is stored' }]);
    expect(err.message).toBe(
      `this instance's role was not ready after 200ms: node joined: host certificate in ${nodeIdentityFile(dir)} (the node has not joined yet, no node identity is stored); signalled FAILURE to CloudFormation`,
    );
    expect(cfn.signals).toEqual([{ StackName: 'Teleport-acme', LogicalResourceId: 'AuthAutoScalingGroup1A2B3C4D', UniqueId: INSTANCE_ID, Status: 'FAILURE' }]);
  });

  test('GIVEN a proxy whose ping answers 500 WHEN it waits THEN it is not ready (its SSH port is), and once ping answers 200 SUCCESS is signalled', async () => {
    // GIVEN both proxy listeners up, the web one answering 500 (self-signed certificate, not verified)
    const t = await targets();
    const ping = { code: 500 };
    await Promise.all([listenTcp(t.ports.proxySsh), listenWeb(t.ports.web, ping)]);
    const rounds: Unready[][] = [];
    // WHEN
    const result = signalReady({ conf: SIGNAL, checks: readinessChecks('proxy', t), instanceId, cloudFormation: client(), loadBalancing: lb(), timeoutMs: 60_000, pollMs: 20, onPoll: (u) => rounds.push(u) });
    await waitFor('two rounds of probes', () => rounds.length >= 2);
    // THEN only the web check fails, on the status
    expect(rounds[1]).toEqual([{ check: `proxy web: GET https://127.0.0.1:${t.ports.web}/webapi/ping`, reason: 'answered HTTP 500, not 200' }]);
    expect(cfn.requests).toEqual([]);
    // WHEN ping answers 200 THEN SUCCESS
    ping.code = 200;
    expect(await result).toEqual({ signalled: true, target: TARGET, outcome: { delivered: true } });
    expect(cfn.signals.map((s) => s.Status)).toEqual(['SUCCESS']);
  });

  test('GIVEN CloudFormation waits for no signal (a reboot, a scale-out) WHEN the healthy instance signals THEN that is reported, not an error', async () => {
    const t = await targets();
    await listenTcp(t.ports.auth);
    cfn.failNext(1, { status: 400, code: 'ValidationError', message: 'Stack arn:aws:cloudformation:eu-west-1:123456789012:stack/Teleport-acme/x is in UPDATE_COMPLETE state and cannot be signaled' });
    const r = await signalReady({ conf: SIGNAL, checks: readinessChecks('auth', t), instanceId, cloudFormation: client(), loadBalancing: lb(), timeoutMs: 10_000, pollMs: 20, retry: FAST });
    expect(r).toEqual({ signalled: true, target: TARGET, outcome: { delivered: false, reason: expect.stringContaining('UPDATE_COMPLETE state and cannot be signaled') } });
    expect(cfn.requests).toEqual(['SignalResource SUCCESS']);
  });
});

describe('signalReady: the target groups must report the instance healthy (TELEPORT_TARGET_GROUP_ARNS)', () => {
  const TG = (name: string, id: string) => `arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/${name}/${id}`;
  const AUTH_TG = TG('acme-auth', '0123456789abcdef');
  const PROXY_SSH_TG = TG('acme-proxy-ssh', '1111111111111111');
  const PROXY_WEB_TG = TG('acme-proxy-web', '2222222222222222');
  const withGroups = (...targetGroups: string[]) => ({ signal: { ...SIGNAL.signal, targetGroups } });
  const INITIAL = 'initial (Elb.RegistrationInProgress: Target registration is in progress)';
  const UNHEALTHY = 'unhealthy (Target.FailedHealthChecks: Health checks failed)';
  const FAILURE = { StackName: 'Teleport-acme', LogicalResourceId: 'AuthAutoScalingGroup1A2B3C4D', UniqueId: INSTANCE_ID, Status: 'FAILURE' };

  test('GIVEN an auth instance whose port is open but whose target group says initial WHEN it waits THEN nothing is signalled; once the group says healthy, SUCCESS', async () => {
    // GIVEN the auth port open, the target group still registering the instance (2 checks x 10 s in AWS)
    const t = await targets();
    await listenTcp(t.ports.auth);
    elb.setHealth(AUTH_TG, INSTANCE_ID, TargetHealths.initial);
    const rounds: Unready[][] = [];
    // WHEN
    const result = signalReady({
      conf: withGroups(AUTH_TG),
      checks: readinessChecks('auth', t),
      instanceId,
      cloudFormation: client(),
      loadBalancing: lb(),
      timeoutMs: 60_000,
      pollMs: 20,
      targetHealthPollMs: 20,
      onPoll: (u) => rounds.push(u),
    });
    await waitFor('two rounds of DescribeTargetHealth', () => elb.requests.length >= 2);
    // THEN the local check held at once, the target group is asked for this instance only, and nothing is signalled
    expect(rounds[0]).toEqual([]);
    expect(rounds[1]).toEqual([{ check: `target group ${AUTH_TG}`, reason: INITIAL }]);
    expect(elb.requests[0]).toBe(`DescribeTargetHealth ${AUTH_TG} ${INSTANCE_ID}`);
    expect(cfn.requests).toEqual([]);
    // WHEN the load balancer's checks have passed THEN SUCCESS
    elb.setHealth(AUTH_TG, INSTANCE_ID, TargetHealths.healthy);
    expect(await result).toEqual({ signalled: true, target: TARGET, outcome: { delivered: true } });
    expect(rounds.at(-1)).toEqual([]);
    expect(cfn.signals).toEqual([{ ...FAILURE, Status: 'SUCCESS' }]);
  });

  test('GIVEN a proxy in two target groups (SSH 3023 on the NLB, web on the ALB) WHEN only one at a time reports it healthy THEN nothing is signalled until both do', async () => {
    // GIVEN both listeners up; SSH healthy, web still registering
    const t = await targets();
    await Promise.all([listenTcp(t.ports.proxySsh), listenWeb(t.ports.web, { code: 200 })]);
    elb.setHealth(PROXY_SSH_TG, INSTANCE_ID, { ...TargetHealths.healthy, Port: 3023 });
    elb.setHealth(PROXY_WEB_TG, INSTANCE_ID, { ...TargetHealths.initial, Port: 3080 });
    const rounds: Unready[][] = [];
    const last = () => rounds.at(-1);
    // WHEN
    const result = signalReady({
      conf: withGroups(PROXY_SSH_TG, PROXY_WEB_TG),
      checks: readinessChecks('proxy', t),
      instanceId,
      cloudFormation: client(),
      loadBalancing: lb(),
      timeoutMs: 60_000,
      pollMs: 20,
      targetHealthPollMs: 20,
      onPoll: (u) => rounds.push(u),
    });
    // THEN the web group holds it back
    await waitFor('a round with the web group unready', () => last()?.length === 1 && last()![0].check === `target group ${PROXY_WEB_TG}`);
    expect(last()).toEqual([{ check: `target group ${PROXY_WEB_TG}`, reason: INITIAL }]);
    expect(elb.requests).toEqual(expect.arrayContaining([`DescribeTargetHealth ${PROXY_SSH_TG} ${INSTANCE_ID}`, `DescribeTargetHealth ${PROXY_WEB_TG} ${INSTANCE_ID}`]));
    // WHEN web becomes healthy while SSH fails its checks THEN still nothing
    elb.setHealth(PROXY_WEB_TG, INSTANCE_ID, { ...TargetHealths.healthy, Port: 3080 });
    elb.setHealth(PROXY_SSH_TG, INSTANCE_ID, { ...TargetHealths.unhealthy, Port: 3023 });
    await waitFor('a round with the SSH group unready', () => last()?.length === 1 && last()![0].check === `target group ${PROXY_SSH_TG}`);
    expect(last()).toEqual([{ check: `target group ${PROXY_SSH_TG}`, reason: UNHEALTHY }]);
    expect(cfn.requests).toEqual([]);
    // WHEN both are healthy THEN SUCCESS
    elb.setHealth(PROXY_SSH_TG, INSTANCE_ID, { ...TargetHealths.healthy, Port: 3023 });
    expect(await result).toEqual({ signalled: true, target: TARGET, outcome: { delivered: true } });
    expect(cfn.signals.map((s) => s.Status)).toEqual(['SUCCESS']);
  });

  test('GIVEN a target group that keeps the instance unhealthy WHEN the timeout passes THEN FAILURE is signalled, naming the group, its state and reason', async () => {
    // GIVEN
    const t = await targets();
    await listenTcp(t.ports.auth);
    elb.setHealth(AUTH_TG, INSTANCE_ID, TargetHealths.unhealthy);
    // WHEN
    const started = Date.now();
    const err = (await signalReady({
      conf: withGroups(AUTH_TG),
      checks: readinessChecks('auth', t),
      instanceId,
      cloudFormation: client(),
      loadBalancing: lb(),
      timeoutMs: 300,
      pollMs: 20,
      targetHealthPollMs: 20,
      retry: FAST,
    }).catch((e: unknown) => e)) as RoleNotReadyError;
    // THEN within the one timeout the local checks and the target group share
    expect(Date.now() - started).toBeLessThan(3000);
    expect(err).toBeInstanceOf(RoleNotReadyError);
    expect(err.unready).toEqual([{ check: `target group ${AUTH_TG}`, reason: UNHEALTHY }]);
    expect(err.message).toBe(`this instance's role was not ready after 300ms: target group ${AUTH_TG} (${UNHEALTHY}); signalled FAILURE to CloudFormation`);
    expect(cfn.signals).toEqual([FAILURE]);
  });

  test('GIVEN no target groups (a node) WHEN the local checks hold THEN SUCCESS is signalled at once, Elastic Load Balancing never asked', async () => {
    const t = await targets();
    await listenTcp(t.ports.auth);
    const made: string[] = [];
    const r = await signalReady({
      conf: withGroups(),
      checks: readinessChecks('auth', t),
      instanceId,
      cloudFormation: client(),
      loadBalancing: () => (made.push('elb'), lb()()),
      timeoutMs: 10_000,
      pollMs: 20,
      targetHealthPollMs: 5_000,
    });
    expect(r).toEqual({ signalled: true, target: TARGET, outcome: { delivered: true } });
    expect(made).toEqual([]);
    expect(elb.requests).toEqual([]);
  });

  test('GIVEN the local checks never hold WHEN the timeout passes THEN the target groups are not asked and FAILURE names the local check', async () => {
    const t = await targets();
    elb.setHealth(AUTH_TG, INSTANCE_ID, TargetHealths.healthy);
    const err = (await signalReady({ conf: withGroups(AUTH_TG), checks: readinessChecks('auth', t), instanceId, cloudFormation: client(), loadBalancing: lb(), timeoutMs: 100, pollMs: 20, retry: FAST }).catch(
      (e: unknown) => e,
    )) as RoleNotReadyError;
    expect(err).toBeInstanceOf(RoleNotReadyError);
    expect(err.unready.map((u) => u.check)).toEqual([`auth API: TCP 127.0.0.1:${t.ports.auth}`]);
    expect(elb.requests).toEqual([]);
    expect(cfn.signals).toEqual([FAILURE]);
  });

  test('GIVEN DescribeTargetHealth throttled, then failing on every try WHEN waited on THEN throttling is retried as SignalResource is, and a call that keeps failing is the reason given at the timeout', async () => {
    const t = await targets();
    await listenTcp(t.ports.auth);
    elb.setHealth(AUTH_TG, INSTANCE_ID, TargetHealths.healthy);
    const opts = { conf: withGroups(AUTH_TG), checks: readinessChecks('auth', t), instanceId, cloudFormation: client(), loadBalancing: lb(), pollMs: 20, targetHealthPollMs: 20 };
    // GIVEN throttling twice THEN retried, then SUCCESS
    elb.failNext(2, { status: 400, code: 'Throttling', message: 'Rate exceeded' });
    const retries: string[] = [];
    const ok = await signalReady({ ...opts, timeoutMs: 10_000, retry: { ...FAST, onRetry: (e, _a, _d, op) => retries.push(`${op}: ${e}`) } });
    expect(ok).toEqual({ signalled: true, target: TARGET, outcome: { delivered: true } });
    expect(retries).toEqual([`DescribeTargetHealth ${AUTH_TG}: Throttling: Rate exceeded`, `DescribeTargetHealth ${AUTH_TG}: Throttling: Rate exceeded`]);
    expect(elb.requests).toHaveLength(3);
    // GIVEN 5xx on every try THEN each round gives up after the attempts, and the timeout names that error
    elb.failNext(1000, { status: 500, code: 'InternalFailure', message: 'We encountered an internal error' });
    const err = (await signalReady({ ...opts, timeoutMs: 300, retry: FAST }).catch((e: unknown) => e)) as RoleNotReadyError;
    expect(err).toBeInstanceOf(RoleNotReadyError);
    // (how many attempts fit before the deadline depends on the machine's load: the reason names the error whatever the count)
    expect(err.unready).toEqual([{ check: `target group ${AUTH_TG}`, reason: expect.stringMatching(/^cannot check after \d+ attempts?: InternalFailure: We encountered an internal error$/) }]);
    expect(cfn.signals.map((s) => s.Status)).toEqual(['SUCCESS', 'FAILURE']);
  });

  test('GIVEN a role without elasticloadbalancing:DescribeTargetHealth, or a target group that does not exist WHEN asked THEN FAILURE is signalled at once, not after the timeout', async () => {
    const t = await targets();
    await listenTcp(t.ports.auth);
    const opts = { checks: readinessChecks('auth', t), instanceId, cloudFormation: client(), loadBalancing: lb(), timeoutMs: 60_000, pollMs: 20, targetHealthPollMs: 20, retry: FAST };
    // GIVEN access denied
    elb.setHealth(AUTH_TG, INSTANCE_ID, TargetHealths.healthy);
    elb.failNext(1, { status: 403, code: 'AccessDenied', message: 'User is not authorized to perform: elasticloadbalancing:DescribeTargetHealth' });
    const started = Date.now();
    const denied = (await signalReady({ ...opts, conf: withGroups(AUTH_TG) }).catch((e: unknown) => e)) as TargetHealthUncheckableError;
    expect(denied).toBeInstanceOf(TargetHealthUncheckableError);
    expect(denied.reason).toBe('access_denied');
    expect(denied.message).toBe(
      `cannot check the health of instance ${INSTANCE_ID} in target group ${AUTH_TG}: AccessDenied: User is not authorized to perform: elasticloadbalancing:DescribeTargetHealth ` +
        '(the instance role needs elasticloadbalancing:DescribeTargetHealth); signalled FAILURE to CloudFormation',
    );
    // GIVEN a target group the load balancing service does not know
    const missing = TG('acme-gone', 'ffffffffffffffff');
    const notFound = (await signalReady({ ...opts, conf: withGroups(AUTH_TG, missing) }).catch((e: unknown) => e)) as TargetHealthUncheckableError;
    expect(notFound).toBeInstanceOf(TargetHealthUncheckableError);
    expect(notFound.reason).toBe('bad_parameter');
    expect(notFound.targetGroup).toBe(missing);
    expect(notFound.message).toContain(`in target group ${missing}: TargetGroupNotFoundException: Target groups '${missing}' not found; signalled FAILURE`);
    // THEN each was tried once and failed at once
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(elb.requests.filter((r) => r.includes(missing))).toHaveLength(1);
    expect(cfn.signals.map((s) => s.Status)).toEqual(['FAILURE', 'FAILURE']);
  });
});

describe('sendSignal: CloudFormation errors', () => {
  const send = (endpoint?: string, onRetry?: (e: string) => void) => sendSignal(client(endpoint)(), TARGET, 'SUCCESS', { ...FAST, ...(onRetry ? { onRetry } : {}) });

  test('GIVEN throttling twice WHEN signalled THEN it is retried with backoff and delivered', async () => {
    cfn.failNext(2, { status: 400, code: 'Throttling', message: 'Rate exceeded' });
    const retries: string[] = [];
    expect(await send(undefined, (e) => retries.push(e))).toEqual({ delivered: true });
    expect(retries).toEqual(['Throttling: Rate exceeded', 'Throttling: Rate exceeded']);
    expect(cfn.requests).toEqual(['SignalResource SUCCESS', 'SignalResource SUCCESS', 'SignalResource SUCCESS']);
    expect(cfn.signals).toHaveLength(1);
  });

  test('GIVEN the service failing every time WHEN signalled THEN it gives up after the attempts, naming the call and the error', async () => {
    cfn.failNext(10, { status: 500, code: 'InternalFailure', message: 'We encountered an internal error' });
    const err = await send().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionProblemError);
    expect((err as Error).message).toBe(
      `cannot send SignalResource SUCCESS for AuthAutoScalingGroup1A2B3C4D in stack Teleport-acme (instance ${INSTANCE_ID}) after 3 attempts: InternalFailure: We encountered an internal error`,
    );
    expect(cfn.requests).toHaveLength(3);
  });

  test('GIVEN an endpoint nobody listens on WHEN signalled THEN the network error is retried, then reported', async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const retries: string[] = [];
    const err = await send(closed, (e) => retries.push(e)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionProblemError);
    expect((err as Error).message).toMatch(/^cannot send SignalResource SUCCESS .* after 3 attempts: .*ECONNREFUSED/);
    expect(retries).toHaveLength(2);
  });

  test('GIVEN a stack that does not exist or a role without the permission WHEN signalled THEN it fails at once, not retried', async () => {
    cfn.failNext(1, { status: 400, code: 'ValidationError', message: 'Stack with id Teleport-acme does not exist' });
    const missing = await send().catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(BadParameterError);
    expect((missing as Error).message).toBe(`cannot send SignalResource SUCCESS for AuthAutoScalingGroup1A2B3C4D in stack Teleport-acme (instance ${INSTANCE_ID}): ValidationError: Stack with id Teleport-acme does not exist`);
    cfn.failNext(1, { status: 403, code: 'AccessDenied', message: 'User is not authorized to perform: cloudformation:SignalResource' });
    const denied = await send().catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(AccessDeniedError);
    expect((denied as Error).message).toContain('the instance role needs cloudformation:SignalResource on the stack');
    expect(cfn.requests).toHaveLength(2);
    expect(cfn.signals).toEqual([]);
  });
});

describe('teleport signal-ready (the CLI)', () => {
  const conf = (lines: string[]) => {
    const file = path.join(dir, 'conf');
    fs.writeFileSync(file, lines.join('\n') + '\n');
    return file;
  };
  /** The endpoints of the imitations and credentials through the environment, as the SDK's default chain reads them. */
  const env = () => ({
    AWS_ENDPOINT_URL: cfn.url,
    AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url,
    AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
    AWS_CONFIG_FILE: path.join(dir, 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'no-aws-credentials'),
  });
  const NODE = ['TELEPORT_ROLE=node', 'TELEPORT_CLUSTER_NAME=acme', 'EC2_REGION=eu-west-1', 'TELEPORT_AUTH_SERVER_LB=acme-auth.elb.eu-west-1.amazonaws.com'];

  test('GIVEN a conf without TELEPORT_CFN_STACK WHEN run THEN it says there is nothing to signal and exits 0 without calling anything', async () => {
    const imdsBefore = imds.requests.length;
    const r = await runCli('teleport', ['signal-ready', '--from-conf', conf(NODE)], { env: env() });
    expect(r.stderr).toBe(`nothing to signal: ${path.join(dir, 'conf')} sets no TELEPORT_CFN_STACK and TELEPORT_CFN_RESOURCE\n`);
    expect(r.code).toBe(0);
    expect(cfn.requests).toEqual([]);
    expect(imds.requests.slice(imdsBefore)).toEqual([]);
  });

  test('GIVEN a node that has not joined WHEN the timeout passes THEN it signals FAILURE for this instance and exits non-zero naming the unready check', async () => {
    // GIVEN a data dir without a node identity
    const file = conf([...NODE, 'TELEPORT_CFN_STACK=Teleport-acme', 'TELEPORT_CFN_RESOURCE=NodeAutoScalingGroup5E6F']);
    // WHEN
    const r = await runCli('teleport', ['signal-ready', '--from-conf', file, '--timeout', '1s', '--data-dir', dir], { env: env() });
    // THEN
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`ERROR: this instance's role was not ready after 1s: `);
    expect(r.stderr).toContain(`node joined: host certificate in ${nodeIdentityFile(dir)} (the node has not joined yet, no node identity is stored)`);
    expect(r.stderr).toContain('; signalled FAILURE to CloudFormation');
    expect(cfn.signals).toEqual([{ StackName: 'Teleport-acme', LogicalResourceId: 'NodeAutoScalingGroup5E6F', UniqueId: INSTANCE_ID, Status: 'FAILURE' }]);
  });

  test('GIVEN a stack without EC2_REGION or a bad timeout WHEN run THEN it refuses before waiting, naming the variable or the flag', async () => {
    const noRegion = conf(['TELEPORT_ROLE=auth,node,proxy', 'TELEPORT_CFN_STACK=Teleport-acme', 'TELEPORT_CFN_RESOURCE=StarterInstance']);
    const r = await runCli('teleport', ['signal-ready', '--from-conf', noRegion], { env: env() });
    expect(r.stderr).toBe(`ERROR: ${noRegion}: EC2_REGION: is required with TELEPORT_CFN_STACK (the region of the stack to signal)\n`);
    expect(r.code).toBe(1);
    const bad = await runCli('teleport', ['signal-ready', '--from-conf', noRegion, '--timeout', '10'], { env: env() });
    expect(bad.stderr).toContain('invalid duration "10": missing unit after 10');
    expect(bad.code).toBe(1);
    expect(cfn.requests).toEqual([]);
  });
});
