/**
 * The synthesized stack deployed on this machine, in the order CloudFormation creates it, and the
 * handles of the running deployment (see sim/README.md for what stands in for what):
 *   network → IAM audit and credentials → tables and buckets → the AWS gateway, SSM and IMDS →
 *   functions, their rules, stream mappings and custom resources → load balancers (ACM
 *   stand-in certificates) → Route 53 records (the client's /etc/hosts) → auto scaling groups.
 * Progress is logged per resource as CloudFormation events are (`CREATE_COMPLETE <type> <id>`);
 * resources with nothing to run here (VPC plumbing, security groups, log groups) are listed as
 * not simulated. `close()` tears everything down, also after a failed deploy.
 */
import { createHash, createHmac, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import { selfSignedServerCert } from '../runtime/tlsca';
import { AutoScaling, type Group, type GroupInstance, type LaunchTemplateVersion } from './asg';
import { CredentialRegistry } from './aws/credentials';
import { Gateway, type Authorize, type ServiceRequest, type ServiceResponse } from './aws/gateway';
import { errorResponse } from './aws/protocol';
import { Imds } from './aws/imds';
import { KmsKeys } from './aws/kms-keys';
import { ParameterStore } from './aws/ssm';
import { Stores } from './aws/stores';
import { IamAudit } from './iam/audit';
import { REPO_ROOT } from './instance';
import { lambdaApi } from './lambda/api';
import { NEW_ACCOUNT_CONCURRENCY, reservedConcurrencyFailures } from './lambda/concurrency';
import { CustomResources } from './lambda/custom-resources';
import { EventRules } from './lambda/events';
import { Functions } from './lambda/functions';
import { StreamMappings } from './lambda/streams';
import { LoadBalancers } from './lb';
import { Network } from './net';
import { collect, waitFor, type Collected } from './process';
import { Deployment } from './template';
import { endpointTls } from './tls';
import { REGION, type Log } from './types';

export interface LocalDeployOptions {
  /** The cloud assembly (`cdk synth -o <dir>`). */
  readonly cdkOut: string;
  /** Where the deployment keeps its files (created; removed by close()). */
  readonly dir: string;
  /** Template durations (health checks, grace periods, schedules, hook timeouts) are divided by this. @default 1 */
  readonly timeScale?: number;
  /** The network 10.<net>.0.0/16. @default a free one */
  readonly net?: number;
  readonly stackName?: string;
  /** Progress lines. @default none */
  readonly log?: Log;
}

/** Resource types the deployment runs, by the part that runs them; every other type is reported as not simulated. */
const SERVED = new Set([
  'AWS::DynamoDB::Table', 'AWS::S3::Bucket', 'AWS::S3::BucketPolicy', 'AWS::KMS::Key', 'AWS::IAM::Role', 'AWS::IAM::Policy', 'AWS::IAM::ManagedPolicy',
  'AWS::IAM::InstanceProfile', 'AWS::Lambda::Function', 'AWS::Lambda::Permission', 'AWS::Lambda::EventSourceMapping', 'AWS::Events::Rule',
  'AWS::ElasticLoadBalancingV2::LoadBalancer', 'AWS::ElasticLoadBalancingV2::Listener', 'AWS::ElasticLoadBalancingV2::TargetGroup',
  'AWS::Route53::RecordSet', 'AWS::EC2::LaunchTemplate', 'AWS::AutoScaling::AutoScalingGroup', 'AWS::AutoScaling::LifecycleHook',
]);

/** SHA-256 as the SigV4 signer takes it (a `Checksum`), on node:crypto. */
class Sha256 {
  private readonly hash;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', Buffer.from(secret as ArrayBuffer));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.hash.update(typeof data === 'string' ? data : Buffer.from(data as ArrayBuffer));
  }
  async digest(): Promise<Uint8Array> {
    return this.hash.digest();
  }
  reset(): void {
    throw new Error('not used');
  }
}

