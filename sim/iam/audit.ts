/**
 * The IAM audit of the local deployment: every AWS call an instance or a function makes is decided
 * as AWS IAM would decide it, from the template's policies for the caller's role, and recorded.
 *
 * Evaluation is @cloud-copilot/iam-simulate's (through `Simulator`); this module is the glue:
 * - Principal: the caller acts through an STS session of its role, so the request's principal is
 *   the assumed-role session `arn:aws:sts::<account>:assumed-role/<role name>/<session>` (the
 *   session is the instance id or the function name, as EC2 and Lambda name them). Resource
 *   policies naming the role ARN match its sessions, and `aws:PrincipalArn` is the role's ARN,
 *   as in AWS.
 * - Policies: the role's identity policies and permissions boundary, and the resource policy of
 *   the bucket or key the call is on (sim/iam/policies.ts). Same account: for S3 an identity Allow
 *   suffices unless the bucket policy explicitly denies; for KMS the key policy must allow too,
 *   which a key policy granting the account root `kms:*` does by delegating to IAM (the library
 *   models both).
 * - Request context: the call's `context`, plus the keys AWS sets that the caller may leave out:
 *   `aws:PrincipalArn`, `aws:PrincipalAccount`, `aws:PrincipalType` (AssumedRole),
 *   `aws:SecureTransport` (true: every local endpoint is TLS), `aws:RequestedRegion`,
 *   `aws:CurrentTime`, `aws:EpochTime`, `aws:PrincipalIsAWSService` (false),
 *   `aws:ViaAWSService` (true when the call is made by a service on the caller's behalf, `via`),
 *   and for KMS `kms:CallerAccount` and, for a call `via` another service's action,
 *   `kms:ViaService` = `<that service>.<region>.amazonaws.com`. A key the call gives wins.
 *
 * Every decision carries a reason naming what decided: the granting statements
 * (`allowed by inline policy teleport of AuthRole... statement Tables`), the explicit Deny
 * (`explicit Deny in bucket policy ... statement #1`), or the missing Allow, with the statements
 * that matched the action and resource but not their conditions.
 *
 * Unused permissions: each Allow statement of each role's identity policies is split into its
 * action × resource entries (patterns as written); an entry pair is used when an allowed call of
 * that role was granted by that statement with that action entry and that resource entry matching
 * (so `s3:Get*` is used by an `s3:GetObject` call). The rest are reported, per role.
 */
import { ACCOUNT, PARTITION, REGION, type AwsCall, type CallAuditor, type CfnResources, type IamDecision, type Log, type Resolve } from '../types';
import type { RequestDenial, RequestGrant } from '@cloud-copilot/iam-simulate';
import { statementsOf, templatePolicies, type NamedPolicy, type PolicyDocument, type PolicyStatement, type RolePolicies, type TemplatePolicies } from './policies';
import { Simulator, type SimulationOutcome, type StatementOutcome } from './simulator';

/** One recorded call. */
export interface AuditEntry {
  readonly call: AwsCall;
  readonly decision: IamDecision;
  /** When it was decided (ISO time). */
  readonly at: string;
}

/** An action × resource entry of an Allow statement that no allowed call of the role used. */
export interface UnusedPermission {
  readonly roleLogicalId: string;
  /** The policy's name (`<role>/<PolicyName>` for inline policies, else its logical id). */
  readonly policy: string;
  /** 1-based index of the statement in the policy. */
  readonly statement: number;
  readonly sid?: string;
  /** The action pattern as written (`NotAction a, b` for a NotAction statement). */
  readonly action: string;
  /** The resource pattern as written (`NotResource a, b` for a NotResource statement). */
  readonly resource: string;
}

/** Counts for one role. */
export interface RoleSummary {
  readonly roleLogicalId: string;
  readonly calls: number;
  readonly allowed: number;
  readonly denied: number;
  readonly unusedPermissions: number;
}

export class IamAudit implements CallAuditor {
  private readonly policies: TemplatePolicies;
  private readonly simulator: Simulator;
  private readonly entries: AuditEntry[] = [];
  /** Keys of the statement entries allowed calls used (`permissionKey`). */
  private readonly used = new Set<string>();

  /** Reads the template's policies (throws `PolicyError` for one it cannot evaluate); `log` hears every denied call. */
  constructor(resources: CfnResources, resolve: Resolve, private readonly options: { log?: Log } = {}) {
    this.policies = templatePolicies(resources, resolve);
    this.simulator = new Simulator();
  }

