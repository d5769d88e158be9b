/**
 * The Auto Scaling termination hook: when an instance of a Teleport tier is
 * terminated, remove its presence records (node, proxy or auth server) from
 * the cluster state at once, instead of leaving it listed in `tctl nodes ls`
 * until its heartbeat expires (up to 10 minutes), then let the termination
 * proceed (CompleteLifecycleAction CONTINUE).
 *
 * Which records belong to the instance: presence records are keyed by host
 * UUID, which says nothing about EC2, so a record matches when
 * - its `spec.addr` host is the instance's private IP (the generated config sets
 *   `advertise_ip` to the local IPv4, aws-deployment.md §2.1), or
 * - its `spec.hostname` is the instance's private DNS name with dots replaced by
 *   dashes (the generated `nodename`), or the same name's first label
 *   (`ip-10-0-1-2`), or starts with the instance id (resource-name hostnames,
 *   `i-0123...-us-east-1-compute-internal`).
 * The IP and DNS name come from the event when it carries them
 * (`PrivateIpAddress`, `PrivateDnsName` in the detail or the notification
 * metadata), else from a lookup: by default SSM DescribeInstanceInformation
 * (the instances run the SSM agent, which reports the IP address and the
 * computer name; no EC2 SDK needed). The EventBridge event Auto Scaling sends
 * carries only the instance id. When the lookup finds nothing (agent not
 * registered, no permission) only the instance-id hostname match applies, and
 * the records expire with their heartbeat TTL as before.
 *
 * Removal errors never block the termination: the action is completed first,
 * then the error is rethrown so the invocation counts as failed (and a retry
 * removes the records; completing twice is harmless).
 *
 * Accepted events: EventBridge (`detail-type` "EC2 Instance-terminate Lifecycle
 * Action"), SNS (`Records[].Sns.Message`, the hook's JSON message), or that
 * message directly. Test notifications (`Event: autoscaling:TEST_NOTIFICATION`)
 * are ignored.
 */
import { AutoScalingClient, CompleteLifecycleActionCommand } from '@aws-sdk/client-auto-scaling';
import { DescribeInstanceInformationCommand, SSMClient } from '@aws-sdk/client-ssm';
import { z } from 'zod';
import { Presence } from '../auth/presence';
import { Server } from '../auth/resources';
import { Backend } from '../backend';
import { DEFAULT_NAMESPACE } from '../contract/keys';
import { BadParameterError } from '../utils/errors';
import { logger } from '../utils/logger';
import { openState, readEnv } from './env';

const log = logger('lifecycle');

export const TERMINATING = 'autoscaling:EC2_INSTANCE_TERMINATING';

const hookMessageSchema = z.object({
  LifecycleActionToken: z.string().min(1),
  AutoScalingGroupName: z.string().min(1),
  LifecycleHookName: z.string().min(1),
  EC2InstanceId: z.string().regex(/^i-[0-9a-f]{8,32}$/, 'must be an EC2 instance id'),
  LifecycleTransition: z.string().min(1),
  NotificationMetadata: z.string().optional(),
  PrivateIpAddress: z.string().min(1).max(64).optional(),
  PrivateDnsName: z.string().min(1).optional(),
});

export type LifecycleAction = z.infer<typeof hookMessageSchema>;

export interface InstanceAddresses {
  privateIp?: string;
  privateDnsName?: string;
}

/** Finds an instance's private addresses (EC2 DescribeInstances in a deployment). */
export type DescribeInstance = (instanceId: string) => Promise<InstanceAddresses>;

/** The lookup through the SSM agent's inventory: `IPAddress` and `ComputerName` (the private DNS name). */
export function ssmDescribeInstance(ssm: SSMClient): DescribeInstance {
  return async (instanceId) => {
    const out = await ssm.send(new DescribeInstanceInformationCommand({ Filters: [{ Key: 'InstanceIds', Values: [instanceId] }] }));
    const info = out.InstanceInformationList?.find((i) => i.InstanceId === instanceId);
    return { ...(info?.IPAddress ? { privateIp: info.IPAddress } : {}), ...(info?.ComputerName ? { privateDnsName: info.ComputerName } : {}) };
  };
}

