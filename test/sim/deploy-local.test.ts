/**
 * The HA stack, deployed whole on this machine from its synthesized template (`npm run
 * deploy:local`'s library): 1 auth, 1 proxy, 2 nodes behind the template's load balancers, state in
 * DynamoDB Local, recordings in S3, join tokens and the CA pin in SSM written by the control-plane
 * functions, every AWS call checked against the template's IAM policies. The CA keys are made in KMS
 * (`caKeysInKms`), each with a key policy naming the auth role.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { DEFAULT_CONTEXT } from '../../sim/cli-context';
import { LocalDeployment } from '../../sim/deploy';
import { synthesize } from '../../sim/synth';
import { collect, waitFor } from '../../sim/process';
import { REGION } from '../../sim/types';
import { ClusterUser } from '../../sim/user';
import { testOsAccount } from '../helpers/osusers';

/** Template durations run this many times faster (health checks, grace periods, schedules). */
const TIME_SCALE = 10;

jest.setTimeout(240_000);

/** The OS login the nodes give alice (made before the instances boot: their /etc is an overlay of this host's). */
const login = testOsAccount('dl');

describe('deploy:local — the HA stack from its template', () => {
  let dir: string;
  let d: LocalDeployment;
  let healthyAfterMs = 0;
  const outputs = () => d.deployment.resolvedOutputs();

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deploy-local-'));
    // GIVEN the app synthesized as `cdk deploy` would, with an ACM certificate (ALB), 1/1/2 instances and the CA keys in KMS
    const cdkOut = await synthesize(path.join(dir, 'cdk.out'), { ...DEFAULT_CONTEXT, clusterName: 'acme', caKeysInKms: 'true' });
    // WHEN it is deployed from an empty state
    d = await LocalDeployment.deploy({ cdkOut, dir: path.join(dir, 'deployment'), timeScale: TIME_SCALE });
  });

  afterAll(async () => {
    await d?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('every target group has all its targets healthy within 2 minutes, and no instance is replaced for 2 more (template time)', async () => {
    healthyAfterMs = await d.waitHealthy(120_000 / TIME_SCALE + 60_000);
    const launched = d.asg.history.filter((h) => h.event === 'launch').length;
    expect(launched).toBe(4);
    // THEN for two minutes of template time, nothing is replaced (health-check failures would show here)
    const until = Date.now() + 120_000 / TIME_SCALE;
    await waitFor('two minutes of template time', () => Date.now() >= until, 60_000, 500);
    expect(d.asg.history.filter((h) => h.event !== 'launch')).toEqual([]);
    expect(await d.unhealthyTargets()).toEqual([]);
    expect(healthyAfterMs).toBeGreaterThan(0);
  });

  test('the nodes join within 60 s of the CA being created, with the token and CA pin the control plane published to SSM', async () => {
    // GIVEN the pin, published by the function the state table's stream triggers when the first auth server creates the CA
    const pin = d.ssm.get(outputs().SsmCaPinPath.value);
    expect(pin?.value).toMatch(/^sha256:[0-9a-f]{64}$/);
    const nodes = d.asg.group('Nodes').live();
    expect(nodes).toHaveLength(2);
    const auth = d.asg.group('Auth').live()[0];
    const listed = await waitFor('both nodes in tctl nodes ls', async () => {
      const r = await auth.instance.exec(['tctl', 'nodes', 'ls']);
      return nodes.every((n) => r.stdout.includes(n.instance.address)) ? r.stdout : undefined;
    }, 60_000, 500);
    expect(listed).toMatch(/aws\/instance-id/);
    // THEN both were seen registered within 60 s of the pin's publication (an upper bound of their join time)
    expect(Date.now() - pin!.lastModified.getTime()).toBeLessThan(60_000);
  });

  test('a user signs up, logs in with tsh through the ALB and reaches each node over ssh through the NLB; the session is recorded in S3 and audited in DynamoDB', async () => {
    // GIVEN the first user, created as the stack's FirstUserCommand says (on an auth instance), signed up through the ALB
    const alice = await ClusterUser.signUp(d, 'alice', [login.name], path.join(dir, 'alice'));
    // WHEN alice logs in through the ALB (its certificate trusted as a public one would be) ...
    expect(await alice.login()).toMatch(/Logged in as:\s+alice/);

    // ... THEN she reaches each node through the NLB's SSH listener, with tsh ...
    for (const node of d.asg.group('Nodes').live()) {
      const r = await alice.tsh(['ssh', '-t', `${login.name}@${node.instance.address}`, 'echo', `hello-from-${node.id}`]);
      expect(r.stdout).toContain(`hello-from-${node.id}`);
    }
    // ... and with stock OpenSSH, configured by `tsh config` (the proxy subsystem through the NLB)
    for (const node of d.asg.group('Nodes').live()) {
      const nodename = `ip-${node.instance.address.replace(/\./g, '-')}-${REGION}-compute-internal`;
      const r = await alice.ssh(`${login.name}@${nodename}.acme`, ['echo', `openssh-${node.id}`]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(`openssh-${node.id}\n`);
    }

    // AND the recording lands in the template's bucket, the events in the events table
    const s3 = d.s3Client();
    const objects = await waitFor('a recording in S3', async () => {
      const out = await s3.send(new ListObjectsV2Command({ Bucket: outputs().RecordingsBucketName.value }));
      return (out.Contents ?? []).length > 0 ? out.Contents : undefined;
    }, 60_000, 500);
    expect(objects![0].Key).toMatch(/^records\//);
    const db = d.dynamoClient();
    const events = await db.send(new ScanCommand({ TableName: outputs().EventsTableName.value }));
    const types = (events.Items ?? []).map((i) => JSON.parse(i.Fields?.S ?? '{}').event ?? i.EventType?.S);
    expect(types).toEqual(expect.arrayContaining(['session.start', 'session.end', 'user.login']));
  });

  test('every instance reports itself ready on its loopback diagnostics endpoint (what its CloudWatch agent scrapes), which does not listen on its network address', async () => {
    const instances = d.asg.all().filter((gi) => gi.state === 'InService');
    expect(instances).toHaveLength(4);
    for (const gi of instances) {
      // WHEN /metrics is scraped inside the instance, at the address its generated agent config names
      const inside = await collect('ip', ['netns', 'exec', gi.instance.attachment.namespace, 'curl', '-sS', '--max-time', '5', 'http://127.0.0.1:3000/metrics']);
      // THEN the instance is ready
      expect([gi.group.logicalId, inside.code, /^teleport_ready 1$/m.test(inside.stdout)]).toEqual([gi.group.logicalId, 0, true]);
      // AND on the instance's own network address (where the load balancers and other instances reach it) nothing listens on that port
      const network = await collect('ip', ['netns', 'exec', gi.instance.attachment.namespace, 'curl', '-sS', '--max-time', '5', `http://${gi.instance.address}:3000/metrics`]);
      expect([gi.group.logicalId, network.code, network.stderr]).toEqual([gi.group.logicalId, 7, expect.stringMatching(/Connection refused|Couldn't connect/)]);
    }
  });

  test('a host CA rotation: the control plane publishes both pins, a node launched in update_clients joins with them from SSM, and the cluster completes the rotation with every node', async () => {
    const auth = d.asg.group('Auth').live()[0];
    const tctl = async (...args: string[]) => {
      const r = await auth.instance.exec(['tctl', ...args]);
      if (r.code !== 0) throw new Error(`tctl ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    const pinParam = outputs().SsmCaPinPath.value;
    const before = d.ssm.get(pinParam)!.value;
    // WHEN the host CA rotation reaches update_clients
    await tctl('auth', 'rotate', '--type=host', '--manual', '--phase=init');
    await tctl('auth', 'rotate', '--type=host', '--manual', '--phase=update_clients');
    // THEN the pin function publishes both pins (from init on)
    const both = await waitFor('both pins in SSM', async () => {
      const v = d.ssm.get(pinParam)!.value;
      return v.split(',').length === 2 ? v.split(',') : undefined;
    }, 60_000, 500);
    expect(both).toContain(before);
    const newPin = both.find((p) => p !== before)!;
    // WHEN a third node launches now (it reads the token and pins from SSM at boot)
    const nodes = d.asg.group('Nodes');
    d.asg.setDesired(nodes, 3);
    const all = await waitFor('a third node in service', async () => {
      const live = nodes.live();
      return live.length === 3 && live.every((i) => i.state === 'InService') ? live : undefined;
    }, 120_000, 500);
    // THEN all three nodes are registered
    await waitFor('three nodes in tctl nodes ls', async () => {
      const out = await tctl('nodes', 'ls');
      return all!.every((n) => out.includes(n.instance.address)) ? out : undefined;
    }, 60_000, 500);
    // WHEN the rotation completes THEN the pin is the new CA's alone
    await tctl('auth', 'rotate', '--type=host', '--manual', '--phase=update_servers');
    await tctl('auth', 'rotate', '--type=host', '--manual', '--phase=standby');
    await waitFor('the new pin alone in SSM', async () => d.ssm.get(pinParam)!.value === newPin, 60_000, 500);
    // AND a user who logs in now (trusting the new host CA only) reaches all three nodes: each moved to new host certificates on its own
    const bob = await ClusterUser.signUp(d, 'bob', [login.name], path.join(dir, 'bob'));
    expect(await bob.login()).toMatch(/Logged in as:\s+bob/);
    for (const node of all!) {
      const r = await bob.tsh(['ssh', `${login.name}@${node.instance.address}`, 'echo', `rotated-${node.id}`]);
      // On a failure, what tsh said and the node's console say why (the assertion alone shows only an empty stdout).
      const why = r.stdout.includes(`rotated-${node.id}`) ? '' : `tsh exit ${r.code}, stderr: ${r.stderr}\nconsole of ${node.id}:\n${node.instance.console(30)}`;
      expect({ stdout: r.stdout, why }).toEqual({ stdout: expect.stringContaining(`rotated-${node.id}`), why: '' });
    }
  });

  test('the CA keys are in KMS, usable by the auth role alone: the state table holds only their references, and the host CA rotation made new keys and scheduled the old ones for deletion', async () => {
    // GIVEN the CA records as the auth servers stored them
    const db = d.dynamoClient();
    const items = (await db.send(new ScanCommand({ TableName: outputs().StateTableName.value }))).Items ?? [];
    const cas = items
      .filter((i) => /^teleport\/authorities\/(user|host)\/acme$/.test(i.FullPath?.S ?? ''))
      .map((i) => JSON.parse(Buffer.from(i.Value!.B!).toString()) as { spec: { signing_keys: string[]; tls_key_pairs: { key: string }[] } });
    expect(cas).toHaveLength(2);
    // THEN every private key field is a KMS key reference
    const refs = cas.flatMap((ca) => [...ca.spec.signing_keys, ...ca.spec.tls_key_pairs.map((p) => p.key)].map((k) => Buffer.from(k, 'base64').toString()));
    expect(refs).toHaveLength(4);
    for (const ref of refs) expect(ref).toMatch(/^awskms:arn:aws:kms:[a-z0-9-]+:\d{12}:key\/[0-9a-f-]{36}$/);
    // AND KMS holds those four keys, each with the key policy that lets only the auth role sign
    const authRole = d.asg.group('Auth').live()[0].caller.roleArn;
    for (const ref of refs) {
      const policy = d.kms.policy(ref.slice('awskms:'.length));
      const signers = policy.Statement.filter((st: any) => [st.Action].flat().includes('kms:Sign')).map((st: any) => st.Principal.AWS);
      expect(signers).toEqual([authRole]);
    }
    // AND the rotated host CA's two old keys are pending deletion beside the four in use
    expect([d.kms.count(), d.kms.count({ pending: true })]).toEqual([4, 6]);
  });

  test('the IAM audit lists no denied call', () => {
    expect(d.audit.denied().map((e) => `${e.call.caller.name} ${e.call.action} ${e.call.resource}: ${e.decision.reason}`)).toEqual([]);
    expect(d.audit.calls().length).toBeGreaterThan(0);
  });
});