  /** Decides and records one call; throws `SimulatorError` only when the library's worker cannot answer. */
  check(call: AwsCall): IamDecision {
    const role = this.policies.roles.get(call.caller.roleLogicalId);
    const decision: IamDecision = !role
      ? { allowed: false, reason: `role ${call.caller.roleLogicalId} is not in the template` }
      : call.caller.roleArn !== role.arn
        ? { allowed: false, reason: `the caller's role ARN ${call.caller.roleArn} is not ${role.arn}, the ARN of ${role.logicalId}` }
        : this.decide(role, call);
    this.entries.push({ call, decision, at: new Date().toISOString() });
    if (!decision.allowed) this.options.log?.(`IAM denied ${describeCall(call)}: ${decision.reason}`);
    return decision;
  }

  /** Every call, in order. */
  calls(): AuditEntry[] {
    return [...this.entries];
  }

  /** The denied calls, in order. */
  denied(): AuditEntry[] {
    return this.entries.filter((e) => !e.decision.allowed);
  }

  /** The Allow statements' action × resource entries that no allowed call of their role used. */
  unusedPermissions(): UnusedPermission[] {
    const unused: UnusedPermission[] = [];
    for (const role of this.policies.roles.values()) {
      for (const policy of role.identity) {
        statementsOf(policy).forEach((st, i) => {
          if (st.Effect !== 'Allow') return;
          const { actions, resources } = entriesOf(st);
          for (const action of actions) {
            for (const resource of resources) {
              if (this.used.has(permissionKey(role.logicalId, policy.name, i + 1, action, resource))) continue;
              unused.push({ roleLogicalId: role.logicalId, policy: policy.name, statement: i + 1, ...(st.Sid ? { sid: st.Sid } : {}), action, resource });
            }
          }
        });
      }
    }
    return unused;
  }

  /** Calls, allowed, denied and unused permissions of each role of the template. */
  summary(): RoleSummary[] {
    const unused = this.unusedPermissions();
    return [...this.policies.roles.keys()].map((roleLogicalId) => {
      const mine = this.entries.filter((e) => e.call.caller.roleLogicalId === roleLogicalId);
      const denied = mine.filter((e) => !e.decision.allowed).length;
      return { roleLogicalId, calls: mine.length, allowed: mine.length - denied, denied, unusedPermissions: unused.filter((u) => u.roleLogicalId === roleLogicalId).length };
    });
  }

  /**
   * Human-readable: denied calls first (grouped by role, action, resource and reason, with their
   * callers), then unused permissions per role (one line per statement action, with its unused
   * resources), then the counts per role.
   */
  report(): string {
    const lines = [`IAM audit: ${this.entries.length} calls, ${this.denied().length} denied`];
    const groups = new Map<string, { entry: AuditEntry; callers: Set<string>; count: number }>();
    for (const entry of this.denied()) {
      const { call, decision } = entry;
      const key = [call.caller.roleLogicalId, call.action, call.resource, call.via ?? '', decision.reason].join('\0');
      const group = groups.get(key) ?? { entry, callers: new Set<string>(), count: 0 };
      group.callers.add(call.caller.name);
      group.count++;
      groups.set(key, group);
    }
    lines.push('', groups.size ? 'Denied calls:' : 'Denied calls: none');
    for (const { entry, callers, count } of groups.values()) {
      const { call, decision } = entry;
      lines.push(`  ${call.caller.roleLogicalId} (${[...callers].join(', ')}) ${call.action} on ${call.resource}${call.via ? ` via ${call.via}` : ''}${count > 1 ? ` x${count}` : ''}`);
      lines.push(`    ${decision.reason}`);
    }
    const unused = this.unusedPermissions();
    lines.push('', unused.length ? 'Unused permissions:' : 'Unused permissions: none');
    for (const roleLogicalId of this.policies.roles.keys()) {
      const mine = unused.filter((u) => u.roleLogicalId === roleLogicalId);
      if (mine.length === 0) continue;
      lines.push(`  ${roleLogicalId}:`);
      const byAction = new Map<string, string[]>();
      for (const u of mine) {
        const key = `${u.policy} statement ${u.sid ?? `#${u.statement}`}: ${u.action}`;
        byAction.set(key, [...(byAction.get(key) ?? []), u.resource]);
      }
      for (const [key, resources] of byAction) lines.push(`    ${key} on ${resources.join(', ')}`);
    }
    lines.push('', 'Per role (calls / allowed / denied / unused permissions):');
    for (const s of this.summary()) lines.push(`  ${s.roleLogicalId}: ${s.calls} / ${s.allowed} / ${s.denied} / ${s.unusedPermissions}`);
    return lines.join('\n');
  }

