/**
 * The template's EventBridge rules (`AWS::Events::Rule`, default event bus) with Lambda targets.
 * A `ScheduleExpression` rule fires every `rate(N minute|hour|day[s])`, divided by `timeScale` (a
 * 1-hour rate at timeScale 60 fires each minute), first one period after start; `cron(...)` is
 * refused. An `EventPattern` rule receives the events given to `put` that match it (`pattern.ts`).
 * Each target gets the event in EventBridge's envelope (or its `Input` / `InputPath`), invoked
 * asynchronously as EventBridge invokes Lambda, only if the function's resource policy
 * (`AWS::Lambda::Permission` for `events.amazonaws.com` and the rule's ARN) allows it: without one
 * the delivery is denied and logged, and not retried (a permission error is not retriable in
 * EventBridge). A function's own failures are retried by Lambda's asynchronous invocation
 * (`functions.ts`), as in AWS; a target's `RetryPolicy` governs only retriable delivery errors
 * (throttling, an unavailable service), which the local asynchronous invocation does not have, so
 * it is not used.
 */
import { randomUUID } from 'node:crypto';
import { ACCOUNT, type CfnResources, type Log, REGION, type Resolve } from '../types';
import { ResourceError } from './errors';
import { type Functions, parseFunctionRef } from './functions';
import { compilePattern, type EventMatcher } from './pattern';
import { FunctionPolicies } from './permissions';

export interface EventRulesOptions {
  readonly resources: CfnResources;
  readonly resolve: Resolve;
  readonly functions: Functions;
  readonly log: Log;
  /** How much faster than real time schedules fire. @default 1 */
  readonly timeScale?: number;
}

/** An event as `PutEvents` takes it (default bus). */
export interface PutEvent {
  readonly source: string;
  readonly 'detail-type': string;
  readonly detail: unknown;
  readonly resources?: readonly string[];
  readonly time?: Date;
}

/** One event handed (or refused) to one target. */
export interface Delivery {
  readonly rule: string;
  readonly eventId: string;
  readonly function: string;
  readonly outcome: 'invoked' | 'denied' | 'failed';
  readonly reason?: string;
}

interface Target {
  readonly id: string;
  readonly functionArn: string;
  readonly functionName: string;
  /** What the function receives for an event. */
  readonly input: (event: Record<string, unknown>) => unknown;
}

interface Rule {
  readonly logicalId: string;
  readonly name: string;
  readonly arn: string;
  readonly periodMs?: number;
  readonly matches?: EventMatcher;
  readonly targets: readonly Target[];
}

const UNITS: Record<string, number> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };

/** The period of a `rate(...)` expression, in ms; anything else is refused. */
export function schedulePeriodMs(logicalId: string, expression: string): number {
  if (expression.startsWith('cron(')) throw new ResourceError(logicalId, `cron schedules are not supported locally (${expression}): use rate()`);
  const m = /^rate\((\d+) (minute|hour|day)(s?)\)$/.exec(expression);
  if (!m || Number(m[1]) < 1 || (m[1] === '1') === (m[3] === 's')) throw new ResourceError(logicalId, `invalid schedule expression ${expression}`);
  return Number(m[1]) * UNITS[m[2]];
}

/** `InputPath`: `$` or a path of names and indexes (`$.detail.items[0]`). */
function jsonPath(logicalId: string, expr: string): (event: unknown) => unknown {
  if (!/^\$((\.[A-Za-z0-9_-]+)|(\[\d+\]))*$/.test(expr)) throw new ResourceError(logicalId, `InputPath ${expr} is not supported (only $.name.name[0] paths)`);
  const steps = [...expr.matchAll(/\.([A-Za-z0-9_-]+)|\[(\d+)\]/g)].map((s) => s[1] ?? Number(s[2]));
  return (event) => steps.reduce<unknown>((v, step) => (v as Record<string | number, unknown> | undefined)?.[step], event);
}

