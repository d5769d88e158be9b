/**
 * sim/lambda/events.ts: schedules fire at the accelerated pace with EventBridge's envelope, a rule
 * whose function's resource policy does not name it is denied, and pattern rules receive the put
 * events that match them and not the others.
 */
import { ResourceError } from '../../sim/lambda/errors';
import { EventRules, schedulePeriodMs } from '../../sim/lambda/events';
import { Functions } from '../../sim/lambda/functions';
import { arn, type CfnResource } from '../../sim/types';
import { waitFor } from '../helpers/proc';
import { fixture, physicalName, type Fixture } from './lambda-fixture';

/** Logs the event it receives as one JSON line. */
const RECORDER = `exports.handler = async (event) => { console.log('EVENT ' + JSON.stringify(event)); return 'ok'; };`;

const permission = (fn: string, rule: string): CfnResource => ({
  Type: 'AWS::Lambda::Permission',
  Properties: { Action: 'lambda:InvokeFunction', FunctionName: { 'Fn::GetAtt': [fn, 'Arn'] }, Principal: 'events.amazonaws.com', SourceArn: { 'Fn::GetAtt': [rule, 'Arn'] } },
});

const target = (fn: string, extra: Record<string, unknown> = {}) => ({ Arn: { 'Fn::GetAtt': [fn, 'Arn'] }, Id: 'Target0', RetryPolicy: { MaximumEventAgeInSeconds: 300, MaximumRetryAttempts: 4 }, ...extra });

/** The events a function received, from its output. */
function received(functions: Functions, logicalId: string): Record<string, any>[] {
  return [...functions.output(physicalName(logicalId)).matchAll(/EVENT (.*)/g)].map((m) => JSON.parse(m[1]));
}

