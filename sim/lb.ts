/**
 * The template's load balancers on this machine: one haproxy, with a frontend per listener on
 * its load balancer's virtual address and a backend per target group checking its targets as
 * AWS would (see `lb/spec.ts` for the defaults and `lb/haproxy-config.ts` for the mapping).
 *
 * Targets come and go at run time through haproxy's runtime API (`add server` / `del server` on
 * the stats socket), never by rewriting the file and reloading: a reload would restart every
 * target's health from scratch and hand open connections to an old process, while the runtime
 * API leaves other targets, their health and their connections untouched.
 *
 * Health as AWS reports it: a new target is 'initial' (and gets no traffic) until it passes
 * HealthyThresholdCount checks; then 'healthy', or 'unhealthy' after UnhealthyThresholdCount
 * failures; 'draining' from deregistration until the deregistration delay has passed, when its
 * remaining connections are closed and it is gone. haproxy cannot count the failures of a target
 * that was never up, so such a target turns 'unhealthy' once its last check failed and
 * UnhealthyThresholdCount intervals have passed since it was registered. When no target of a
 * group is healthy, traffic goes to all registered targets (AWS "fails open"), initial ones too.
 *
 * Not emulated: client IP preservation (targets of an NLB see the host's address, as with
 * preservation off; the ALB's X-Forwarded-For carries the client), passive health checks,
 * early completion of a deregistration without connections (the delay is always waited),
 * keeping an NLB's connections open past the delay (they are closed, as with
 * `deregistration_delay.connection_termination.enabled`), keeping an NLB's connections to a
 * target that turns unhealthy when the group fails open (they are reset like any unhealthy
 * target's, per `target_health_state.unhealthy.connection_termination.enabled`), and
 * `routing.http.drop_invalid_header_fields.enabled` (haproxy refuses malformed header names with
 * a 400 on its own instead of dropping the field).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Daemon, waitFor } from './process';
import type { CfnResources, Log, Resolve } from './types';
import { LoadBalancingError } from './lb/errors';
import { CHECK_FAILED, HaproxyCli, OP_STOPPED, type ServerState } from './lb/haproxy-cli';
import { FAIL_OPEN_SUFFIX, failOpenServerArgs, haproxyConfig, scaledMs, targetServerArgs } from './lb/haproxy-config';
import { loadBalancingSpec, type ListenerProtocol, type LoadBalancerType, type LoadBalancingSpec, type TargetGroupSpec } from './lb/spec';

export { LoadBalancingError, type LoadBalancingErrorReason } from './lb/errors';
export { loadBalancingSpec, type HealthCheckSpec, type ListenerSpec, type LoadBalancerSpec, type LoadBalancingSpec, type TargetGroupSpec } from './lb/spec';
export { haproxyConfig, MIN_SCALED_MS, scaledMs, targetServerArgs } from './lb/haproxy-config';

export type TargetHealth = 'initial' | 'healthy' | 'unhealthy' | 'draining';

export interface LoadBalancersOptions {
  /** Where haproxy's config, socket and the listeners' certificate files go (the directory must exist). */
  readonly dir: string;
  readonly resources: CfnResources;
  readonly resolve: Resolve;
  /** The certificate (PEM cert and key) standing in for ACM on an HTTPS listener. */
  readonly certificates: (listenerLogicalId: string) => { cert: string; key: string } | undefined;
  /** Template intervals, timeouts and delays are divided by this (default 1). */
  readonly timeScale?: number;
  /** The network namespace haproxy runs in (where the virtual IPs are), or this process's. */
  readonly namespace?: string;
  readonly log: Log;
}

/** One listener, for printing. */
export interface ListenerDescription {
  readonly loadBalancer: string;
  readonly type: LoadBalancerType;
  readonly listener: string;
  readonly protocol: ListenerProtocol;
  /** `address:port` clients connect to. */
  readonly address: string;
  /** Logical ids of the target groups it forwards to (none for a redirect). */
  readonly targetGroups: readonly string[];
}