function parseRule(logicalId: string, props: Record<string, any>, resolve: Resolve): Rule | undefined {
  const fail = (reason: string) => new ResourceError(logicalId, reason);
  if ((resolve(props.State) ?? 'ENABLED') !== 'ENABLED') return undefined;
  const bus = resolve(props.EventBusName);
  if (bus !== undefined && bus !== 'default') throw fail(`event bus ${bus} is not supported (default bus only)`);
  const ruleArn: string = resolve({ 'Fn::GetAtt': [logicalId, 'Arn'] });
  let matches: EventMatcher | undefined;
  if (props.EventPattern !== undefined) {
    try {
      matches = compilePattern(resolve(props.EventPattern));
    } catch (err) {
      throw fail((err as Error).message);
    }
  }
  const targets = ((resolve(props.Targets) ?? []) as Record<string, any>[]).map((t): Target => {
    const ref = typeof t.Arn === 'string' && t.Arn.startsWith('arn:') && t.Arn.split(':')[2] === 'lambda' ? parseFunctionRef(t.Arn) : undefined;
    if (!ref) throw fail(`target ${t.Id} (${t.Arn}) is not a Lambda function: only Lambda targets are supported`);
    if (t.InputTransformer) throw fail(`target ${t.Id}: InputTransformer is not supported`);
    let input: Target['input'] = (event) => event;
    if (t.InputPath !== undefined) input = jsonPath(logicalId, t.InputPath);
    if (t.Input !== undefined) {
      let constant: unknown;
      try {
        constant = JSON.parse(t.Input);
      } catch {
        throw fail(`target ${t.Id}: Input is not JSON`);
      }
      input = () => constant;
    }
    return { id: t.Id, functionArn: t.Arn, functionName: ref.name, input };
  });
  return {
    logicalId,
    name: ruleArn.slice(ruleArn.lastIndexOf('/') + 1),
    arn: ruleArn,
    ...(props.ScheduleExpression !== undefined ? { periodMs: schedulePeriodMs(logicalId, resolve(props.ScheduleExpression)) } : {}),
    ...(matches ? { matches } : {}),
    targets,
  };
}

/** EventBridge's envelope of an event. */
function envelope(e: PutEvent): Record<string, unknown> {
  return {
    version: '0',
    id: randomUUID(),
    'detail-type': e['detail-type'],
    source: e.source,
    account: ACCOUNT,
    time: (e.time ?? new Date()).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    region: REGION,
    resources: [...(e.resources ?? [])],
    detail: e.detail ?? {},
  };
}

export class EventRules {
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly kept: Delivery[] = [];

  private constructor(
    private readonly rules: readonly Rule[],
    private readonly policies: FunctionPolicies,
    private readonly opts: EventRulesOptions,
  ) {}

  /** Reads the rules of the template and starts their schedules. */
  static create(opts: EventRulesOptions): EventRules {
    const rules = Object.entries(opts.resources)
      .filter(([, r]) => r.Type === 'AWS::Events::Rule')
      .map(([id, r]) => parseRule(id, r.Properties ?? {}, opts.resolve))
      .filter((r): r is Rule => r !== undefined);
    const events = new EventRules(rules, FunctionPolicies.fromTemplate(opts.resources, opts.resolve), opts);
    const scale = opts.timeScale ?? 1;
    for (const rule of rules) {
      if (rule.periodMs === undefined) continue;
      opts.log(`events: rule ${rule.name} fires every ${rule.periodMs / scale} ms (${rule.periodMs / 1000} s at time scale ${scale})`);
      const fire = () => void events.deliver(rule, envelope({ source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {}, resources: [rule.arn] }));
      events.timers.push(setInterval(fire, rule.periodMs / scale));
    }
    return events;
  }

  /** The rules' names. */
  names(): string[] {
    return this.rules.map((r) => r.name);
  }

  /** Every delivery so far, oldest first. */
  get deliveries(): readonly Delivery[] {
    return this.kept;
  }

  /** Puts events on the default bus; resolves with their ids once the matching rules' targets have them (or were refused). */
  async put(...events: PutEvent[]): Promise<string[]> {
    const ids: string[] = [];
    for (const e of events) {
      const event = envelope(e);
      ids.push(event.id as string);
      await Promise.all(this.rules.filter((r) => r.matches?.(event)).map((r) => this.deliver(r, event)));
    }
    return ids;
  }

  /** Stops the schedules. */
  close(): void {
    for (const t of this.timers) clearInterval(t);
  }

  private async deliver(rule: Rule, event: Record<string, unknown>): Promise<void> {
    await Promise.all(
      rule.targets.map(async (target) => {
        const keep = (outcome: Delivery['outcome'], reason?: string) => {
          this.kept.push({ rule: rule.name, eventId: event.id as string, function: target.functionName, outcome, ...(reason ? { reason } : {}) });
          this.opts.log(`events: rule ${rule.name} → ${target.functionName} (${event['detail-type']}): ${outcome}${reason ? `: ${reason}` : ''}`);
        };
        const decision = this.policies.check({ functionName: target.functionName, principal: 'events.amazonaws.com', sourceArn: rule.arn });
        if (!decision.allowed) return keep('denied', decision.reason);
        try {
          await this.opts.functions.invoke(target.functionArn, target.input(event), { type: 'Event' });
          keep('invoked');
        } catch (err) {
          keep('failed', (err as Error).message);
        }
      }),
    );
  }
}