/** The stack cannot be created as the template says (what CloudFormation would report as CREATE_FAILED and roll back). */
export class DeployError extends Error {
  override readonly name = 'DeployError';
}

/** A stack event of an update, as CloudFormation lists them. */
export interface StackEvent {
  readonly time: number;
  readonly logicalId: string;
  readonly status: 'UPDATE_IN_PROGRESS' | 'UPDATE_COMPLETE' | 'UPDATE_FAILED' | 'UPDATE_CANCELLED' | 'UPDATE_ROLLBACK_IN_PROGRESS' | 'UPDATE_ROLLBACK_COMPLETE';
  readonly reason?: string;
}

/** How a stack update ended: complete, or failed and rolled back (`reason` says which group failed and why). */
export interface StackUpdate {
  readonly status: 'UPDATE_COMPLETE' | 'UPDATE_ROLLBACK_COMPLETE';
  readonly reason?: string;
  readonly events: StackEvent[];
}

/**
 * Runs `run` for each group once `run` ended for the groups it depends on (CloudFormation's
 * order; independent groups side by side). After a failure no group starts; the ones running end.
 * Resolves with the first failure, if any, once nothing runs.
 */
async function inDependencyOrder(groups: Group[], run: (g: Group) => Promise<void>): Promise<Error | undefined> {
  let failure: Error | undefined;
  const runs = new Map<Group, Promise<boolean>>();
  const go = (g: Group): Promise<boolean> => {
    let p = runs.get(g);
    if (!p) {
      const deps = groups.filter((x) => g.dependsOn.includes(x.logicalId));
      p = Promise.all(deps.map(go)).then(async (ok) => {
        if (failure || !ok.every(Boolean)) return false;
        try {
          await run(g);
          return true;
        } catch (err) {
          failure ??= err as Error;
          return false;
        }
      });
      runs.set(g, p);
    }
    return p;
  };
  await Promise.all(groups.map(go));
  return failure;
}

export class LocalDeployment {
  network!: Network;
  deployment!: Deployment;
  audit!: IamAudit;
  readonly credentials = new CredentialRegistry();
  stores!: Stores;
  gateway!: Gateway;
  ssm!: ParameterStore;
  /** KMS signing keys the instances create at run time (the CA keys with `caKeysInKms`). */
  readonly kms = new KmsKeys();
  imds!: Imds;
  functions!: Functions;
  rules!: EventRules;
  streams!: StreamMappings;
  customResources!: CustomResources;
  loadBalancers!: LoadBalancers;
  asg!: AutoScaling;
  /**
   * A stack update that gives groups a new launch template version (`changes`, by logical id: a new
   * image and/or user data), run as CloudFormation runs it: a group's rolling update starts once the
   * groups it depends on are updated. When one fails, nothing more starts and the stack rolls back:
   * each group updated or updating returns to its previous version, dependents first.
   */
  async updateStack(changes: Record<string, Partial<LaunchTemplateVersion>>): Promise<StackUpdate> {
    const groups = Object.keys(changes).map((id) => this.asg.group(id));
    const previous = new Map(groups.map((g) => [g, g.version]));
    const events: StackEvent[] = [];
    const event = (logicalId: string, status: StackEvent['status'], reason?: string) => {
      events.push({ time: Date.now(), logicalId, status, reason });
      this.log(`${status} AWS::AutoScaling::AutoScalingGroup ${logicalId}${reason ? `: ${reason}` : ''}`);
    };
    const touched: Group[] = [];
    const failure = await inDependencyOrder(groups, async (g) => {
      touched.push(g);
      event(g.logicalId, 'UPDATE_IN_PROGRESS');
      try {
        await this.asg.rollingUpdate(g, changes[g.logicalId]);
      } catch (err) {
        event(g.logicalId, 'UPDATE_FAILED', (err as Error).message);
        throw err;
      }
      event(g.logicalId, 'UPDATE_COMPLETE');
    });
    if (!failure) return { status: 'UPDATE_COMPLETE', events };
    for (const g of groups.filter((x) => !touched.includes(x))) event(g.logicalId, 'UPDATE_CANCELLED');
    for (const g of [...touched].reverse()) {
      event(g.logicalId, 'UPDATE_ROLLBACK_IN_PROGRESS');
      await this.asg.rollingUpdate(g, { revertTo: previous.get(g)! });
      event(g.logicalId, 'UPDATE_ROLLBACK_COMPLETE');
    }
    return { status: 'UPDATE_ROLLBACK_COMPLETE', reason: failure.message, events };
  }

