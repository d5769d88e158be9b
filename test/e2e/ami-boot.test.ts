/**
 * What an AMI instance does at boot, with the real CLIs the systemd units run: user data's
 * conf → `teleport configure --from-conf` (IMDSv2 imitated over HTTP) → `teleport start`.
 * An all-in-one instance becomes a working cluster a user signs up to and SSHes through;
 * a node instance waits in `teleport fetch-join-secrets` until the token and CA pin appear
 * in SSM (imitated over HTTP), then joins with them.
 *
 * The one change to the generated files: listen addresses move from the image's fixed ports
 * (3022-3080 on 0.0.0.0) to free loopback ports, since other tests on this machine may hold them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseDocument } from 'yaml';
import { TestAuth } from '../helpers/cluster';
import { nodeIdentityFile, nodeJoined, readinessChecks } from '../../runtime/instance/readiness';
import { waitUntilReady } from '../../runtime/instance/signal';
import { startImds, startSsm, type Imitation } from '../helpers/ec2-imitations';
import { cliPath, Daemon, freePort, runCli, tempDir, waitFor } from '../helpers/proc';
import { scrape } from '../helpers/metrics';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';

const CLUSTER = 'ami-e2e';
const REGION = 'eu-west-1';

/** Moves the listen addresses of a generated teleport.yaml to loopback ports; returns them. */
async function moveListeners(file: string, extra: (doc: ReturnType<typeof parseDocument>) => void = () => {}): Promise<Record<string, number>> {
  const doc = parseDocument(fs.readFileSync(file, 'utf8'));
  const ports: Record<string, number> = {};
  for (const [section, key] of [
    ['auth_service', 'listen_addr'],
    ['ssh_service', 'listen_addr'],
    ['proxy_service', 'listen_addr'],
    ['proxy_service', 'web_listen_addr'],
    ['proxy_service', 'tunnel_listen_addr'],
  ]) {
    if (doc.getIn([section, key]) === undefined) continue;
    ports[`${section}.${key}`] = await freePort();
    doc.setIn([section, key], `127.0.0.1:${ports[`${section}.${key}`]}`);
  }
  extra(doc);
  fs.writeFileSync(file, doc.toString());
  return ports;
}