  /** Stops the simulator's worker thread. */
  async close(): Promise<void> {
    await this.simulator.close();
  }

  private decide(role: RolePolicies, call: AwsCall): IamDecision {
    const resourcePolicy = call.resourcePolicy
      ? { name: call.resource, description: call.resourcePolicy.description, document: call.resourcePolicy.document as PolicyDocument }
      : this.policies.resourcePolicy(call.resource);
    const outcome = this.simulator.simulate({
      request: {
        principal: `arn:${PARTITION}:sts::${ACCOUNT}:assumed-role/${role.name}/${call.caller.name}`,
        action: call.action,
        resource: { resource: call.resource, accountId: ACCOUNT },
        contextVariables: requestContext(role, call),
      },
      identityPolicies: role.identity.map((p) => ({ name: p.name, policy: p.document })),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      resourcePolicy: resourcePolicy?.document,
      ...(role.boundary ? { permissionBoundaryPolicies: [{ name: role.boundary.name, policy: role.boundary.document }] } : {}),
    });
    if ('error' in outcome) return { allowed: false, reason: `the request cannot be evaluated: ${outcome.error}` };
    const explain = new Explainer(role, resourcePolicy);
    if (outcome.result !== 'Allowed') return { allowed: false, reason: explain.denial(outcome, call) };
    this.markUsed(role, outcome);
    return { allowed: true, reason: explain.grant(outcome) };
  }

  /** Records the statement entries that granted an allowed call. */
  private markUsed(role: RolePolicies, outcome: Extract<SimulationOutcome, { result: unknown }>): void {
    const policies = new Map(role.identity.map((p) => [p.name, p]));
    for (const s of outcome.analyses.flatMap((a) => a.identityStatements)) {
      const policy = policies.get(s.policyId);
      if (!policy || s.explain.effect !== 'Allow' || !s.explain.matches) continue;
      const st = statementsOf(policy)[s.index - 1];
      const { actions, resources } = entriesOf(st);
      const usedActions = st.Action === undefined ? actions : actions.filter((a) => explainedMatch(s.explain.actions, (x) => x.action, a));
      const usedResources = st.Resource === undefined ? resources : resources.filter((r) => explainedMatch(s.explain.resources, (x) => x.resource, r));
      for (const action of usedActions) {
        for (const resource of usedResources) {
          this.used.add(permissionKey(role.logicalId, policy.name, s.index, action, resource));
        }
      }
    }
  }
}

/** Words for what decided a call, naming the template's policies and statements. */
class Explainer {
  constructor(
    private readonly role: RolePolicies,
    private readonly resourcePolicy: NamedPolicy | undefined,
  ) {}

  grant(outcome: { analyses: { grants: RequestGrant[] }[] }): string {
    const grants = unique(outcome.analyses.flatMap((a) => a.grants.map((g) => `${this.policy(g.policyType, 'policyIdentifier' in g ? g.policyIdentifier : undefined)} statement ${statementLabel(g)}`)));
    return `allowed by ${grants.join(' and ')}`;
  }

  denial(outcome: { analyses: { denials: RequestDenial[]; identityStatements: StatementOutcome[] }[] }, call: AwsCall): string {
    const denials = outcome.analyses.flatMap((a) => a.denials);
    const explicit = denials.filter((d): d is Extract<RequestDenial, { denialType: 'Explicit' }> => d.denialType === 'Explicit');
    if (explicit.length > 0) {
      return unique(explicit.map((d) => `explicit Deny in ${this.policy(d.policyType, d.policyIdentifier)} statement ${statementLabel(d)}`)).join('; ');
    }
    const places = unique(denials.map((d) => this.policy(d.policyType, undefined)));
    const missing = places.length > 0
      ? `no matching Allow in ${places.join(' nor in ')}`
      : `no policy allows it${this.resourcePolicy ? '' : ` (the template has no resource policy for ${call.resource}, and ${call.action.split(':')[0]} requires one that trusts the account)`}`;
    const nearMisses = unique(outcome.analyses.flatMap((a) => a.identityStatements).filter(isConditionMiss).map((s) => this.conditionMiss(s)));
    return [missing, ...nearMisses].join('; ');
  }