interface Target {
  readonly address: string;
  readonly port: number;
  readonly registeredAt: number;
  everHealthy: boolean;
  /** Set while draining: removes the target when the deregistration delay has passed. */
  drain?: NodeJS.Timeout;
}

/** Characters haproxy allows in a server name. */
const TARGET_ID = /^[A-Za-z0-9_:-][A-Za-z0-9._:-]*$/;

/** haproxy lines about what this module itself did through the runtime API: not news for the log. */
const OWN_DOING = /\[NOTICE\]|New server registered|forced maintenance|for maintenance|drain state|changed from CLI|Server deleted|\.failopen/;

export class LoadBalancers {
  private readonly groups: ReadonlyMap<string, TargetGroupSpec>;
  private readonly targets = new Map<string, Map<string, Target>>();
  private queue: Promise<unknown> = Promise.resolve();
  private closing = false;

  private constructor(
    readonly spec: LoadBalancingSpec,
    private readonly haproxy: Daemon,
    private readonly cli: HaproxyCli,
    private readonly files: readonly string[],
    private readonly timeScale: number,
    private readonly log: Log,
  ) {
    this.groups = new Map(spec.targetGroups.map((g) => [g.arn, g]));
    for (const g of spec.targetGroups) this.targets.set(g.arn, new Map());
    void haproxy.exited.then((code) => {
      if (!this.closing) log(`lb: haproxy stopped (exit status ${code}, ${haproxy.child.signalCode ?? 'no signal'}); the load balancers are down`);
    });
  }

  /** Writes haproxy's config for the template's load balancers and runs it; resolves once it answers on its socket. */
  static async start(opts: LoadBalancersOptions): Promise<LoadBalancers> {
    const timeScale = opts.timeScale ?? 1;
    if (!(timeScale > 0)) throw new LoadBalancingError('bad_parameter', `timeScale must be positive, not ${timeScale}`);
    const spec = loadBalancingSpec(opts.resources, opts.resolve);
    const files: string[] = [];
    const write = (name: string, content: string) => {
      const file = path.join(opts.dir, name);
      fs.writeFileSync(file, content, { mode: 0o600 });
      files.push(file);
      return file;
    };
    try {
      const certificateFiles = new Map<string, string>();
      for (const lb of spec.loadBalancers) {
        for (const l of lb.listeners.filter((l) => l.protocol === 'HTTPS')) {
          const pair = opts.certificates(l.logicalId);
          if (!pair) throw new LoadBalancingError('bad_parameter', `listener ${l.logicalId} (HTTPS on ${lb.name}:${l.port}) needs a certificate, and none was given for it`);
          certificateFiles.set(l.logicalId, write(`${l.logicalId}.pem`, `${pair.cert.trim()}\n${pair.key.trim()}\n`));
        }
      }
      const socket = path.join(opts.dir, 'haproxy.sock');
      files.push(socket);
      const config = write('haproxy.cfg', haproxyConfig(spec, { socket, certificateFile: (id) => certificateFiles.get(id)!, timeScale }));
      const cli = new HaproxyCli(socket);
      const haproxy = await runHaproxy(config, cli, opts.log, opts.namespace);
      return new LoadBalancers(spec, haproxy, cli, files, timeScale, opts.log);
    } catch (err) {
      for (const f of files) fs.rmSync(f, { force: true });
      throw err;
    }
  }