/** The hook's message out of any accepted event form; undefined for a test notification. */
export function parseLifecycleEvent(event: unknown): LifecycleAction | undefined {
  let message: unknown = event;
  const e = event as { detail?: unknown; Records?: { Sns?: { Message?: string } }[] };
  if (e && typeof e === 'object' && e.detail && typeof e.detail === 'object') message = e.detail;
  else if (e && Array.isArray(e.Records) && e.Records[0]?.Sns?.Message !== undefined) {
    try {
      message = JSON.parse(e.Records[0].Sns.Message);
    } catch {
      throw new BadParameterError('the SNS message is not JSON');
    }
  }
  if (message && typeof message === 'object' && (message as { Event?: string }).Event === 'autoscaling:TEST_NOTIFICATION') return undefined;
  const parsed = hookMessageSchema.safeParse(message);
  if (!parsed.success) {
    throw new BadParameterError(`not a lifecycle hook event: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}

/** Addresses carried by the event itself: the detail, or JSON notification metadata. */
function addressesFromEvent(a: LifecycleAction): InstanceAddresses {
  let meta: { PrivateIpAddress?: unknown; PrivateDnsName?: unknown } = {};
  try {
    if (a.NotificationMetadata) meta = JSON.parse(a.NotificationMetadata) as typeof meta;
  } catch {
    // Free-form metadata: not ours.
  }
  const ip = a.PrivateIpAddress ?? (typeof meta.PrivateIpAddress === 'string' ? meta.PrivateIpAddress : undefined);
  const dns = a.PrivateDnsName ?? (typeof meta.PrivateDnsName === 'string' ? meta.PrivateDnsName : undefined);
  return { ...(ip ? { privateIp: ip } : {}), ...(dns ? { privateDnsName: dns } : {}) };
}

/** The host of `host:port`, `[v6]:port` or a bare host. */
function hostOf(addr: string): string {
  const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(addr);
  if (v6) return v6[1];
  const i = addr.lastIndexOf(':');
  return i > 0 && addr.indexOf(':') === i ? addr.slice(0, i) : addr;
}

/** True when the presence record belongs to the instance (see the module comment). */
export function recordMatches(server: Server, instanceId: string, addrs: InstanceAddresses): boolean {
  const hostname = server.spec.hostname.toLowerCase();
  if (hostname === instanceId || hostname.startsWith(`${instanceId}-`) || hostname.startsWith(`${instanceId}.`)) return true;
  if (addrs.privateIp && (hostOf(server.spec.addr) === addrs.privateIp || (server.spec.public_addr && hostOf(server.spec.public_addr) === addrs.privateIp))) return true;
  if (addrs.privateDnsName) {
    const dns = addrs.privateDnsName.toLowerCase().replace(/\.$/, '');
    const names = [dns, dns.replace(/\./g, '-'), dns.split('.')[0]];
    if (names.includes(hostname)) return true;
  }
  return false;
}

/** Deletes the instance's node, proxy and auth server records; returns what was removed. */
export async function removeInstance(backend: Backend, instanceId: string, addrs: InstanceAddresses): Promise<Server[]> {
  const presence = new Presence(backend);
  const removed: Server[] = [];
  for (const kind of ['node', 'proxy', 'auth_server'] as const) {
    for (const s of await presence.list(kind)) {
      if (!recordMatches(s, instanceId, addrs)) continue;
      await presence.delete(kind, s.metadata.name, s.metadata.namespace ?? DEFAULT_NAMESPACE).catch((err: unknown) => {
        if ((err as { reason?: string }).reason !== 'not_found') throw err; // already expired or removed
      });
      removed.push(s);
    }
  }
  return removed;
}

export interface LifecycleDeps {
  /** @default the function's environment (runtime/controlplane/env.ts) */
  openBackend?: () => Promise<Backend>;
  autoScaling?: AutoScalingClient;
  describe?: DescribeInstance;
}

export interface LifecycleResult {
  instanceId: string;
  /** Host UUIDs of the removed records. */
  removed: string[];
  completed: boolean;
}

async function complete(asg: AutoScalingClient, a: LifecycleAction): Promise<void> {
  try {
    await asg.send(
      new CompleteLifecycleActionCommand({
        AutoScalingGroupName: a.AutoScalingGroupName,
        LifecycleHookName: a.LifecycleHookName,
        LifecycleActionToken: a.LifecycleActionToken,
        InstanceId: a.EC2InstanceId,
        LifecycleActionResult: 'CONTINUE',
      }),
    );
  } catch (err) {
    // A retried invocation finds the action already completed (or timed out): nothing left to do.
    if ((err as { name?: string }).name === 'ValidationError' && /no active lifecycle action/i.test(String((err as Error).message))) {
      log.info('the lifecycle action was already completed', { instance_id: a.EC2InstanceId });
      return;
    }
    throw err;
  }
}

/** Handles one hook event with explicit dependencies (the Lambda handler below fills them from the environment). */
export async function handleLifecycle(event: unknown, deps: LifecycleDeps = {}): Promise<LifecycleResult | undefined> {
  const action = parseLifecycleEvent(event);
  if (!action) {
    log.info('ignoring an Auto Scaling test notification');
    return undefined;
  }
  const asg = deps.autoScaling ?? new AutoScalingClient({});
  const removed: string[] = [];
  let failure: unknown;
  if (action.LifecycleTransition === TERMINATING) {
    try {
      let addrs = addressesFromEvent(action);
      if (!addrs.privateIp && !addrs.privateDnsName && deps.describe) {
        try {
          addrs = await deps.describe(action.EC2InstanceId);
        } catch (err) {
          log.warn('could not look up the instance\'s addresses: matching by instance id only', {
            instance_id: action.EC2InstanceId,
            error: (err as Error).message,
          });
        }
      }
      const backend = await (deps.openBackend ?? (() => openState(readEnv())))();
      try {
        for (const s of await removeInstance(backend, action.EC2InstanceId, addrs)) removed.push(s.metadata.name);
      } finally {
        await backend.close();
      }
      log.info('removed the terminated instance from the cluster', {
        instance_id: action.EC2InstanceId,
        asg: action.AutoScalingGroupName,
        removed,
        ...addrs,
      });
    } catch (err) {
      failure = err;
      log.error('could not remove the terminated instance\'s presence records; completing the lifecycle action anyway', {
        instance_id: action.EC2InstanceId,
        error: (err as Error).message,
      });
    }
  } else {
    log.info('not a termination: completing without changes', { instance_id: action.EC2InstanceId, transition: action.LifecycleTransition });
  }
  try {
    await complete(asg, action);
  } finally {
    if (!deps.autoScaling) asg.destroy();
  }
  if (failure) throw failure;
  return { instanceId: action.EC2InstanceId, removed, completed: true };
}

/** The Lambda handler: the cluster state from the environment, addresses looked up through SSM. */
export async function handler(event: unknown): Promise<LifecycleResult | undefined> {
  const ssm = new SSMClient({});
  try {
    return await handleLifecycle(event, { describe: ssmDescribeInstance(ssm) });
  } finally {
    ssm.destroy();
  }
}
