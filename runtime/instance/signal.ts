/**
 * `teleport signal-ready`: an AMI instance tells CloudFormation that it is healthy, so that a
 * health-gated rolling update (`WaitOnResourceSignals`) or a CreationPolicy replaces the next
 * instance only once this one serves. It waits until every readiness check of its role holds
 * (runtime/instance/readiness.ts), then sends `SignalResource` SUCCESS for the stack and logical
 * id the conf names (`TELEPORT_CFN_STACK`, `TELEPORT_CFN_RESOURCE`) with the instance id as the
 * unique id; after the timeout it sends FAILURE and fails naming what was not ready. SDK errors
 * worth waiting out (throttling, the network, 5xx) are retried with a doubling backoff.
 */
import {
  CloudFormationClient,
  type CloudFormationClientConfig,
  ResourceSignalStatus,
  SignalResourceCommand,
} from '@aws-sdk/client-cloudformation';
import { formatDuration } from '../config/duration';
import { AccessDeniedError, BadParameterError, ConnectionProblemError, TeleportError } from '../utils/errors';
import type { InstanceConf } from './conf';
import type { ReadinessCheck } from './readiness';

/** What the instance signals: the stack, the auto scaling group's logical id, and itself. */
export interface SignalTarget {
  readonly stack: string;
  readonly resource: string;
  readonly instanceId: string;
}

export type SignalStatus = 'SUCCESS' | 'FAILURE';

/** A check that did not hold, and why. */
export interface Unready {
  readonly check: string;
  readonly reason: string;
}

export interface RetryOptions {
  /** Tries in all (the first included). @default 5 */
  readonly attempts?: number;
  /** The wait after the first failure; doubles up to `maxDelayMs`. @default 1000 */
  readonly initialDelayMs?: number;
  /** @default 16000 */
  readonly maxDelayMs?: number;
  /** Called before each wait, e.g. to log it. */
  readonly onRetry?: (error: string, attempt: number, delayMs: number) => void;
}

/** The signal was delivered, or CloudFormation waits for none from this instance (a reboot, a scale-out). */
export type SignalOutcome = { readonly delivered: true } | { readonly delivered: false; readonly reason: string };

/** The role was not ready within the timeout. */
export class RoleNotReadyError extends TeleportError {
  constructor(
    readonly unready: readonly Unready[],
    readonly timeoutMs: number,
    /** What became of the FAILURE signal. */
    readonly failure: SignalOutcome | { readonly error: string },
  ) {
    const what = unready.map((u) => `${u.check} (${u.reason})`).join('; ');
    const sent =
      'error' in failure
        ? `and the FAILURE signal could not be sent: ${failure.error}`
        : failure.delivered
          ? 'signalled FAILURE to CloudFormation'
          : `no FAILURE signal delivered: ${failure.reason}`;
    super('connection_problem', `this instance's role was not ready after ${formatDuration(timeoutMs)}: ${what}; ${sent}`);
  }
}

/** The CloudFormation client: the default credential chain and endpoint (`AWS_ENDPOINT_URL` overrides it), no SDK retries (ours are). */
export function cloudFormationClient(region: string, overrides: Partial<CloudFormationClientConfig> = {}): CloudFormationClient {
  return new CloudFormationClient({ region, maxAttempts: 1, requestHandler: { connectionTimeout: 5_000, requestTimeout: 10_000 }, ...overrides });
}

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
    const results = await Promise.all(
      checks.map(async (c) => ({ check: c.name, reason: await c.probe().catch((err: Error) => `cannot check: ${err.message}`) })),
    );
    const unready = results.filter((r): r is Unready => r.reason !== undefined);
    opts.onPoll?.(unready);
    if (unready.length === 0) return [];
    const wait = Math.min(opts.pollMs ?? 2000, deadline - Date.now());
    if (wait <= 0) return unready;
    await new Promise((r) => setTimeout(r, wait));
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

/** Sends one signal, retrying what is worth it. */
export async function sendSignal(cfn: CloudFormationClient, target: SignalTarget, status: SignalStatus, retry: RetryOptions = {}): Promise<SignalOutcome> {
  const attempts = Math.max(1, retry.attempts ?? 5);
  let delayMs = retry.initialDelayMs ?? 1000;
  const what = `SignalResource ${status} for ${target.resource} in stack ${target.stack} (instance ${target.instanceId})`;
  for (let attempt = 1; ; attempt++) {
    try {
      await cfn.send(
        new SignalResourceCommand({
          StackName: target.stack,
          LogicalResourceId: target.resource,
          UniqueId: target.instanceId,
          Status: status === 'SUCCESS' ? ResourceSignalStatus.SUCCESS : ResourceSignalStatus.FAILURE,
        }),
      );
      return { delivered: true };
    } catch (err) {
      const e = err as Error;
      const error = `${e.name}: ${e.message}`;
      if (e.name === 'ValidationError' && NOT_WAITING.test(e.message)) return { delivered: false, reason: `CloudFormation waits for no signal: ${e.message}` };
      if (!retryable(err)) {
        const message = `cannot send ${what}: ${error}`;
        throw e.name === 'AccessDenied' || e.name === 'AccessDeniedException'
          ? new AccessDeniedError(`${message} (the instance role needs cloudformation:SignalResource on the stack)`)
          : new BadParameterError(message);
      }
      if (attempt >= attempts) throw new ConnectionProblemError(`cannot send ${what} after ${attempts} attempts: ${error}`, { cause: err });
      const wait = Math.min(delayMs, retry.maxDelayMs ?? 16_000);
      retry.onRetry?.(error, attempt, wait);
      await new Promise((r) => setTimeout(r, wait));
      delayMs *= 2;
    }
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
  readonly timeoutMs: number;
  readonly pollMs?: number;
  readonly retry?: RetryOptions;
  readonly onPoll?: (unready: Unready[]) => void;
}

export type SignalReadyResult =
  | { readonly signalled: false; readonly reason: string }
  | { readonly signalled: true; readonly target: SignalTarget; readonly outcome: SignalOutcome };

/**
 * Waits for the checks and signals SUCCESS; or, after the timeout, signals FAILURE and throws a
 * {@link RoleNotReadyError}. Without a `signal` in the conf it does nothing.
 */
export async function signalReady(opts: SignalReadyOptions): Promise<SignalReadyResult> {
  const signal = opts.conf.signal;
  if (!signal) return { signalled: false, reason: 'the conf names no stack to signal (no TELEPORT_CFN_STACK and TELEPORT_CFN_RESOURCE)' };
  // The instance id first: without it nothing can be signalled, so a broken metadata service fails at once.
  const target: SignalTarget = { stack: signal.stack, resource: signal.resource, instanceId: await opts.instanceId() };
  const unready = await waitUntilReady(opts.checks, { timeoutMs: opts.timeoutMs, pollMs: opts.pollMs, onPoll: opts.onPoll });
  const cfn = opts.cloudFormation();
  try {
    if (unready.length === 0) return { signalled: true, target, outcome: await sendSignal(cfn, target, 'SUCCESS', opts.retry) };
    let failure: SignalOutcome | { error: string };
    try {
      failure = await sendSignal(cfn, target, 'FAILURE', opts.retry);
    } catch (err) {
      failure = { error: (err as Error).message };
    }
    throw new RoleNotReadyError(unready, opts.timeoutMs, failure);
  } finally {
    cfn.destroy();
  }
}