  /** The names the stack's Route 53 records give, with their addresses. */
  readonly hosts: Record<string, string> = {};
  /** The trust anchor of the certificates standing in for ACM's (clients trust it as they would a public CA). */
  publicCaFile = '';

  /** Whether the web UI is served with an ACM certificate (an HTTPS listener), which clients trust through {@link publicCaFile}. */
  get publicWebCertificate(): boolean {
    return this.loadBalancers.describe().some((l) => l.protocol === 'HTTPS');
  }
  private endpointCert = '';
  private readonly closers: (() => Promise<void> | void)[] = [];
  private readonly log: Log;
  readonly timeScale: number;

  private constructor(readonly opts: LocalDeployOptions) {
    this.log = opts.log ?? (() => undefined);
    this.timeScale = opts.timeScale ?? 1;
  }

  /** Deploys the assembly's stack; on failure everything created so far is removed and the error rethrown. */
  static async deploy(opts: LocalDeployOptions): Promise<LocalDeployment> {
    const d = new LocalDeployment(opts);
    try {
      await d.create();
    } catch (err) {
      await d.close();
      throw err;
    }
    return d;
  }

  private created(type: string, id: string, detail = ''): void {
    this.log(`CREATE_COMPLETE ${type} ${id}${detail ? ` (${detail})` : ''}`);
  }

