/**
 * `teleport signal-ready`: an AMI instance tells CloudFormation that it is healthy, so that a
 * health-gated rolling update (`WaitOnResourceSignals`) or a CreationPolicy replaces the next
 * instance only once this one serves. It waits until every readiness check of its role holds
 * (runtime/instance/readiness.ts), then, when its group is behind load balancers
 * (`TELEPORT_TARGET_GROUP_ARNS`), until every one of those target groups reports it `healthy`
 * (Elastic Load Balancing's DescribeTargetHealth): an open port is not yet a target the load
 * balancer sends traffic to, which it becomes only after HealthyThresholdCount passing checks.
 * Then it sends `SignalResource` SUCCESS for the stack and logical id the conf names
 * (`TELEPORT_CFN_STACK`, `TELEPORT_CFN_RESOURCE`) with the instance id as the unique id; after the
 * timeout, which both waits share, it sends FAILURE and fails naming what was not ready. SDK
 * errors worth waiting out (throttling, the network, 5xx) are retried with a doubling backoff.
 */
import {
  CloudFormationClient,
  type CloudFormationClientConfig,
  ResourceSignalStatus,
  SignalResourceCommand,
} from '@aws-sdk/client-cloudformation';
import {
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
  type ElasticLoadBalancingV2ClientConfig,
  type TargetHealthDescription,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import { formatDuration } from '../config/duration';
import { AccessDeniedError, BadParameterError, ConnectionProblemError, TeleportError } from '../utils/errors';
import type { InstanceConf } from './conf';
import { unreadyChecks, type ReadinessCheck, type Unready } from './readiness';

export type { Unready } from './readiness';

/** What the instance signals: the stack, the auto scaling group's logical id, and itself. */
export interface SignalTarget {
  readonly stack: string;
  readonly resource: string;
  readonly instanceId: string;
}

export type SignalStatus = 'SUCCESS' | 'FAILURE';

export interface RetryOptions {
  /** Tries in all (the first included). @default 5 */
  readonly attempts?: number;
  /** The wait after the first failure; doubles up to `maxDelayMs`. @default 1000 */
  readonly initialDelayMs?: number;
  /** @default 16000 */
  readonly maxDelayMs?: number;
  /** Called before each wait, e.g. to log it; `operation` is the call retried (`SignalResource SUCCESS`, `DescribeTargetHealth <target group>`). */
  readonly onRetry?: (error: string, attempt: number, delayMs: number, operation: string) => void;
}

/** The signal was delivered, or CloudFormation waits for none from this instance (a reboot, a scale-out). */
export type SignalOutcome = { readonly delivered: true } | { readonly delivered: false; readonly reason: string };

/** What became of a FAILURE signal: its outcome, or why it could not be sent. */
export type FailureOutcome = SignalOutcome | { readonly error: string };

function failureText(failure: FailureOutcome): string {
  if ('error' in failure) return `and the FAILURE signal could not be sent: ${failure.error}`;
  return failure.delivered ? 'signalled FAILURE to CloudFormation' : `no FAILURE signal delivered: ${failure.reason}`;
}

/** The role was not ready within the timeout: a local check failed, or a target group did not report the instance healthy. */
export class RoleNotReadyError extends TeleportError {
  constructor(
    readonly unready: readonly Unready[],
    readonly timeoutMs: number,
    /** What became of the FAILURE signal. */
    readonly failure: FailureOutcome,
  ) {
    const what = unready.map((u) => `${u.check} (${u.reason})`).join('; ');
    super('connection_problem', `this instance's role was not ready after ${formatDuration(timeoutMs)}: ${what}; ${failureText(failure)}`);
  }
}

/**
 * A target group cannot tell this instance's health, for a reason no retry mends: the instance
 * role may not call DescribeTargetHealth, or the target group does not exist. Waiting on would
 * only delay the FAILURE, so it is sent at once.
 */
export class TargetHealthUncheckableError extends TeleportError {
  constructor(
    readonly targetGroup: string,
    readonly instanceId: string,
    /** The SDK's error, as `Name: message`. */
    readonly error: string,
    readonly denied: boolean,
    /** What became of the FAILURE signal; absent until one was tried. */
    readonly failure?: FailureOutcome,
  ) {
    const hint = denied ? ' (the instance role needs elasticloadbalancing:DescribeTargetHealth)' : '';
    super(
      denied ? 'access_denied' : 'bad_parameter',
      `cannot check the health of instance ${instanceId} in ${targetGroupCheck(targetGroup)}: ${error}${hint}${failure ? `; ${failureText(failure)}` : ''}`,
    );
  }
}

/** The CloudFormation client: the default credential chain and endpoint (`AWS_ENDPOINT_URL` overrides it), no SDK retries (ours are). */
export function cloudFormationClient(region: string, overrides: Partial<CloudFormationClientConfig> = {}): CloudFormationClient {
  return new CloudFormationClient({ region, maxAttempts: 1, requestHandler: { connectionTimeout: 5_000, requestTimeout: 10_000 }, ...overrides });
}

/** The Elastic Load Balancing client, made as {@link cloudFormationClient} (`AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2` overrides the endpoint). */
export function loadBalancingClient(region: string, overrides: Partial<ElasticLoadBalancingV2ClientConfig> = {}): ElasticLoadBalancingV2Client {
  return new ElasticLoadBalancingV2Client({ region, maxAttempts: 1, requestHandler: { connectionTimeout: 5_000, requestTimeout: 10_000 }, ...overrides });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface WaitOptions {
  readonly timeoutMs: number;
  /** Time between two rounds of probes. @default 2000 */
  readonly pollMs?: number;
  /** Called after each round with what is not ready yet (empty when everything is). */
  readonly onPoll?: (unready: Unready[]) => void;
}

/** Probes every check until all hold ([] returned) or the timeout passes (the last round's unready checks returned). */
export async function waitUntilReady(checks: readonly ReadinessCheck[], opts: WaitOptions): Promise<Unready[]> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const unready = await unreadyChecks(checks);
    opts.onPoll?.(unready);
    if (unready.length === 0) return [];
    const wait = Math.min(opts.pollMs ?? 2000, deadline - Date.now());
    if (wait <= 0) return unready;
    await sleep(wait);
  }
}