describe('AMI boot: conf → teleport configure → teleport start', () => {
  const dir = tempDir('ami-boot-');
  const confDir = path.join(dir, 'teleport.d');
  let imds: Imitation;
  let nodeImds: Imitation;
  let ssm: Imitation;
  const params = new Map<string, string>();
  let cluster: TestAuth | undefined;
  let node: Daemon | undefined;
  let alice: TshUser | undefined;

  beforeAll(async () => {
    fs.mkdirSync(confDir);
    imds = await startImds({ 'local-ipv4': '127.0.0.1', 'local-hostname': 'ip-127-0-0-1.eu-west-1.compute.internal' });
    nodeImds = await startImds({ 'local-ipv4': '127.0.0.1', 'local-hostname': 'ip-127-0-0-2.eu-west-1.compute.internal' });
    ssm = await startSsm(params);
  });
  afterAll(async () => {
    await node?.stop();
    await cluster?.stop();
    alice?.cleanup();
    await Promise.all([imds?.close(), nodeImds?.close(), ssm?.close()]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('GIVEN an all-in-one conf WHEN the instance boots THEN a user signs up, logs in and runs a command on it', async () => {
    // GIVEN user data wrote the all-in-one conf
    const conf = path.join(confDir, 'conf');
    fs.writeFileSync(
      conf,
      [`TELEPORT_ROLE="auth,node,proxy"`, `TELEPORT_CLUSTER_NAME="${CLUSTER}"`, `EC2_REGION="${REGION}"`, 'TELEPORT_LOG_GROUP=ami-e2e-logs', 'TELEPORT_METRICS_LOG_GROUP=ami-e2e-metrics', ''].join('\n'),
    );
    const configPath = path.join(dir, 'teleport.yaml');
    const dataDir = path.join(dir, 'data');

    // WHEN teleport-generate-config runs (with a diagnostics port of its own: two instances share this host)
    const diagAddr = `127.0.0.1:${await freePort()}`;
    const gen = await runCli('teleport', ['configure', '--from-conf', conf, '--output', configPath, '--data-dir', dataDir, '--diag-addr', diagAddr], {
      env: { AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url },
    });
    const agentConfig = path.join(confDir, 'cloudwatch-agent.json');
    expect({ code: gen.code, stderr: gen.stderr }).toEqual({ code: 0, stderr: `wrote ${configPath} (mode all) and ${agentConfig}\n` });
    expect(fs.readdirSync(confDir).sort()).toEqual(['cloudwatch-agent.json', 'cloudwatch-prometheus.yaml', 'conf', 'role.all']);

    // AND the teleport unit starts it
    const ports = await moveListeners(configPath);
    cluster = new TestAuth(dir, configPath, dataDir, ports['auth_service.listen_addr'], ports['ssh_service.listen_addr'], {
      ssh: ports['proxy_service.listen_addr'],
      web: ports['proxy_service.web_listen_addr'],
      tunnel: ports['proxy_service.tunnel_listen_addr'],
    });
    cluster.start();
    await cluster.ready();

    // AND teleport-signal's checks (on the moved ports) find every role healthy as its load balancer would:
    // auth and proxy SSH accept connections, the web ping answers 200 over the self-signed certificate,
    // the node listens and holds the host certificate its local auth service issued
    const targets = {
      host: '127.0.0.1',
      ports: { auth: ports['auth_service.listen_addr'], node: ports['ssh_service.listen_addr'], proxySsh: ports['proxy_service.listen_addr'], web: ports['proxy_service.web_listen_addr'] },
      dataDir,
    };
    expect(await waitUntilReady(readinessChecks('auth,node,proxy', targets), { timeoutMs: 30_000, pollMs: 100 })).toEqual([]);

    // AND the CloudWatch agent's scrape target is the instance's diagnostics endpoint, which reports it ready
    const scrapeConfig = parseDocument(fs.readFileSync(path.join(confDir, 'cloudwatch-prometheus.yaml'), 'utf8')).toJS();
    const target = scrapeConfig.scrape_configs[0].static_configs[0].targets[0];
    expect(target).toBe(diagAddr);
    await waitFor('the instance to report itself ready in /metrics', async () => (await scrape(`http://${target}`)).value('teleport_ready') === 1);

    // THEN the admin adds a user, who signs up, logs in with tsh and runs a command on the instance
    expect(await cluster.tctlOk('status')).toContain(CLUSTER);
    alice = await TshUser.signUp(cluster, 'alice', [LOGIN]);
    await alice.login();
    const r = await alice.tsh(['ssh', `${LOGIN}@ip-127-0-0-1-eu-west-1-compute-internal`, 'echo', 'hello from the AMI']);
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 0, stdout: 'hello from the AMI\n', stderr: '' });
  });

  it('GIVEN a node conf WHEN it boots before the control plane has published its token THEN it waits, joins with the SSM token and pin, and takes sessions', async () => {
    expect(cluster).toBeDefined();
    const conf = path.join(dir, 'node.d', 'conf');
    fs.mkdirSync(path.dirname(conf));
    fs.writeFileSync(conf, [`TELEPORT_ROLE=node`, `TELEPORT_CLUSTER_NAME=${CLUSTER}`, `EC2_REGION=${REGION}`, `TELEPORT_AUTH_SERVER_LB=127.0.0.1`, ''].join('\n'));
    const dataDir = path.join(dir, 'node-data');
    fs.mkdirSync(dataDir, { mode: 0o700 });
    const configPath = path.join(dir, 'node.yaml');
    const awsEnv = {
      AWS_EC2_METADATA_SERVICE_ENDPOINT: nodeImds.url,
      AWS_ENDPOINT_URL_SSM: ssm.url,
      AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'imitation',
      AWS_SESSION_TOKEN: '',
      AWS_PROFILE: '',
    };

    // GIVEN teleport-generate-config has run on the node instance
    const gen = await runCli('teleport', ['configure', '--from-conf', conf, '--output', configPath, '--data-dir', dataDir, '--diag-addr', `127.0.0.1:${await freePort()}`], { env: awsEnv });
    expect(gen.code).toBe(0);
    expect(fs.readdirSync(path.dirname(conf)).sort()).toEqual(['conf', 'role.node']);

    // WHEN the node unit's ExecStartPre runs before the tokens exist in SSM
    const fetch = Daemon.spawn(process.execPath, [cliPath('teleport'), 'fetch-join-secrets', '--from-conf', conf, '--data-dir', dataDir], awsEnv);
    await waitFor('the fetch to ask SSM for the node token', () => ssm.requests.includes(`/teleport/${CLUSTER}/tokens/node`));
    expect(fs.readdirSync(dataDir)).toEqual([]);
    // AND the control plane then publishes a token minted on the cluster and the CA pin
    const token = /The invite token: ([0-9a-f]{32})/.exec(await cluster!.tctlOk('tokens', 'add', '--type=node'))![1];
    const pin = await cluster!.caPin();
    params.set(`/teleport/${CLUSTER}/ca-pin`, pin);
    params.set(`/teleport/${CLUSTER}/tokens/node`, token);

    // THEN the fetch writes them where the generated config looks for them
    expect(await fetch.exited).toBe(0);
    expect(fs.readFileSync(path.join(dataDir, 'token'), 'utf8').trim()).toBe(token);
    expect(fs.readFileSync(path.join(dataDir, 'ca-pin'), 'utf8').trim()).toBe(pin);

    // AND the node starts with the generated config, joins, and takes sessions through the proxy
    const authPort = cluster!.port;
    await moveListeners(configPath, (doc) => doc.setIn(['teleport', 'auth_servers'], [`127.0.0.1:${authPort}`]));
    expect(await nodeJoined(nodeIdentityFile(dataDir))).toBe('the node has not joined yet, no node identity is stored');
    node = Daemon.spawn(process.execPath, [cliPath('teleport'), 'start', '-c', configPath]);
    await node.waitForOutput(/teleport is running/);
    // (teleport-signal's join check: the identity the join stored in the node's data dir)
    expect(await nodeJoined(nodeIdentityFile(dataDir))).toBeUndefined();
    await waitFor('the node to be listed', async () => /^ip-127-0-0-2-eu-west-1-compute-internal\s/m.test(await cluster!.tctlOk('nodes', 'ls')));
    const r = await alice!.tsh(['ssh', `${LOGIN}@ip-127-0-0-2-eu-west-1-compute-internal`, 'echo', 'joined from SSM']);
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: 'joined from SSM\n' });
  });
});
