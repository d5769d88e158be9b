/**
 * Auto Scaling for the local deployment: each `AWS::AutoScaling::AutoScalingGroup` keeps its
 * desired number of instances (`DesiredCapacity`, else `MinSize`) booted from its launch template
 * (user data, instance profile → role, instance type), registered with its target groups.
 * As AWS does:
 * - `HealthCheckType: ELB`: an instance that a target group reports unhealthy once
 *   `HealthCheckGracePeriod` has passed since launch is replaced; `EC2`: only an instance that
 *   stopped running is. (Both replace a stopped instance.)
 * - Termination (replacement, scale-in, {@link AutoScaling.terminate}): the instance is deregistered
 *   from its target groups and, after their deregistration delay, each terminating lifecycle hook
 *   holds it in `Terminating:Wait`, announced on the event bus ("EC2 Instance-terminate Lifecycle
 *   Action") until `CompleteLifecycleAction` or the hook's heartbeat timeout (`DefaultResult`).
 * - The Auto Scaling API (query protocol) serves CompleteLifecycleAction,
 *   RecordLifecycleActionHeartbeat, DescribeAutoScalingGroups and SetDesiredCapacity, each checked
 *   against the caller's policies.
 * - A new launch template version ({@link AutoScaling.rollingUpdate}) rolls out as CloudFormation's
 *   `AutoScalingRollingUpdate` does: batches of MaxBatchSize old instances are replaced while
 *   MinInstancesInService stay in service (capacity rises above the desired one when it must), the
 *   group's SuspendProcesses are suspended, and after each batch CloudFormation waits PauseTime — with
 *   WaitOnResourceSignals, for a success signal from each new instance (CloudFormation's
 *   SignalResource, served here) within PauseTime, failing the update otherwise. CloudFormation
 *   never looks at load balancer health during the update; neither does this.
 * Template durations are divided by `timeScale`.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import * as path from 'node:path';
import { CURRENT_IMAGE, Instance, type Image, type Unit } from './instance';
import type { LoadBalancers } from './lb';
import type { Network } from './net';
import type { CredentialRegistry } from './aws/credentials';
import { errorResponse, type ServiceResponse } from './aws/protocol';
import type { Deployment } from './template';
import { arn, REGION, type AwsCall, type Caller, type IamDecision, type IssuedCredentials, type Log } from './types';

/** What the groups need from the rest of the deployment. */
export interface AsgEnvironment {
  readonly deployment: Deployment;
  readonly network: Network;
  readonly credentials: CredentialRegistry;
  /** Where instances keep their files. */
  readonly dir: string;
  readonly timeScale: number;
  readonly log: Log;
  /** Endpoint settings of the instances' processes. */
  readonly instanceEnv: Record<string, string>;
  readonly metadata: {
    addInstance(i: { ip: string; instanceId: string; instanceType: string; availabilityZone: string; localHostname: string; roleName: string; credentials: () => IssuedCredentials; userData?: string }): void;
    removeInstance(ip: string): void;
  };
  readonly targets: Pick<LoadBalancers, 'register' | 'deregister' | 'health' | 'spec'>;
  readonly events: { put(event: { source: string; 'detail-type': string; detail: Record<string, unknown>; resources?: string[] }): void | Promise<void> };
  /** Called once an instance booted its processes (the SSM agent's registration, for example). */
  readonly onLaunch?: (instance: GroupInstance) => Promise<void>;
  /** The image's units, if not ami/files/system's. */
  readonly units?: Unit[];
}

export type LifecycleState = 'Pending' | 'InService' | 'Terminating' | 'Terminating:Wait' | 'Terminated';

export interface GroupInstance {
  readonly id: string;
  readonly group: Group;
  readonly instance: Instance;
  readonly caller: Caller;
  readonly launchedAt: number;
  state: LifecycleState;
  health: 'Healthy' | 'Unhealthy';
  /** The launch template version (user data and image) it booted from. */
  readonly version: number;
}