/** Errors worth another try: throttling, the network, the service's own failures. */
function retryable(err: unknown): boolean {
  const e = err as { name?: string; $retryable?: unknown; $metadata?: { httpStatusCode?: number } };
  if (e.$retryable) return true;
  if (['Throttling', 'ThrottlingException', 'RequestLimitExceeded', 'TooManyRequestsException', 'RequestTimeout', 'ServiceUnavailable', 'InternalFailure'].includes(e.name ?? '')) {
    return true;
  }
  const status = e.$metadata?.httpStatusCode;
  return status === undefined || status === 429 || status >= 500;
}

/**
 * CloudFormation's answer when no operation waits for this resource's signals, e.g. "Stack arn:...
 * is in UPDATE_COMPLETE state and cannot be signaled": an instance that rebooted, or that the
 * group launched outside a stack operation (scale-out, replacement of an unhealthy one).
 */
const NOT_WAITING = /cannot be signaled/i;

const errorText = (err: unknown) => `${(err as Error).name}: ${(err as Error).message}`;

const isDenied = (err: unknown) => ['AccessDenied', 'AccessDeniedException'].includes((err as Error).name);

/** The last try of {@link withRetries}: its value, or the error that ended the tries. */
type Tried<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown; readonly attempts: number };

/**
 * Tries `call` until it succeeds, fails with an error not worth another try, has been tried
 * `retry.attempts` times, or the next wait would end after `deadline` (epoch ms). The waits
 * double from `initialDelayMs` up to `maxDelayMs`.
 */
async function withRetries<T>(operation: string, call: () => Promise<T>, retry: RetryOptions, deadline = Infinity): Promise<Tried<T>> {
  const attempts = Math.max(1, retry.attempts ?? 5);
  let delayMs = retry.initialDelayMs ?? 1000;
  for (let attempt = 1; ; attempt++) {
    try {
      return { ok: true, value: await call() };
    } catch (error) {
      const wait = Math.min(delayMs, retry.maxDelayMs ?? 16_000, deadline - Date.now());
      if (!retryable(error) || attempt >= attempts || wait <= 0) return { ok: false, error, attempts: attempt };
      retry.onRetry?.(errorText(error), attempt, wait, operation);
      await sleep(wait);
      delayMs *= 2;
    }
  }
}

