/**
 * The functions' resource-based policies (`AWS::Lambda::Permission` of the template): what allows an
 * AWS service (EventBridge for a rule, ...) to invoke a function for one of its resources. Such an
 * invocation carries no role of the template, so this policy alone decides it, as in AWS: a
 * statement must name the function, `lambda:InvokeFunction`, the service principal and, when it
 * has them, the source's ARN (`ArnLike`, `*` and `?` wildcards) and account.
 */
import { ACCOUNT, type CfnResources, type IamDecision, type Resolve } from '../types';
import { parseFunctionRef } from './functions';

/** An invocation by a service on behalf of one of its resources. */
export interface ServiceInvocation {
  readonly functionName: string;
  /** The service principal (`events.amazonaws.com`). */
  readonly principal: string;
  /** The resource the service acts for (the rule's ARN). */
  readonly sourceArn: string;
}

interface Statement {
  readonly logicalId: string;
  readonly functionName?: string;
  readonly action: string;
  readonly principal: string;
  readonly sourceArn?: string;
  readonly sourceAccount?: string;
}

/** `ArnLike`: `*` any run of characters, `?` any one. */
function arnLike(pattern: string, value: string): boolean {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`).test(value);
}

export class FunctionPolicies {
  private constructor(private readonly statements: readonly Statement[]) {}

  static fromTemplate(resources: CfnResources, resolve: Resolve): FunctionPolicies {
    return new FunctionPolicies(
      Object.entries(resources)
        .filter(([, r]) => r.Type === 'AWS::Lambda::Permission')
        .map(([logicalId, r]) => {
          const p = resolve(r.Properties ?? {});
          return { logicalId, functionName: parseFunctionRef(p.FunctionName)?.name, action: p.Action, principal: p.Principal, sourceArn: p.SourceArn, sourceAccount: p.SourceAccount };
        }),
    );
  }

  /** Whether a statement allows the invocation; the reason names what is missing when none does. */
  check(inv: ServiceInvocation): IamDecision {
    const allowing = this.statements.find(
      (s) =>
        s.functionName === inv.functionName &&
        ['lambda:InvokeFunction', 'lambda:*', '*'].includes(s.action) &&
        (s.principal === inv.principal || s.principal === '*') &&
        (s.sourceArn === undefined || arnLike(s.sourceArn, inv.sourceArn)) &&
        (s.sourceAccount === undefined || s.sourceAccount === ACCOUNT),
    );
    if (allowing) return { allowed: true, reason: `allowed by ${allowing.logicalId}` };
    return { allowed: false, reason: `no statement of the resource policy of ${inv.functionName} allows ${inv.principal} to invoke it for ${inv.sourceArn}` };
  }
}