  /** A policy type (and identifier) of the library's grants and denials in the template's words. */
  private policy(type: string, identifier: string | undefined): string {
    switch (type) {
      case 'identity':
        return identifier ? this.identityPolicy(identifier) : `the policies of ${this.role.logicalId}`;
      case 'resource':
        return this.resourcePolicy?.description ?? 'the resource policy';
      case 'pb':
        return `permissions boundary ${this.role.boundary?.description}`;
      default:
        return `${type} policy ${identifier ?? ''}`.trim();
    }
  }

  /** An identity policy of the role, by the name the library knows it by. */
  private identityPolicy(name: string): string {
    return this.role.identity.find((p) => p.name === name)?.description ?? name;
  }

  private conditionMiss(s: StatementOutcome): string {
    const failed = (s.explain.conditions ?? [])
      .filter((c) => !c.matches)
      .map((c) => `${c.operator} ${c.conditionKeyValue} ${[c.values].flat().map((v) => v.value).join(' | ')}${c.failedBecauseMissing ? ' (the request has no such key)' : ''}`);
    return `statement ${s.sid ?? `#${s.index}`} of ${this.identityPolicy(s.policyId)} matches the action and resource but not its condition ${failed.join(', ')}`;
  }
}

/** Whether an explain's action or resource entry written as `entry` matched the request. */
function explainedMatch<T extends { matches: boolean }>(explains: T | T[] | undefined, written: (x: T) => string, entry: string): boolean {
  const list: T[] = explains === undefined ? [] : Array.isArray(explains) ? explains : [explains];
  return list.some((x) => x.matches && written(x) === entry);
}

/** An identity Allow statement that would have applied but for its conditions. */
function isConditionMiss(s: StatementOutcome): boolean {
  return s.explain.effect === 'Allow' && s.explain.actionMatch && s.explain.resourceMatch && !s.explain.conditionMatch;
}

/** The request context: the keys AWS would set, then the call's own (which win, whatever their case). */
function requestContext(role: RolePolicies, call: AwsCall): Record<string, string | string[]> {
  const now = new Date();
  const service = call.action.split(':')[0].toLowerCase();
  const derived: Record<string, string> = {
    'aws:PrincipalArn': role.arn,
    'aws:PrincipalAccount': ACCOUNT,
    'aws:PrincipalType': 'AssumedRole',
    'aws:PrincipalIsAWSService': 'false',
    'aws:SecureTransport': 'true',
    'aws:RequestedRegion': REGION,
    'aws:CurrentTime': now.toISOString(),
    'aws:EpochTime': String(Math.floor(now.getTime() / 1000)),
    'aws:ViaAWSService': call.via ? 'true' : 'false',
    ...(service === 'kms' ? { 'kms:CallerAccount': ACCOUNT } : {}),
    ...(service === 'kms' && call.via ? { 'kms:ViaService': `${call.via.split(':')[0].toLowerCase()}.${REGION}.amazonaws.com` } : {}),
  };
  const given = call.context ?? {};
  const givenKeys = new Set(Object.keys(given).map((k) => k.toLowerCase()));
  return { ...Object.fromEntries(Object.entries(derived).filter(([k]) => !givenKeys.has(k.toLowerCase()))), ...given };
}

/** A statement's action and resource entries as written. */
function entriesOf(st: PolicyStatement): { actions: string[]; resources: string[] } {
  const list = (v: string | string[] | undefined) => [v ?? []].flat();
  return {
    actions: st.Action !== undefined ? list(st.Action) : [`NotAction ${list(st.NotAction).join(', ')}`],
    resources: st.Resource !== undefined ? list(st.Resource) : [`NotResource ${list(st.NotResource).join(', ')}`],
  };
}

function permissionKey(role: string, policy: string, statement: number, action: string, resource: string): string {
  return [role, policy, statement, action, resource].join('\0');
}

function statementLabel(s: { statementId?: string; statementIndex: number }): string {
  return s.statementId ?? `#${s.statementIndex}`;
}

function describeCall(call: AwsCall): string {
  return `${call.caller.name} (${call.caller.roleLogicalId}) ${call.action} on ${call.resource}${call.via ? ` via ${call.via}` : ''}`;
}

function unique(items: string[]): string[] {
  return [...new Set(items)];
}
