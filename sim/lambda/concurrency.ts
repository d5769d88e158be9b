/**
 * Lambda's account concurrency, as a new AWS account has it: a quota of 10 concurrent executions,
 * of which AWS always keeps 10 unreserved. A function that reserves any concurrency therefore
 * fails to create there ("decreases account's UnreservedConcurrentExecution below its minimum
 * value"), and CloudFormation rolls the stack back. The local deployment deploys into such an
 * account, so a template that would fail there fails here.
 */
import type { CfnResources, Resolve } from '../types';

/** The concurrency quota of a new account. */
export const NEW_ACCOUNT_CONCURRENCY = 10;
/** What AWS keeps unreserved (its documented minimum is 100; accounts with a quota of 10 keep 10). */
export const UNRESERVED_MINIMUM = 10;

/** The functions whose `ReservedConcurrentExecutions` would fail in an account with `quota`, with AWS's message; empty when all fit. */
export function reservedConcurrencyFailures(resources: CfnResources, resolve: Resolve, quota = NEW_ACCOUNT_CONCURRENCY): { logicalId: string; message: string }[] {
  const failures: { logicalId: string; message: string }[] = [];
  let reserved = 0;
  for (const [logicalId, r] of Object.entries(resources)) {
    if (r.Type !== 'AWS::Lambda::Function' || r.Properties?.ReservedConcurrentExecutions === undefined) continue;
    reserved += Number(resolve(r.Properties.ReservedConcurrentExecutions));
    if (quota - reserved < UNRESERVED_MINIMUM) {
      failures.push({
        logicalId,
        message: `Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [${UNRESERVED_MINIMUM}].`,
      });
    }
  }
  return failures;
}
