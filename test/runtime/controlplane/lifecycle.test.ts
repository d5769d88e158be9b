/**
 * The Auto Scaling termination hook Lambda against a real DynamoDB
 * (DynamoDB Local) holding presence records as the auth server writes them,
 * with Auto Scaling and SSM (the address lookup) mocked at the SDK level.
 */
import { AutoScalingClient, CompleteLifecycleActionCommand } from '@aws-sdk/client-auto-scaling';
import { DescribeInstanceInformationCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { Presence } from '../../../runtime/auth/presence';
import { Server } from '../../../runtime/auth/resources';
import { DynamoBackend } from '../../../runtime/backend/dynamodb';
import { handleLifecycle, handler } from '../../../runtime/controlplane/lifecycle';
import { setLogWriter } from '../../../runtime/utils/logger';
import { DynamoDbLocal, LOCAL_REGION } from '../../helpers/dynamodb';

const TABLE = 'teleport-state';
const DOOMED = 'i-0123456789abcdef0';

function server(kind: Server['kind'], name: string, addr: string, hostname: string): Server {
  return { kind, version: 'v2', metadata: { name, namespace: 'default' }, spec: { addr, hostname } };
}

/** What EventBridge delivers for an `EC2 Instance-terminate Lifecycle Action`. */
function terminateEvent(instanceId: string, transition = 'autoscaling:EC2_INSTANCE_TERMINATING') {
  return {
    version: '0',
    id: '12345678-1234-1234-1234-123456789012',
    'detail-type': 'EC2 Instance-terminate Lifecycle Action',
    source: 'aws.autoscaling',
    account: '123456789012',
    time: '2026-11-22T07:00:00Z',
    region: LOCAL_REGION,
    resources: ['arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:x:autoScalingGroupName/teleport-node'],
    detail: {
      LifecycleActionToken: '87654321-4321-4321-4321-210987654321',
      AutoScalingGroupName: 'teleport-node',
      LifecycleHookName: 'teleport-node-terminate',
      EC2InstanceId: instanceId,
      LifecycleTransition: transition,
      Origin: 'AutoScalingGroup',
      Destination: 'EC2',
    },
  };
}

describe('lifecycle hook handler (Auto Scaling and SSM mocked)', () => {
  const asg = mockClient(AutoScalingClient);
  const ssm = mockClient(SSMClient);
  const savedEnv = { ...process.env };
  let ddb: DynamoDbLocal;
  let state: DynamoBackend;
  let presence: Presence;

  const names = async () =>
    (await Promise.all((['node', 'proxy', 'auth_server'] as const).map((k) => presence.list(k)))).flat().map((s) => s.metadata.name).sort();

  beforeAll(async () => {
    ddb = await DynamoDbLocal.start();
    Object.assign(process.env, {
      TELEPORT_CLUSTER_NAME: 'example.com',
      TELEPORT_DYNAMO_TABLE_NAME: TABLE,
      AWS_REGION: LOCAL_REGION,
      TELEPORT_DYNAMO_ENDPOINT: ddb.endpoint,
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
    });
    setLogWriter(() => undefined);
    state = await DynamoBackend.open({ tableName: TABLE, endpoint: ddb.endpoint, accessKey: 'local', secretKey: 'local' });
    presence = new Presence(state);
  });
  beforeEach(async () => {
    asg.reset();
    asg.on(CompleteLifecycleActionCommand).resolves({});
    ssm.reset();
    // The SSM agent's inventory knows only the doomed instance's IP.
    ssm.on(DescribeInstanceInformationCommand).resolves({ InstanceInformationList: [] });
    ssm.on(DescribeInstanceInformationCommand, { Filters: [{ Key: 'InstanceIds', Values: [DOOMED] }] }).resolves({
      InstanceInformationList: [{ InstanceId: DOOMED, IPAddress: '10.0.1.5' }],
    });
    for (const kind of ['node', 'proxy', 'auth_server'] as const) for (const s of await presence.list(kind)) await presence.delete(kind, s.metadata.name);
    // Two tiers on the doomed instance (10.0.1.5), one node beside it, one auth server elsewhere.
    await presence.upsert(server('node', 'uuid-doomed-node', '10.0.1.5:3022', 'ip-10-0-1-5-ec2-internal'));
    await presence.upsert(server('proxy', 'uuid-doomed-proxy', '10.0.1.5:3023', 'ip-10-0-1-5-ec2-internal'));
    await presence.upsert(server('node', 'uuid-other-node', '10.0.1.50:3022', 'ip-10-0-1-50-ec2-internal'));
    await presence.upsert(server('auth_server', 'uuid-auth', '10.0.2.7:3025', 'ip-10-0-2-7-ec2-internal'));
  });
  afterAll(async () => {
    await state?.close();
    await ddb?.stop();
    process.env = savedEnv;
    setLogWriter((line) => process.stderr.write(line + '\n'));
    asg.restore();
    ssm.restore();
  });

  const completed = () => asg.commandCalls(CompleteLifecycleActionCommand).map((c) => c.args[0].input);
  const expectContinued = (instanceId: string) =>
    expect(completed()).toEqual([
      {
        AutoScalingGroupName: 'teleport-node',
        LifecycleHookName: 'teleport-node-terminate',
        LifecycleActionToken: '87654321-4321-4321-4321-210987654321',
        InstanceId: instanceId,
        LifecycleActionResult: 'CONTINUE',
      },
    ]);

  it('GIVEN an instance whose private IP the SSM agent reports WHEN it terminates THEN its node and proxy records go, the others stay, and termination continues', async () => {
    // WHEN the EventBridge event (instance id only) reaches the Lambda handler
    const out = await handler(terminateEvent(DOOMED));
    // THEN the address was looked up for that instance
    expect(ssm.commandCalls(DescribeInstanceInformationCommand).map((c) => c.args[0].input)).toEqual([{ Filters: [{ Key: 'InstanceIds', Values: [DOOMED] }] }]);
    // and the records advertising that IP are gone, the rest kept
    expect(out?.removed.sort()).toEqual(['uuid-doomed-node', 'uuid-doomed-proxy']);
    expect(await names()).toEqual(['uuid-auth', 'uuid-other-node']);
    expectContinued(DOOMED);
  });

  it('GIVEN the address lookup is denied WHEN an instance with a resource-name hostname terminates THEN it is still matched by instance id', async () => {
    // GIVEN
    ssm.on(DescribeInstanceInformationCommand).rejects(Object.assign(new Error('not authorized to perform ssm:DescribeInstanceInformation'), { name: 'AccessDeniedException' }));
    await presence.upsert(server('node', 'uuid-rn-node', '10.0.3.3:3022', `${DOOMED}-us-east-1-compute-internal`));
    // WHEN
    const out = await handler(terminateEvent(DOOMED));
    // THEN
    expect(out?.removed).toEqual(['uuid-rn-node']);
    expect(await names()).toEqual(['uuid-auth', 'uuid-doomed-node', 'uuid-doomed-proxy', 'uuid-other-node']);
    expectContinued(DOOMED);
  });

  it('GIVEN the SNS form carrying the private DNS name WHEN the Lambda handler runs from its environment THEN the records whose nodename is that name go', async () => {
    // GIVEN the hook's message as SNS delivers it, the instance's addresses in the message
    const message = { ...terminateEvent(DOOMED).detail, PrivateDnsName: 'ip-10-0-1-5.ec2.internal' };
    // WHEN
    const out = await handler({ Records: [{ EventSource: 'aws:sns', Sns: { Message: JSON.stringify(message) } }] });
    // THEN
    expect(out?.removed.sort()).toEqual(['uuid-doomed-node', 'uuid-doomed-proxy']);
    expect(await names()).toEqual(['uuid-auth', 'uuid-other-node']);
    expectContinued(DOOMED);
  });

  it('GIVEN resource-name hostnames (nodename starts with the instance id) WHEN an instance the agent does not know terminates THEN its record goes', async () => {
    // GIVEN
    const other = 'i-0fedcba9876543210';
    await presence.upsert(server('node', 'uuid-rn-node', '10.0.3.3:3022', `${other}-us-east-1-compute-internal`));
    // WHEN
    const out = await handler(terminateEvent(other));
    // THEN only that record: the others are untouched
    expect(out?.removed).toEqual(['uuid-rn-node']);
    expect(await names()).toEqual(['uuid-auth', 'uuid-doomed-node', 'uuid-doomed-proxy', 'uuid-other-node']);
    expectContinued(other);
  });

  it('GIVEN the cluster state is unreachable WHEN an instance terminates THEN the termination still continues and the invocation fails', async () => {
    // WHEN / THEN
    await expect(
      handleLifecycle(terminateEvent(DOOMED), { openBackend: () => Promise.reject(new Error('table unreachable')) }),
    ).rejects.toThrow(/table unreachable/);
    expectContinued(DOOMED);
    expect(await names()).toHaveLength(4);
  });

  it('GIVEN the action was already completed by an earlier attempt WHEN the hook is retried THEN it succeeds', async () => {
    // GIVEN
    asg.on(CompleteLifecycleActionCommand).rejects(Object.assign(new Error('No active Lifecycle Action found with instance ID i-0123456789abcdef0'), { name: 'ValidationError' }));
    // WHEN
    const out = await handleLifecycle(terminateEvent(DOOMED), { describe: async () => ({ privateIp: '10.0.1.5' }) });
    // THEN
    expect(out?.removed.sort()).toEqual(['uuid-doomed-node', 'uuid-doomed-proxy']);
  });

  it('GIVEN a launch transition or a test notification THEN no record is touched', async () => {
    // WHEN a launching hook arrives
    const out = await handler(terminateEvent(DOOMED, 'autoscaling:EC2_INSTANCE_LAUNCHING'));
    // THEN it is let through unchanged
    expect(out?.removed).toEqual([]);
    expectContinued(DOOMED);
    asg.resetHistory();
    // WHEN Auto Scaling tests the notification target
    expect(await handler({ Records: [{ Sns: { Message: JSON.stringify({ Event: 'autoscaling:TEST_NOTIFICATION', AutoScalingGroupName: 'teleport-node' }) } }] })).toBeUndefined();
    // THEN nothing is called
    expect(asg.calls()).toHaveLength(0);
    expect(ssm.calls()).toHaveLength(0);
    expect(await names()).toHaveLength(4);
  });

  it('GIVEN something that is not a hook event THEN it is rejected naming what is missing', async () => {
    await expect(handler({ detail: { EC2InstanceId: 'not-an-id' } })).rejects.toThrow(/not a lifecycle hook event: .*EC2InstanceId/);
    expect(asg.calls()).toHaveLength(0);
  });
});