/** What a launch template version gives an instance. */
export interface LaunchTemplateVersion {
  readonly userData: string;
  readonly image: Image;
}

interface Hook {
  readonly name: string;
  readonly heartbeatTimeout: number;
  readonly defaultResult: 'CONTINUE' | 'ABANDON';
}

interface PendingAction {
  readonly token: string;
  readonly hook: string;
  readonly instanceId: string;
  resolve(result: string): void;
}

/** One auto scaling group. */
export class Group {
  desired: number;
  readonly instances = new Map<string, GroupInstance>();
  readonly hooks: Hook[] = [];
  /** Launch template versions, the first at index 0; new instances boot from `version`. */
  readonly versions: LaunchTemplateVersion[];
  version = 1;
  /** Created (CloudFormation reached it): only then does it launch instances. */
  active = false;
  /** Processes suspended during a rolling update (`HealthCheck`, `ReplaceUnhealthy`, ...). */
  suspended = new Set<string>();
  /** Success signals received, by instance id. */
  readonly signals = new Map<string, 'SUCCESS' | 'FAILURE'>();

  constructor(
    readonly logicalId: string,
    readonly name: string,
    readonly min: number,
    readonly max: number,
    desired: number,
    readonly healthCheckType: 'EC2' | 'ELB',
    readonly gracePeriod: number,
    readonly targetGroups: string[],
    readonly instanceType: string,
    userData: string,
    readonly role: { logicalId: string; name: string },
    readonly rolling: { minInService: number; maxBatch: number; pauseSeconds: number; waitOnSignals: boolean; suspend: string[] },
    /** The other groups it names in DependsOn: CloudFormation creates and updates those first. */
    readonly dependsOn: string[],
  ) {
    this.desired = desired;
    this.versions = [{ userData, image: CURRENT_IMAGE }];
  }

  /** The launch template version new instances boot from. */
  get template(): LaunchTemplateVersion {
    return this.versions[this.version - 1];
  }

  /** Instances not on their way out. */
  live(): GroupInstance[] {
    return [...this.instances.values()].filter((i) => i.state === 'Pending' || i.state === 'InService');
  }
}

export class AutoScaling {
  readonly groups: Group[] = [];
  private readonly actions = new Map<string, PendingAction>();
  private timer?: NodeJS.Timeout;
  private busy = false;
  private closed = false;
  private launches = 0;
  /** Every launch and termination, for the report. */
  readonly history: { time: number; group: string; instanceId: string; event: string }[] = [];