  private async create(): Promise<void> {
    const { opts, log } = this;
    fs.mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    const net = Network.create({ net: opts.net });
    this.network = net;
    this.closers.push(() => net.close());
    const d = Deployment.load({ cdkOut: opts.cdkOut, stackName: opts.stackName, loadBalancerAddress: (i) => net.loadBalancerAddress(i) });
    this.deployment = d;
    log(`deploying ${d.stackName} from ${opts.cdkOut} on 10.${net.net}.0.0/16 (time x${this.timeScale})`);
    const lbNamespace = net.addLoadBalancers(d.ofType('AWS::ElasticLoadBalancingV2::LoadBalancer').length).namespace;
    const skipped = [...new Set(Object.values(d.resources).map((r) => r.Type))].filter((t) => !SERVED.has(t) && !t.startsWith('Custom::') && t !== 'AWS::CDK::Metadata');
    log(`not simulated (no behaviour to run here): ${skipped.sort().join(', ')}`);

    // Tables and buckets.
    this.stores = await Stores.start({ resources: d.resources, resolve: d.resolve, dir: path.join(opts.dir, 'stores'), log });
    this.closers.push(() => this.stores.stop());
    for (const t of this.stores.tables.values()) {
      if (t.streamArn) d.setAttribute(t.logicalId, 'StreamArn', t.streamArn);
      this.created('AWS::DynamoDB::Table', t.logicalId, t.name);
    }
    for (const b of this.stores.buckets.values()) this.created('AWS::S3::Bucket', b.logicalId, b.name);

    // IAM: every role's policies (a stream's ARN is known now), and the audit of every call.
    this.audit = new IamAudit(d.resources, d.resolve, { log: (l) => log(`iam: ${l}`) });
    this.closers.push(() => this.audit.close());
    for (const id of d.ofType('AWS::IAM::Role')) this.created('AWS::IAM::Role', id, d.physicalId(id));

    // The AWS endpoints.
    const tls = await endpointTls(opts.dir, [net.hostAddress, '127.0.0.1', 'localhost']);
    this.endpointCert = tls.cert;
    this.gateway = await Gateway.start({ tls, registry: this.credentials, auditor: this.audit, host: net.hostAddress, stores: this.stores, log });
    this.closers.push(() => this.gateway.close());
    this.ssm = new ParameterStore();
    this.gateway.route('ssm', this.ssm.handler);
    this.gateway.route('kms', this.kms.handler);
    this.imds = await Imds.start({ host: net.hostAddress });
    this.closers.push(() => this.imds.close());
    const endpointEnv = { AWS_ENDPOINT_URL: this.gateway.url, NODE_EXTRA_CA_CERTS: tls.certFile };
    log(`aws endpoints: ${this.gateway.url} (every service), IMDS ${this.imds.url}`);

    // Functions and what triggers them; the account is a new one (Lambda concurrency quota 10).
    const refused = reservedConcurrencyFailures(d.resources, d.resolve);
    for (const f of refused) log(`CREATE_FAILED AWS::Lambda::Function ${f.logicalId}: ${f.message}`);
    if (refused.length > 0) throw new DeployError(`${refused[0].logicalId}: ${refused[0].message} (a new account's Lambda concurrency quota is ${NEW_ACCOUNT_CONCURRENCY})`);
    this.functions = Functions.create({ resources: d.resources, resolve: d.resolve, cdkOut: opts.cdkOut, credentials: this.credentials, env: endpointEnv, log, workDir: opts.dir, timeScale: this.timeScale });
    this.closers.push(() => this.functions.close());
    this.gateway.route('lambda', lambdaApi(this.functions));
    for (const id of d.ofType('AWS::Lambda::Function')) this.created('AWS::Lambda::Function', id, d.physicalId(id));
    this.rules = EventRules.create({ resources: d.resources, resolve: d.resolve, functions: this.functions, log, timeScale: this.timeScale });
    this.closers.push(() => this.rules.close());
    for (const id of d.ofType('AWS::Events::Rule')) this.created('AWS::Events::Rule', id, d.physicalId(id));
    this.streams = await StreamMappings.create({ resources: d.resources, resolve: d.resolve, functions: this.functions, credentials: this.credentials, endpoint: this.gateway.url, ca: tls.cert, log });
    this.closers.push(() => this.streams.close());
    for (const id of d.ofType('AWS::Lambda::EventSourceMapping')) this.created('AWS::Lambda::EventSourceMapping', id);
    this.customResources = await CustomResources.create({ resources: d.resources, resolve: d.resolve, functions: this.functions, log, tls, host: net.hostAddress, stackName: d.stackName, timeoutMs: 120_000 });
    const createdResources: string[] = [];
    this.closers.push(async () => {
      // Deleting the stack deletes its custom resources (newest first) before the functions behind them.
      for (const id of createdResources.reverse()) await this.customResources.delete(id).catch((err: Error) => log(`DELETE_FAILED ${id}: ${err.message}`));
      await this.customResources.close();
    });
    for (const id of this.customResources.logicalIds()) {
      const result = await this.customResources.create(id);
      d.setAttribute(id, 'Ref', result.physicalResourceId);
      createdResources.push(id);
      this.created(d.resource(id).Type, id, result.physicalResourceId);
    }

    // Load balancers, with certificates standing in for ACM's.
    const names = this.recordNames();
    const acm = await selfSignedServerCert([...names, ...d.ofType('AWS::ElasticLoadBalancingV2::LoadBalancer').map((_, i) => net.loadBalancerAddress(i))]);
    this.publicCaFile = path.join(opts.dir, 'public-ca.crt');
    fs.writeFileSync(this.publicCaFile, acm.cert);
    const lbDir = path.join(opts.dir, 'lb');
    fs.mkdirSync(lbDir, { recursive: true });
    this.loadBalancers = await LoadBalancers.start({ dir: lbDir, resources: d.resources, resolve: d.resolve, certificates: () => acm, timeScale: this.timeScale, namespace: lbNamespace, log });
    this.closers.push(() => this.loadBalancers.close());
    for (const l of this.loadBalancers.describe()) this.created('AWS::ElasticLoadBalancingV2::Listener', l.listener, `${l.protocol} ${l.address} on ${l.loadBalancer}`);

    // Route 53: the records, as the client namespace resolves them.
    for (const id of d.ofType('AWS::Route53::RecordSet')) {
      const p = d.resolve(d.resource(id).Properties);
      const name = String(p.Name).replace(/\.$/, '');
      const target = p.AliasTarget ? String(p.AliasTarget.DNSName).replace(/^dualstack\./, '') : (p.ResourceRecords ?? [])[0];
      if (target) this.hosts[name] = target;
      this.created('AWS::Route53::RecordSet', id, `${name} -> ${target}`);
    }
    net.client(this.hosts);

    // The instances.
    this.asg = new AutoScaling({
      deployment: d,
      network: net,
      credentials: this.credentials,
      dir: opts.dir,
      timeScale: this.timeScale,
      log,
      instanceEnv: { ...endpointEnv, AWS_EC2_METADATA_SERVICE_ENDPOINT: this.imds.url },
      metadata: this.imds,
      targets: this.loadBalancers,
      events: { put: async (e) => void (await this.rules.put(e)) },
      onLaunch: (gi) => this.registerAgent(gi),
    });
    this.closers.push(() => this.asg.close());
    this.gateway.route('autoscaling', (req, authorize) => this.asg.handle(req, authorize));
    this.gateway.route('cloudformation', (req, authorize) => this.cloudFormation(req, authorize));
    this.gateway.route('elasticloadbalancing', (req, authorize) => this.elasticLoadBalancing(req, authorize));
    this.asg.start();
    // CloudFormation creates a group once the groups it depends on are created, and counts it created once its CreationPolicy's signals arrived.
    const failed = await inDependencyOrder(this.asg.groups, async (g) => {
      g.active = true;
      try {
        await this.asg.creationSignals(g);
      } catch (err) {
        log(`CREATE_FAILED AWS::AutoScaling::AutoScalingGroup ${g.logicalId}: ${(err as Error).message}`);
        throw err;
      }
      this.created('AWS::AutoScaling::AutoScalingGroup', g.logicalId, `${g.name}: desired ${g.desired}`);
    });
    if (failed) throw new DeployError(`${failed.message}\n${this.consoles()}`);
    for (const [key, o] of Object.entries(d.resolvedOutputs())) log(`output ${key} = ${o.value}`);
  }