describe('EventBridge rules', () => {
  let fx: Fixture;
  let functions: Functions;
  let rules: EventRules;

  beforeAll(() => {
    fx = fixture(
      { Rotator: { code: RECORDER }, Hook: { code: RECORDER } },
      {
        Every: { Type: 'AWS::Events::Rule', Properties: { ScheduleExpression: 'rate(1 hour)', State: 'ENABLED', Targets: [target('Rotator')] } },
        EveryAllow: permission('Rotator', 'Every'),
        // Targets the same function, but the function's only permission names the other rule.
        Unpermitted: { Type: 'AWS::Events::Rule', Properties: { ScheduleExpression: 'rate(1 hour)', State: 'ENABLED', Targets: [target('Rotator')] } },
        Lifecycle: {
          Type: 'AWS::Events::Rule',
          Properties: {
            EventPattern: {
              source: ['aws.autoscaling'],
              'detail-type': ['EC2 Instance-terminate Lifecycle Action'],
              detail: { AutoScalingGroupName: [{ Ref: 'AuthGroup' }, { prefix: 'nodes-' }] },
            },
            State: 'ENABLED',
            Targets: [target('Hook', { InputPath: '$.detail' }), target('Hook', { Id: 'Target1', Input: '{"fixed":true}' })],
          },
        },
        LifecycleAllow: permission('Hook', 'Lifecycle'),
      },
    );
    functions = Functions.create({ resources: fx.resources, resolve: fx.resolve, cdkOut: fx.cdkOut, credentials: fx.credentials, env: fx.env, log: fx.log, workDir: fx.workDir });
    // rate(1 hour) at time scale 36000: every 100 ms.
    rules = EventRules.create({ resources: fx.resources, resolve: fx.resolve, functions, log: fx.log, timeScale: 36_000 });
  });

  afterAll(async () => {
    rules?.close();
    await functions?.close();
    fx?.cleanup();
  });

  test('a rate() schedule fires at the accelerated pace with the scheduled-event envelope', async () => {
    // WHEN the hourly rule runs at time scale 36000
    // THEN the function receives three scheduled events within seconds
    const events = await waitFor('three scheduled events', () => {
      const got = received(functions, 'Rotator');
      return got.length >= 3 && got;
    });
    // AND each is EventBridge's envelope for the rule
    expect(events[0]).toEqual({
      version: '0',
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      'detail-type': 'Scheduled Event',
      source: 'aws.events',
      account: '123456789012',
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
      region: 'eu-west-1',
      resources: [arn.rule(physicalName('Every'))],
      detail: {},
    });
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
  });

  test('a rule the function\'s resource policy does not name is denied, and the function never runs for it', async () => {
    // WHEN the Unpermitted rule fires
    const denied = await waitFor('a denied delivery', () => rules.deliveries.find((d) => d.rule === physicalName('Unpermitted')));
    // THEN the delivery is denied, logged with the reason
    expect(denied).toMatchObject({ function: physicalName('Rotator'), outcome: 'denied', reason: expect.stringContaining(`for ${arn.rule(physicalName('Unpermitted'))}`) });
    expect(fx.lines.some((l) => l.includes(`rule ${physicalName('Unpermitted')} → ${physicalName('Rotator')} (Scheduled Event): denied`))).toBe(true);
    // AND none of the function's events came from that rule, while the permitted rule's did
    expect(rules.deliveries.filter((d) => d.rule === physicalName('Unpermitted')).every((d) => d.outcome === 'denied')).toBe(true);
    const sources = received(functions, 'Rotator').map((e) => e.resources[0]);
    expect(sources).toContain(arn.rule(physicalName('Every')));
    expect(sources).not.toContain(arn.rule(physicalName('Unpermitted')));
  });

  test('a pattern rule gets a matching put event and not a non-matching one', async () => {
    // WHEN one event of another group and two of the rule's groups are put
    const detail = (group: string) => ({ AutoScalingGroupName: group, EC2InstanceId: `i-${group}`, LifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING' });
    const [other] = await rules.put({ source: 'aws.autoscaling', 'detail-type': 'EC2 Instance-terminate Lifecycle Action', detail: detail('web-1') });
    const [wrongType] = await rules.put({ source: 'aws.autoscaling', 'detail-type': 'EC2 Instance Launch Successful', detail: detail(physicalName('AuthGroup')) });
    const matching = await rules.put(
      { source: 'aws.autoscaling', 'detail-type': 'EC2 Instance-terminate Lifecycle Action', detail: detail(physicalName('AuthGroup')) },
      { source: 'aws.autoscaling', 'detail-type': 'EC2 Instance-terminate Lifecycle Action', detail: detail('nodes-7') },
    );
    // THEN only the matching events were delivered, to both targets
    expect(rules.deliveries.filter((d) => [other, wrongType].includes(d.eventId))).toEqual([]);
    expect(rules.deliveries.filter((d) => matching.includes(d.eventId)).map((d) => d.outcome)).toEqual(['invoked', 'invoked', 'invoked', 'invoked']);
    // AND the function received their detail (InputPath $.detail) and the second target's constant Input, nothing else
    const got = await waitFor('the four deliveries', () => {
      const events = received(functions, 'Hook');
      return events.length >= 4 && events;
    });
    expect(got.filter((e) => !e.fixed).map((e) => e.AutoScalingGroupName).sort()).toEqual([physicalName('AuthGroup'), 'nodes-7'].sort());
    expect(got.filter((e) => e.fixed)).toEqual([{ fixed: true }, { fixed: true }]);
    expect(got).toHaveLength(4);
  });

  test('schedules: rate() in minutes, hours and days; cron() is refused clearly', () => {
    expect(schedulePeriodMs('R', 'rate(1 minute)')).toBe(60_000);
    expect(schedulePeriodMs('R', 'rate(5 minutes)')).toBe(300_000);
    expect(schedulePeriodMs('R', 'rate(2 hours)')).toBe(7_200_000);
    expect(schedulePeriodMs('R', 'rate(1 day)')).toBe(86_400_000);
    expect(() => schedulePeriodMs('R', 'rate(1 minutes)')).toThrow('invalid schedule expression');
    expect(() => schedulePeriodMs('R', 'cron(0 12 * * ? *)')).toThrow(ResourceError);
    expect(() => schedulePeriodMs('R', 'cron(0 12 * * ? *)')).toThrow('R: cron schedules are not supported locally');
  });
});