  constructor(private readonly env: AsgEnvironment) {
    const d = env.deployment;
    for (const id of d.ofType('AWS::AutoScaling::AutoScalingGroup')) {
      const p = d.resolve(d.resource(id).Properties);
      const ltId = d.ofType('AWS::EC2::LaunchTemplate').find((lt) => d.physicalId(lt) === p.LaunchTemplate?.LaunchTemplateId);
      if (!ltId) throw new Error(`${id}: its launch template is not in the template (only LaunchTemplate groups are supported)`);
      const data = d.resolve(d.resource(ltId).Properties).LaunchTemplateData;
      const profileId = d.ofType('AWS::IAM::InstanceProfile').find((ip) => d.attribute(ip, 'Arn') === data.IamInstanceProfile?.Arn);
      if (!profileId) throw new Error(`${ltId}: no instance profile`);
      const roleName = d.resolve(d.resource(profileId).Properties).Roles[0];
      const roleId = d.ofType('AWS::IAM::Role').find((r) => d.physicalId(r) === roleName)!;
      const rolling = d.resource(id).UpdatePolicy?.AutoScalingRollingUpdate ?? {};
      const dependsOn = [d.resource(id).DependsOn ?? []].flat().filter((dep) => d.resource(dep).Type === 'AWS::AutoScaling::AutoScalingGroup');
      this.groups.push(
        new Group(
          id,
          d.physicalId(id),
          Number(p.MinSize),
          Number(p.MaxSize),
          Number(p.DesiredCapacity ?? p.MinSize),
          p.HealthCheckType === 'ELB' ? 'ELB' : 'EC2',
          Number(p.HealthCheckGracePeriod ?? 0),
          p.TargetGroupARNs ?? [],
          String(data.InstanceType),
          Buffer.from(String(data.UserData ?? ''), 'base64').toString(),
          { logicalId: roleId, name: roleName },
          {
            minInService: Number(rolling.MinInstancesInService ?? 0),
            maxBatch: Number(rolling.MaxBatchSize ?? 1),
            pauseSeconds: isoSeconds(rolling.PauseTime ?? (rolling.WaitOnResourceSignals ? 'PT5M' : 'PT0S')),
            waitOnSignals: rolling.WaitOnResourceSignals === true || rolling.WaitOnResourceSignals === 'true',
            suspend: rolling.SuspendProcesses ?? [],
          },
          dependsOn,
        ),
      );
    }
    for (const id of d.ofType('AWS::AutoScaling::LifecycleHook')) {
      const p = d.resolve(d.resource(id).Properties);
      if (p.LifecycleTransition !== 'autoscaling:EC2_INSTANCE_TERMINATING') throw new Error(`${id}: only terminating lifecycle hooks are served, not ${p.LifecycleTransition}`);
      const group = this.groups.find((g) => g.name === p.AutoScalingGroupName);
      if (!group) throw new Error(`${id}: no group ${p.AutoScalingGroupName}`);
      group.hooks.push({ name: p.LifecycleHookName ?? d.physicalId(id), heartbeatTimeout: Number(p.HeartbeatTimeout ?? 3600), defaultResult: p.DefaultResult === 'ABANDON' ? 'ABANDON' : 'CONTINUE' });
    }
  }

  /** The group with this logical id (or whose logical id starts with it). */
  group(idOrPrefix: string): Group {
    const g = this.groups.find((x) => x.logicalId === idOrPrefix) ?? this.groups.filter((x) => x.logicalId.startsWith(idOrPrefix))[0];
    if (!g) throw new Error(`no auto scaling group ${idOrPrefix}`);
    return g;
  }

  /** Starts the groups' control loop (launches the desired instances). */
  start(): void {
    const tick = () => {
      if (this.closed) return;
      if (!this.busy) {
        this.busy = true;
        this.reconcile()
          .catch((err: Error) => this.env.log(`auto scaling: ${err.message}`))
          .finally(() => (this.busy = false));
      }
      this.timer = setTimeout(tick, 250);
    };
    tick();
  }

  /** Sets a group's desired capacity (within MinSize..MaxSize, as SetDesiredCapacity). */
  setDesired(group: Group, desired: number): void {
    if (desired < group.min || desired > group.max) throw new Error(`desired capacity ${desired} of ${group.name} is outside ${group.min}..${group.max}`);
    group.desired = desired;
    this.env.log(`${group.logicalId}: desired capacity ${desired}`);
  }

  /** Terminates an instance as the group would (deregistration, lifecycle hooks); the group then replaces it if it is below its desired capacity. */
  terminate(instanceId: string, reason: string): Promise<void> {
    const gi = this.find(instanceId);
    if (!gi) throw new Error(`no instance ${instanceId}`);
    return this.retire(gi, reason);
  }