  /**
   * What the SSM agent does at start: registers the instance (its address and computer name) with
   * the instance's own credentials. UpdateInstanceInformation is the agent's API, not in the SDK's
   * SSM client: the request is built and signed (SigV4) here as the agent's is.
   */
  private async registerAgent(gi: GroupInstance): Promise<void> {
    const creds = this.credentials.issue(gi.caller);
    const url = new URL(this.gateway.url);
    const body = JSON.stringify({
      InstanceId: gi.id,
      AgentName: 'amazon-ssm-agent',
      AgentVersion: '3.3.0.0',
      AgentStatus: 'Active',
      PlatformType: 'Linux',
      PlatformName: 'Amazon Linux',
      PlatformVersion: '2023',
      IPAddress: gi.instance.address,
      ComputerName: `ip-${gi.instance.address.replace(/\./g, '-')}.${REGION}.compute.internal`,
    });
    const signer = new SignatureV4({ service: 'ssm', region: REGION, sha256: Sha256, credentials: { accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey, sessionToken: creds.sessionToken } });
    const signed = await signer.sign({
      method: 'POST',
      protocol: 'https:',
      hostname: url.hostname,
      port: Number(url.port),
      path: '/',
      query: {},
      headers: { host: url.host, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'AmazonSSM.UpdateInstanceInformation' },
      body,
    });
    const status = await new Promise<number>((resolve, reject) => {
      const req = https.request({ method: 'POST', hostname: url.hostname, port: url.port, path: '/', headers: signed.headers, ca: this.endpointCert }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end(body);
    });
    if (status !== 200) throw new Error(`the SSM agent could not register (HTTP ${status})`);
  }

  /** CloudFormation's API as instances use it: SignalResource (query protocol). */
  private async cloudFormation(req: ServiceRequest, authorize: Authorize): Promise<ServiceResponse> {
    const params = new URLSearchParams(req.body.toString());
    const xmlns = 'http://cloudformation.amazonaws.com/doc/2010-05-15/';
    const error = (status: number, code: string, message: string) => errorResponse('cloudformation', status, code, message);
    if (params.get('Action') !== 'SignalResource') return error(400, 'InvalidAction', `${params.get('Action')} is not served by the local deployment`);
    const stackId = String(this.deployment.resolve({ Ref: 'AWS::StackId' }));
    const stack = params.get('StackName');
    if (stack !== this.deployment.stackName && stack !== stackId) return error(400, 'ValidationError', `Stack ${stack} does not exist`);
    const decision = authorize({ action: 'cloudformation:SignalResource', resource: stackId });
    if (!decision.allowed) return error(403, 'AccessDenied', `User: ${req.caller.roleArn} is not authorized to perform: cloudformation:SignalResource on resource: ${stackId}`);
    const status = params.get('Status');
    if (status !== 'SUCCESS' && status !== 'FAILURE') return error(400, 'ValidationError', `Status must be SUCCESS or FAILURE, not ${status}`);
    try {
      this.asg.signal(params.get('LogicalResourceId') ?? '', params.get('UniqueId') ?? '', status);
    } catch (err) {
      return error(400, 'ValidationError', (err as Error).message);
    }
    return { status: 200, headers: { 'content-type': 'text/xml' }, body: `<SignalResourceResponse xmlns="${xmlns}"><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></SignalResourceResponse>` };
  }

  /** Elastic Load Balancing's API as instances use it: DescribeTargetHealth (query protocol), from the load balancers' health. */
  private async elasticLoadBalancing(req: ServiceRequest, authorize: Authorize): Promise<ServiceResponse> {
    const params = new URLSearchParams(req.body.toString());
    const xmlns = 'http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/';
    const xml = (status: number, body: string) => ({ status, headers: { 'content-type': 'text/xml' }, body });
    const error = (status: number, code: string, message: string) => errorResponse('elasticloadbalancing', status, code, message);
    if (params.get('Action') !== 'DescribeTargetHealth') return error(400, 'InvalidAction', `${params.get('Action')} is not served by the local deployment`);
    const decision = authorize({ action: 'elasticloadbalancing:DescribeTargetHealth', resource: '*' });
    if (!decision.allowed) return error(403, 'AccessDenied', `User: ${req.caller.roleArn} is not authorized to perform: elasticloadbalancing:DescribeTargetHealth`);
    const arn = params.get('TargetGroupArn') ?? '';
    const group = this.loadBalancers.spec.targetGroups.find((g) => g.arn === arn);
    if (!group) return error(400, 'TargetGroupNotFound', `Target groups '${arn}' not found`);
    const health = await this.loadBalancers.health(arn);
    const asked = [...params.entries()].filter(([k]) => /^Targets\.member\.\d+\.Id$/.test(k)).map(([, v]) => v);
    const reasons: Record<string, string> = {
      initial: 'Elb.RegistrationInProgress',
      unhealthy: 'Target.FailedHealthChecks',
      draining: 'Target.DeregistrationInProgress',
      unused: 'Target.NotRegistered',
    };
    const members = (asked.length > 0 ? asked : [...health.keys()]).map((id) => {
      const state = health.get(id) ?? 'unused';
      const reason = reasons[state] ? `<Reason>${reasons[state]}</Reason>` : '';
      return `<member><Target><Id>${id}</Id><Port>${group.port}</Port></Target><HealthCheckPort>${group.healthCheck.port === 'traffic-port' ? group.port : group.healthCheck.port}</HealthCheckPort><TargetHealth><State>${state}</State>${reason}</TargetHealth></member>`;
    });
    return xml(200, `<DescribeTargetHealthResponse xmlns="${xmlns}"><DescribeTargetHealthResult><TargetHealthDescriptions>${members.join('')}</TargetHealthDescriptions></DescribeTargetHealthResult><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></DescribeTargetHealthResponse>`);
  }

  /** The names of the stack's Route 53 records. */
  private recordNames(): string[] {
    const d = this.deployment;
    return d.ofType('AWS::Route53::RecordSet').map((id) => String(d.resolve(d.resource(id).Properties!.Name)).replace(/\.$/, ''));
  }

  /** Targets that are not healthy, as `group/target: state`. */
  async unhealthyTargets(): Promise<string[]> {
    const out: string[] = [];
    for (const g of this.loadBalancers.spec.targetGroups) {
      for (const [target, state] of await this.loadBalancers.health(g.arn)) if (state !== 'healthy') out.push(`${g.logicalId}/${target}: ${state}`);
    }
    return out;
  }

  /**
   * Waits until every auto scaling group has its desired number of instances in service and every
   * target group has all its registered targets healthy; resolves with the milliseconds it took since `since`.
   */
  async waitHealthy(timeoutMs: number, since = Date.now()): Promise<number> {
    await waitFor(
      'every target healthy',
      async () => {
        const full = this.asg.groups.every((g) => g.live().length === g.desired && g.live().every((i) => i.state === 'InService'));
        if (!full) return false;
        for (const g of this.loadBalancers.spec.targetGroups) {
          const health = await this.loadBalancers.health(g.arn);
          const members = this.asg.groups.filter((x) => x.targetGroups.includes(g.arn)).flatMap((x) => x.live());
          if (members.some((m) => health.get(m.id) !== 'healthy')) return false;
        }
        return true;
      },
      timeoutMs,
      250,
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}\nunhealthy: ${(await this.unhealthyTargets()).join(', ')}\n${this.consoles()}`);
    });
    return Date.now() - since;
  }

  /** The end of every instance's console log (for failures). */
  consoles(lines = 25): string {
    return this.asg.all().map((gi) => `--- ${gi.group.logicalId} ${gi.id} (${gi.state}) ---\n${gi.instance.console(lines)}`).join('\n');
  }

  /** Runs a command as a user on the internet would: in the client namespace, resolving the stack's DNS records. */
  client(command: string[], opts: { env?: Record<string, string>; input?: string } = {}): Promise<Collected> {
    const [cmd, ...args] = command;
    const bin = ['tsh', 'tctl', 'teleport'].includes(cmd) ? [process.execPath, path.join(REPO_ROOT, 'dist', 'runtime', 'cli', `${cmd}.js`)] : [cmd];
    return collect('ip', ['netns', 'exec', this.network.client(this.hosts).namespace, ...bin, ...args], { env: { ...process.env, ...opts.env }, input: opts.input });
  }

  /** A DynamoDB client straight to the tables (for inspection; not audited). */
  dynamoClient(): DynamoDBClient {
    return new DynamoDBClient({ endpoint: this.stores.dynamodbEndpoint, region: REGION, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  }

  /** An S3 client straight to the buckets (for inspection; not audited). */
  s3Client(): S3Client {
    return new S3Client({ endpoint: this.stores.s3Endpoint, region: REGION, forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  }

  /** Tears everything down, newest first. */
  async close(): Promise<void> {
    for (const close of this.closers.reverse()) {
      try {
        await close();
      } catch (err) {
        this.log(`teardown: ${(err as Error).message}`);
      }
    }
    this.closers.length = 0;
    fs.rmSync(this.opts.dir, { recursive: true, force: true });
  }
}