/** Sends one signal, retrying what is worth it. */
export async function sendSignal(cfn: CloudFormationClient, target: SignalTarget, status: SignalStatus, retry: RetryOptions = {}): Promise<SignalOutcome> {
  const what = `SignalResource ${status} for ${target.resource} in stack ${target.stack} (instance ${target.instanceId})`;
  const tried = await withRetries(`SignalResource ${status}`, () =>
    cfn.send(
      new SignalResourceCommand({
        StackName: target.stack,
        LogicalResourceId: target.resource,
        UniqueId: target.instanceId,
        Status: status === 'SUCCESS' ? ResourceSignalStatus.SUCCESS : ResourceSignalStatus.FAILURE,
      }),
    ),
    retry,
  );
  if (tried.ok) return { delivered: true };
  const e = tried.error as Error;
  if (e.name === 'ValidationError' && NOT_WAITING.test(e.message)) return { delivered: false, reason: `CloudFormation waits for no signal: ${e.message}` };
  if (!retryable(e)) {
    const message = `cannot send ${what}: ${errorText(e)}`;
    throw isDenied(e) ? new AccessDeniedError(`${message} (the instance role needs cloudformation:SignalResource on the stack)`) : new BadParameterError(message);
  }
  throw new ConnectionProblemError(`cannot send ${what} after ${tried.attempts} attempts: ${errorText(e)}`, { cause: e });
}

/** The check a target group stands for, as an {@link Unready} names it. */
export function targetGroupCheck(arn: string): string {
  return `target group ${arn}`;
}

/** What a target group says of this instance: undefined when healthy, else its state, reason and description. */
function healthReason(descriptions: readonly TargetHealthDescription[]): string | undefined {
  if (descriptions.length === 0) return 'no health reported for this instance';
  const bad = descriptions.find((d) => d.TargetHealth?.State !== 'healthy');
  if (!bad) return undefined;
  const h = bad.TargetHealth ?? {};
  const why = [h.Reason, h.Description].filter(Boolean).join(': ');
  const port = descriptions.length > 1 && bad.Target?.Port !== undefined ? ` on port ${bad.Target.Port}` : '';
  return `${h.State ?? 'no state'}${port}${why ? ` (${why})` : ''}`;
}

/**
 * One DescribeTargetHealth of `instanceId` in `arn`: undefined when healthy, else why not (a
 * call that still failed after its retries is a reason too: the next round asks again). Throws a
 * {@link TargetHealthUncheckableError} for an error no retry mends.
 */
async function probeTargetGroup(elb: ElasticLoadBalancingV2Client, arn: string, instanceId: string, retry: RetryOptions, deadline: number): Promise<string | undefined> {
  const tried = await withRetries(`DescribeTargetHealth ${arn}`, () => elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: arn, Targets: [{ Id: instanceId }] })), retry, deadline);
  if (tried.ok) return healthReason(tried.value.TargetHealthDescriptions ?? []);
  if (!retryable(tried.error)) throw new TargetHealthUncheckableError(arn, instanceId, errorText(tried.error), isDenied(tried.error));
  return `cannot check after ${tried.attempts} ${tried.attempts === 1 ? 'attempt' : 'attempts'}: ${errorText(tried.error)}`;
}

export interface TargetHealthWaitOptions {
  /** When to give up (epoch ms). */
  readonly deadline: number;
  /** Time between two rounds of DescribeTargetHealth. @default 5000 */
  readonly pollMs?: number;
  readonly retry?: RetryOptions;
  /** Called after each round with the target groups that do not report the instance healthy yet. */
  readonly onPoll?: (unready: Unready[]) => void;
}

/**
 * Asks every target group, each round, for the health of `instanceId` until all of them report it
 * `healthy` in the same round ([] returned) or the deadline passes (each group's last state
 * returned). Throws a {@link TargetHealthUncheckableError} without waiting when a group cannot tell.
 */