  /**
   * A new launch template version for `group` (`change`: a new image and/or user data), or, with
   * `revertTo`, a return to an earlier one (a stack rollback), rolled out as the stack update would
   * (see the module comment). Resolves when every instance runs that version; rejects as
   * CloudFormation fails the update (a missing or failure signal).
   */
  async rollingUpdate(group: Group, change: Partial<LaunchTemplateVersion> | { revertTo: number } = {}): Promise<void> {
    const r = group.rolling;
    if ('revertTo' in change) group.version = change.revertTo;
    else {
      group.versions.push({ ...group.template, ...change });
      group.version = group.versions.length;
    }
    const version = group.version;
    const desired = group.desired;
    group.suspended = new Set(r.suspend);
    this.env.log(`${group.logicalId}: rolling update to launch template version ${version}, image ${group.template.image.id} (MinInstancesInService ${r.minInService}, MaxBatchSize ${r.maxBatch}, PauseTime ${r.pauseSeconds} s${r.waitOnSignals ? ', WaitOnResourceSignals' : ''})`);
    try {
      for (;;) {
        const old = group.live().filter((i) => i.version !== version);
        if (old.length === 0) return;
        const batch = old.slice(0, Math.max(1, r.maxBatch));
        // Keep MinInstancesInService in service: raise the capacity for the batch when the group is too small.
        const raised = Math.min(group.max, Math.max(desired, r.minInService + batch.length));
        group.desired = raised;
        await this.until(() => group.live().length >= group.desired && group.live().every((i) => i.state === 'InService'));
        const fresh = new Set(group.live().filter((i) => i.version === version).map((i) => i.id));
        // The batch leaves (nothing replaces it meanwhile), then the group returns to its desired capacity.
        group.desired = raised - batch.length;
        await Promise.all(batch.map((i) => this.retire(i, `rolling update to version ${version}`)));
        group.desired = desired;
        await this.until(() => group.live().length >= group.desired && group.live().every((i) => i.state === 'InService'));
        const launched = group.live().filter((i) => i.version === version && !fresh.has(i.id));
        if (r.waitOnSignals) {
          const deadline = Date.now() + (r.pauseSeconds / this.env.timeScale) * 1000;
          await this.until(() => launched.every((i) => group.signals.has(i.id)) || Date.now() > deadline);
          const missing = launched.filter((i) => group.signals.get(i.id) !== 'SUCCESS');
          if (missing.length > 0) throw new Error(`${group.logicalId}: rolling update failed: no success signal from ${missing.map((i) => i.id).join(', ')} within PauseTime ${r.pauseSeconds} s`);
        } else if (r.pauseSeconds > 0) {
          await new Promise((res) => setTimeout(res, (r.pauseSeconds / this.env.timeScale) * 1000));
        }
      }
    } finally {
      group.desired = desired;
      group.suspended = new Set();
    }
  }

  /** CloudFormation's SignalResource for an instance of a group (`teleport signal-ready`, cfn-signal). */
  signal(logicalId: string, instanceId: string, status: 'SUCCESS' | 'FAILURE'): void {
    const group = this.groups.find((g) => g.logicalId === logicalId);
    if (!group) throw new Error(`${logicalId} is not an auto scaling group of the stack`);
    group.signals.set(instanceId, status);
    this.env.log(`${group.logicalId}: ${status} signal from ${instanceId}`);
  }

  /**
   * The group's CreationPolicy (`ResourceSignal` Count and Timeout): resolves when that many
   * instances signalled SUCCESS, rejects on a FAILURE signal or when the timeout (scaled) passes,
   * as the stack's creation would fail and roll back.
   */
  async creationSignals(group: Group): Promise<void> {
    const policy = this.env.deployment.resource(group.logicalId).CreationPolicy?.ResourceSignal as { Count?: number | string; Timeout?: string } | undefined;
    if (!policy) return;
    const count = Number(policy.Count ?? 1);
    const timeout = isoSeconds(policy.Timeout ?? 'PT5M');
    const deadline = Date.now() + (timeout / this.env.timeScale) * 1000;
    const statuses = () => [...group.signals.values()];
    await this.until(() => statuses().includes('FAILURE') || statuses().filter((v) => v === 'SUCCESS').length >= count || Date.now() > deadline);
    if (statuses().includes('FAILURE')) throw new Error(`${group.logicalId}: an instance signalled FAILURE`);
    const got = statuses().filter((v) => v === 'SUCCESS').length;
    if (got < count) throw new Error(`${group.logicalId}: ${got} of ${count} success signals within ${timeout} s (CreationPolicy)`);
  }