  /**
   * Registers a target (an instance id or an IP) at `address`, on the group's port unless `port`
   * says otherwise. It starts 'initial' and gets traffic once it passes its checks. Registering
   * a registered target again is a no-op; a draining one is re-registered from scratch.
   */
  async register(targetGroupArn: string, targetId: string, address: string, port?: number): Promise<void> {
    const group = this.group(targetGroupArn);
    if (!TARGET_ID.test(targetId) || targetId.endsWith(FAIL_OPEN_SUFFIX)) throw new LoadBalancingError('bad_parameter', `target id ${JSON.stringify(targetId)} cannot name an haproxy server`);
    if (!net.isIP(address)) throw new LoadBalancingError('bad_parameter', `target ${targetId}: ${JSON.stringify(address)} is not an IP address`);
    const targetPort = port ?? group.port;
    return this.serial(async () => {
      const targets = this.targets.get(targetGroupArn)!;
      const known = targets.get(targetId);
      if (known && !known.drain) {
        if (known.address === address && known.port === targetPort) return;
        throw new LoadBalancingError('bad_parameter', `target ${targetId} is registered in ${group.logicalId} at ${known.address}:${known.port}, not ${address}:${targetPort}`);
      }
      if (known) await this.remove(group, targetId);
      const [server, twin] = serverNames(group, targetId);
      try {
        await this.cli.run(`add server ${server} ${targetServerArgs(group, address, targetPort, this.timeScale).join(' ')}`, `add server ${twin} ${failOpenServerArgs(group, address, targetPort).join(' ')}`);
      } catch (err) {
        await this.cli.send(`del server ${server}; del server ${twin}`).catch(() => undefined);
        throw err;
      }
      targets.set(targetId, { address, port: targetPort, registeredAt: Date.now(), everHealthy: false });
      // Out of maintenance a checked server counts as up: mark it down before it may weigh anything.
      await this.cli.run(`enable health ${server}`, `set server ${server} state ready`, `set server ${server} health down`, `set server ${server} weight 1`, `set server ${twin} state ready`);
    });
  }

  /**
   * Deregisters a target: it gets no new connections from now on, its open ones may go on for
   * the group's deregistration delay (scaled), then they are closed and the target is gone.
   */
  async deregister(targetGroupArn: string, targetId: string): Promise<void> {
    const group = this.group(targetGroupArn);
    return this.serial(async () => {
      const target = this.targets.get(targetGroupArn)!.get(targetId);
      if (!target) throw new LoadBalancingError('not_found', `target ${targetId} is not registered in ${group.logicalId}`);
      if (target.drain) return;
      const [server, twin] = serverNames(group, targetId);
      // Drained (weight 0: no new connections) and no longer checked, so that no verdict cuts its open connections.
      await this.cli.run(`set server ${server} state drain`, `disable health ${server}`, `set server ${twin} state maint`);
      target.drain = setTimeout(() => {
        if (this.closing) return;
        // Unless it was registered again meanwhile.
        const stillDraining = () => this.targets.get(targetGroupArn)!.get(targetId) === target;
        this.serial(async () => {
          if (stillDraining()) await this.remove(group, targetId);
        }).catch((err: Error) => this.log(`lb: removing ${targetId} from ${group.logicalId}: ${err.message}`));
      }, scaledMs(group.deregistrationDelaySeconds, this.timeScale));
    });
  }

  /** The health of each target registered in a group, as AWS's DescribeTargetHealth would say it. */
  async health(targetGroupArn: string): Promise<Map<string, TargetHealth>> {
    const group = this.group(targetGroupArn);
    // The targets before haproxy's state: each was added to haproxy before it was added here.
    const registered = [...this.targets.get(targetGroupArn)!];
    const states = new Map((await this.cli.serversState(group.logicalId)).map((s) => [s.name, s]));
    return new Map(registered.map(([id, target]) => [id, this.judge(group, target, states.get(id))]));
  }

  /** The listeners, for printing. */
  describe(): ListenerDescription[] {
    const groupIds = new Map(this.spec.targetGroups.map((g) => [g.arn, g.logicalId]));
    return this.spec.loadBalancers.flatMap((lb) =>
      lb.listeners.map((l) => ({
        loadBalancer: lb.name,
        type: lb.type,
        listener: l.logicalId,
        protocol: l.protocol,
        address: `${lb.address}:${l.port}`,
        targetGroups: l.action.type === 'forward' ? l.action.targetGroups.map((t) => groupIds.get(t.arn)!) : [],
      })),
    );
  }