export async function waitUntilInService(elb: ElasticLoadBalancingV2Client, targetGroups: readonly string[], instanceId: string, opts: TargetHealthWaitOptions): Promise<Unready[]> {
  for (;;) {
    const reasons = await Promise.all(targetGroups.map((arn) => probeTargetGroup(elb, arn, instanceId, opts.retry ?? {}, opts.deadline)));
    const unready = targetGroups.flatMap((arn, i) => (reasons[i] === undefined ? [] : [{ check: targetGroupCheck(arn), reason: reasons[i] }]));
    opts.onPoll?.(unready);
    if (unready.length === 0) return [];
    const wait = Math.min(opts.pollMs ?? 5000, opts.deadline - Date.now());
    if (wait <= 0) return unready;
    await sleep(wait);
  }
}

export interface SignalReadyOptions {
  readonly conf: Pick<InstanceConf, 'signal'>;
  /** The role's readiness checks (readinessChecks of readiness.ts). */
  readonly checks: readonly ReadinessCheck[];
  /** This instance's id (IMDS); asked only when there is something to signal. */
  readonly instanceId: () => Promise<string>;
  /** The client to signal with; made only when there is something to signal. */
  readonly cloudFormation: () => CloudFormationClient;
  /** The client to ask the target groups with; made only when the conf names target groups. */
  readonly loadBalancing: () => ElasticLoadBalancingV2Client;
  /** For the local checks and the target groups together. */
  readonly timeoutMs: number;
  /** Between two rounds of local checks. @default 2000 */
  readonly pollMs?: number;
  /** Between two rounds of DescribeTargetHealth. @default 5000 */
  readonly targetHealthPollMs?: number;
  readonly retry?: RetryOptions;
  readonly onPoll?: (unready: Unready[]) => void;
}

export type SignalReadyResult =
  | { readonly signalled: false; readonly reason: string }
  | { readonly signalled: true; readonly target: SignalTarget; readonly outcome: SignalOutcome };

/**
 * Waits for the checks, then for the conf's target groups to report this instance healthy, and
 * signals SUCCESS; or, after the timeout, signals FAILURE and throws a {@link RoleNotReadyError}
 * (a {@link TargetHealthUncheckableError}, without waiting, when a target group cannot tell).
 * Without a `signal` in the conf it does nothing.
 */
export async function signalReady(opts: SignalReadyOptions): Promise<SignalReadyResult> {
  const signal = opts.conf.signal;
  if (!signal) return { signalled: false, reason: 'the conf names no stack to signal (no TELEPORT_CFN_STACK and TELEPORT_CFN_RESOURCE)' };
  const deadline = Date.now() + opts.timeoutMs;
  // The instance id first: without it nothing can be signalled, so a broken metadata service fails at once.
  const target: SignalTarget = { stack: signal.stack, resource: signal.resource, instanceId: await opts.instanceId() };
  let unready = await waitUntilReady(opts.checks, { timeoutMs: Math.max(0, deadline - Date.now()), pollMs: opts.pollMs, onPoll: opts.onPoll });
  let uncheckable: TargetHealthUncheckableError | undefined;
  if (unready.length === 0 && signal.targetGroups.length > 0) {
    const elb = opts.loadBalancing();
    try {
      unready = await waitUntilInService(elb, signal.targetGroups, target.instanceId, { deadline, pollMs: opts.targetHealthPollMs, retry: opts.retry, onPoll: opts.onPoll });
    } catch (err) {
      if (!(err instanceof TargetHealthUncheckableError)) throw err;
      uncheckable = err;
    } finally {
      elb.destroy();
    }
  }
  const cfn = opts.cloudFormation();
  try {
    if (unready.length === 0 && !uncheckable) return { signalled: true, target, outcome: await sendSignal(cfn, target, 'SUCCESS', opts.retry) };
    let failure: FailureOutcome;
    try {
      failure = await sendSignal(cfn, target, 'FAILURE', opts.retry);
    } catch (err) {
      failure = { error: (err as Error).message };
    }
    if (uncheckable) throw new TargetHealthUncheckableError(uncheckable.targetGroup, uncheckable.instanceId, uncheckable.error, uncheckable.denied, failure);
    throw new RoleNotReadyError(unready, opts.timeoutMs, failure);
  } finally {
    cfn.destroy();
  }
}