  private until(condition: () => boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.closed) return reject(new Error('the deployment is closing'));
        if (condition()) return resolve();
        setTimeout(check, 100);
      };
      check();
    });
  }

  /** The Auto Scaling API (query protocol), for the gateway. */
  async handle(req: { caller: Caller; body: Buffer; query: URLSearchParams }, authorize: (call: Omit<AwsCall, 'caller'>) => IamDecision): Promise<ServiceResponse> {
    const params = new URLSearchParams(req.body.toString());
    for (const [k, v] of req.query) if (!params.has(k)) params.set(k, v);
    const action = params.get('Action') ?? '';
    const requestId = randomUUID();
    const xml = (status: number, inner: string) => ({ status, headers: { 'content-type': 'text/xml' }, body: inner });
    const error = (status: number, code: string, message: string) => errorResponse('autoscaling', status, code, message);
    const ok = (result = '') =>
      xml(200, `<${action}Response xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><${action}Result>${result}</${action}Result><ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></${action}Response>`);
    const groupName = params.get('AutoScalingGroupName') ?? '';
    const group = this.groups.find((g) => g.name === groupName);
    const check = (resource: string) => authorize({ action: `autoscaling:${action}`, resource });
    switch (action) {
      case 'CompleteLifecycleAction':
      case 'RecordLifecycleActionHeartbeat': {
        const decision = check(group ? arn.autoScalingGroup(group.name) : '*');
        if (!decision.allowed) return error(403, 'AccessDenied', `User: ${req.caller.roleArn} is not authorized to perform: autoscaling:${action} (${decision.reason ?? 'denied'})`);
        if (!group) return error(400, 'ValidationError', `AutoScalingGroup name not found - ${groupName}`);
        const token = params.get('LifecycleActionToken');
        const instanceId = params.get('InstanceId');
        const hook = params.get('LifecycleHookName');
        const pending = [...this.actions.values()].find((a) => a.hook === hook && (token ? a.token === token : a.instanceId === instanceId));
        if (!pending) return error(400, 'ValidationError', `No active Lifecycle Action found with instance ID ${instanceId ?? token}`);
        if (action === 'CompleteLifecycleAction') pending.resolve(params.get('LifecycleActionResult') ?? 'CONTINUE');
        return ok();
      }
      case 'SetDesiredCapacity': {
        const decision = check(group ? arn.autoScalingGroup(group.name) : '*');
        if (!decision.allowed) return error(403, 'AccessDenied', `not authorized to perform: autoscaling:${action}`);
        if (!group) return error(400, 'ValidationError', `AutoScalingGroup name not found - ${groupName}`);
        try {
          this.setDesired(group, Number(params.get('DesiredCapacity')));
        } catch (err) {
          return error(400, 'ValidationError', (err as Error).message);
        }
        return ok();
      }
      case 'DescribeAutoScalingGroups': {
        const decision = check('*');
        if (!decision.allowed) return error(403, 'AccessDenied', `not authorized to perform: autoscaling:${action}`);
        const names = [...params.entries()].filter(([k]) => k.startsWith('AutoScalingGroupNames.member.')).map(([, v]) => v);
        const groups = this.groups.filter((g) => names.length === 0 || names.includes(g.name));
        const members = groups.map(
          (g) =>
            `<member><AutoScalingGroupName>${g.name}</AutoScalingGroupName><AutoScalingGroupARN>${arn.autoScalingGroup(g.name)}</AutoScalingGroupARN><MinSize>${g.min}</MinSize><MaxSize>${g.max}</MaxSize><DesiredCapacity>${g.desired}</DesiredCapacity><HealthCheckType>${g.healthCheckType}</HealthCheckType><HealthCheckGracePeriod>${g.gracePeriod}</HealthCheckGracePeriod><Instances>${[...g.instances.values()]
              .map((i) => `<member><InstanceId>${i.id}</InstanceId><LifecycleState>${i.state}</LifecycleState><HealthStatus>${i.health}</HealthStatus><InstanceType>${g.instanceType}</InstanceType></member>`)
              .join('')}</Instances></member>`,
        );
        return ok(`<AutoScalingGroups>${members.join('')}</AutoScalingGroups>`);
      }
      default:
        return error(400, 'InvalidAction', `${action} is not served by the local deployment`);
    }
  }

  /** Every instance of every group, live or on its way out. */
  all(): GroupInstance[] {
    return this.groups.flatMap((g) => [...g.instances.values()]);
  }

  /** Terminates every instance at once (no hooks: the deployment is going away). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const a of this.actions.values()) a.resolve('ABANDON');
    await Promise.all(this.all().filter((gi) => gi.state !== 'Terminated').map((gi) => this.destroy(gi)));
  }

  private find(instanceId: string): GroupInstance | undefined {
    return this.all().find((i) => i.id === instanceId);
  }

  private async reconcile(): Promise<void> {
    const now = Date.now();
    const health = new Map<string, Map<string, string>>();
    for (const tg of new Set(this.groups.flatMap((g) => g.targetGroups))) health.set(tg, await this.env.targets.health(tg));
    for (const g of this.groups) {
      for (const gi of g.live()) {
        const age = (now - gi.launchedAt) / 1000;
        let reason: string | undefined;
        const replacing = !g.suspended.has('HealthCheck') && !g.suspended.has('ReplaceUnhealthy');
        if (!gi.instance.running) reason = 'the instance stopped (EC2 status check)';
        else if (replacing && g.healthCheckType === 'ELB' && age >= g.gracePeriod / this.env.timeScale) {
          const bad = g.targetGroups.find((tg) => health.get(tg)?.get(gi.id) === 'unhealthy');
          if (bad) reason = `target group ${bad.split(':').pop()} reports it unhealthy after the ${g.gracePeriod} s grace period`;
        }
        if (reason) {
          gi.health = 'Unhealthy';
          void this.retire(gi, reason);
        } else if (gi.state === 'Pending') gi.state = 'InService';
      }
      const live = g.live();
      if (!g.active) continue;
      if (live.length < g.desired) for (let i = live.length; i < g.desired; i++) this.launch(g);
      else if (live.length > g.desired) {
        const oldest = [...live].sort((a, b) => a.version - b.version || a.launchedAt - b.launchedAt).slice(0, live.length - g.desired);
        for (const gi of oldest) void this.retire(gi, 'scale in');
      }
    }
  }

  private launch(g: Group): GroupInstance {
    const env = this.env;
    const id = `i-${randomBytes(9).toString('hex').slice(0, 17)}`;
    const attachment = env.network.attach(id);
    const n = this.launches++;
    const az = `${REGION}${'ab'[n % 2]}`;
    const caller: Caller = { roleLogicalId: g.role.logicalId, roleArn: arn.role(g.role.name), name: id };
    const credentials = env.credentials.issue(caller);
    const localHostname = `ip-${attachment.address.replace(/\./g, '-')}.${REGION}.compute.internal`;
    env.metadata.addInstance({
      ip: attachment.address,
      instanceId: id,
      instanceType: g.instanceType,
      availabilityZone: az,
      localHostname,
      roleName: g.role.name,
      credentials: () => credentials,
      userData: g.template.userData,
    });
    const instance = Instance.boot({ id, userData: g.template.userData, image: g.template.image, env: env.instanceEnv, units: env.units }, attachment, path.join(env.dir, 'instances', id));
    const gi: GroupInstance = { id, group: g, instance, caller, launchedAt: Date.now(), state: 'Pending', health: 'Healthy', version: g.version };
    g.instances.set(id, gi);
    for (const tg of g.targetGroups) env.targets.register(tg, id, attachment.address).catch((err: Error) => env.log(`${id}: registering with ${tg}: ${err.message}`));
    this.history.push({ time: Date.now(), group: g.logicalId, instanceId: id, event: 'launch' });
    env.log(`${g.logicalId}: launched ${id} at ${attachment.address} (${az})`);
    if (env.onLaunch) env.onLaunch(gi).catch((err: Error) => env.log(`${id}: ${err.message}`));
    return gi;
  }

  private async retire(gi: GroupInstance, reason: string): Promise<void> {
    if (gi.state !== 'Pending' && gi.state !== 'InService') return;
    const env = this.env;
    gi.state = 'Terminating';
    this.history.push({ time: Date.now(), group: gi.group.logicalId, instanceId: gi.id, event: `terminate: ${reason}` });
    env.log(`${gi.group.logicalId}: terminating ${gi.id}: ${reason}`);
    const delays = await Promise.all(
      gi.group.targetGroups.map(async (tg) => {
        await env.targets.deregister(tg, gi.id).catch((err: Error) => env.log(`${gi.id}: deregistering from ${tg}: ${err.message}`));
        return env.targets.spec.targetGroups.find((g) => g.arn === tg)?.deregistrationDelaySeconds ?? 300;
      }),
    );
    const delay = Math.max(0, ...delays) / env.timeScale;
    if (delay > 0) await new Promise((r) => setTimeout(r, delay * 1000));
    for (const hook of gi.group.hooks) {
      if (this.closed) break;
      gi.state = 'Terminating:Wait';
      const token = randomUUID();
      const result = await new Promise<string>((resolve) => {
        const timer = setTimeout(() => resolve(hook.defaultResult), (hook.heartbeatTimeout / env.timeScale) * 1000);
        this.actions.set(token, {
          token,
          hook: hook.name,
          instanceId: gi.id,
          resolve: (r) => {
            clearTimeout(timer);
            resolve(r);
          },
        });
        void Promise.resolve(
          env.events.put({
            source: 'aws.autoscaling',
            'detail-type': 'EC2 Instance-terminate Lifecycle Action',
            resources: [arn.autoScalingGroup(gi.group.name)],
            detail: {
              LifecycleActionToken: token,
              AutoScalingGroupName: gi.group.name,
              LifecycleHookName: hook.name,
              EC2InstanceId: gi.id,
              LifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING',
              Origin: 'AutoScalingGroup',
              Destination: 'EC2',
            },
          }),
        ).catch((err: Error) => env.log(`event bus: ${err.message}`));
      });
      this.actions.delete(token);
      env.log(`${gi.group.logicalId}: lifecycle hook ${hook.name} of ${gi.id} ended with ${result}`);
    }
    await this.destroy(gi);
  }

  private async destroy(gi: GroupInstance): Promise<void> {
    if (gi.state === 'Terminated') return;
    gi.state = 'Terminated';
    await gi.instance.terminate();
    this.env.metadata.removeInstance(gi.instance.address);
    this.env.credentials.revoke(gi.id);
    this.env.network.detach(gi.instance.attachment);
    gi.group.instances.delete(gi.id);
    this.history.push({ time: Date.now(), group: gi.group.logicalId, instanceId: gi.id, event: 'terminated' });
    this.env.log(`${gi.group.logicalId}: ${gi.id} terminated`);
  }
}

/** Seconds of an ISO 8601 duration such as `PT5M30S`. */
function isoSeconds(duration: string): number {
  const m = /^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$/.exec(duration);
  if (!m) throw new Error(`PauseTime ${duration} is not an ISO 8601 duration (PT#H#M#S)`);
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}