  /** Stops haproxy and removes its files. */
  async close(): Promise<void> {
    this.closing = true;
    for (const targets of this.targets.values()) for (const t of targets.values()) clearTimeout(t.drain);
    await this.haproxy.stop();
    for (const f of this.files) fs.rmSync(f, { force: true });
  }

  private group(arn: string): TargetGroupSpec {
    const group = this.groups.get(arn);
    if (!group) throw new LoadBalancingError('not_found', `no target group ${arn} in the template`);
    return group;
  }

  private judge(group: TargetGroupSpec, target: Target, state: ServerState | undefined): TargetHealth {
    if (target.drain) return 'draining';
    if (!state) throw new LoadBalancingError('haproxy', `haproxy has no server for target ${target.address} in ${group.logicalId}`);
    if (state.operational !== OP_STOPPED) {
      target.everHealthy = true;
      return 'healthy';
    }
    if (target.everHealthy) return 'unhealthy';
    const hc = group.healthCheck;
    const checkedEnough = Date.now() - target.registeredAt >= hc.unhealthyThreshold * scaledMs(hc.intervalSeconds, this.timeScale);
    return state.checkResult === CHECK_FAILED && checkedEnough ? 'unhealthy' : 'initial';
  }

  /** Closes a draining target's connections and deletes its servers. */
  private async remove(group: TargetGroupSpec, targetId: string): Promise<void> {
    const targets = this.targets.get(group.arn)!;
    clearTimeout(targets.get(targetId)?.drain);
    const servers = serverNames(group, targetId);
    await this.cli.run(`set server ${servers[0]} state maint`, ...servers.map((s) => `shutdown sessions server ${s}`));
    // Shut sessions let go of the server a moment later.
    for (const s of servers) await waitFor(`haproxy to delete ${s}`, () => this.closing || this.cli.run(`del server ${s}`).then(() => true), 10_000);
    targets.delete(targetId);
  }

  /** Runs target changes one at a time, so a register and a deregister never interleave. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/** A target's haproxy server and its fail-open twin. */
function serverNames(group: TargetGroupSpec, targetId: string): [string, string] {
  const server = `${group.logicalId}/${targetId}`;
  return [server, `${server}${FAIL_OPEN_SUFFIX}`];
}

/** Runs haproxy on `config`, its warnings and alerts going to `log`, until it answers on its socket. */
async function runHaproxy(config: string, cli: HaproxyCli, log: Log, namespace?: string): Promise<Daemon> {
  const haproxy = namespace ? Daemon.spawn('ip', ['netns', 'exec', namespace, 'haproxy', '-db', '-f', config]) : Daemon.spawn('haproxy', ['-db', '-f', config]);
  let spawnError: Error | undefined;
  haproxy.child.on('error', (err) => (spawnError = err));
  let partial = '';
  haproxy.child.stderr?.on('data', (d) => {
    const lines = (partial + d).split('\n');
    partial = lines.pop()!;
    for (const line of lines) if (line.trim() && !OWN_DOING.test(line)) log(`lb: haproxy ${line.replace(/\s+\(\d+\) : (CLI : )?/, ' ').trim()}`);
  });
  const exited = () => spawnError !== undefined || haproxy.child.exitCode !== null || haproxy.child.signalCode !== null;
  const outcome = await waitFor('haproxy to answer on its socket', () => (exited() ? 'exited' : cli.send('show info').then(() => 'ready')), 20_000).catch(
    async (err: Error) => {
      await haproxy.stop('SIGKILL');
      throw new LoadBalancingError('haproxy', `${err.message}\n${haproxy.stderr.trim()}`);
    },
  );
  if (outcome === 'exited') {
    const stderr = haproxy.child.stderr;
    if (stderr && !stderr.readableEnded) await new Promise((resolve) => stderr.once('close', resolve));
    const how = spawnError ? spawnError.message : `exit status ${haproxy.child.exitCode}`;
    throw new LoadBalancingError('haproxy', `haproxy did not start (${how})\n${haproxy.stderr.trim()}`);
  }
  return haproxy;
}
