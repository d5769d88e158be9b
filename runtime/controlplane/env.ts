/**
 * The control plane Lambdas' environment: which cluster, which state table,
 * and how to reach it. One zod schema, checked once per invocation, so a
 * misconfigured function fails with a message naming the variable.
 */
import { z } from 'zod';
import { DynamoBackend } from '../backend/dynamodb';
import { ConfVars } from '../contract/aws';
import { BadParameterError } from '../utils/errors';

/** Not a conf variable: only tests (DynamoDB Local) set it. */
export const DYNAMO_ENDPOINT_VAR = 'TELEPORT_DYNAMO_ENDPOINT';

const envSchema = z.object({
  [ConfVars.clusterName]: z.string().min(1, 'is required'),
  [ConfVars.stateTable]: z.string().min(3, 'is required'),
  AWS_REGION: z.string().min(1, 'is required'),
  [ConfVars.ssmKeyArn]: z.string().min(1).optional(),
  [DYNAMO_ENDPOINT_VAR]: z.string().url().optional(),
});

export interface ControlPlaneEnv {
  clusterName: string;
  tableName: string;
  region: string;
  /** KMS key for the SecureString token parameters; the account's `alias/aws/ssm` without it. */
  ssmKeyId?: string;
  dynamoEndpoint?: string;
}

export function readEnv(env: NodeJS.ProcessEnv = process.env): ControlPlaneEnv {
  // Empty strings (an unset CloudFormation parameter) count as absent.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    throw new BadParameterError(`control plane environment: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  const e = parsed.data;
  return {
    clusterName: e[ConfVars.clusterName],
    tableName: e[ConfVars.stateTable],
    region: e.AWS_REGION,
    ...(e[ConfVars.ssmKeyArn] ? { ssmKeyId: e[ConfVars.ssmKeyArn] } : {}),
    ...(e[DYNAMO_ENDPOINT_VAR] ? { dynamoEndpoint: e[DYNAMO_ENDPOINT_VAR] } : {}),
  };
}

/**
 * Opens the cluster state exactly as the auth servers do (same backend, same key layout). Credentials come
 * from the SDK's default chain (the function's role). The caller closes it.
 */
export function openState(env: ControlPlaneEnv): Promise<DynamoBackend> {
  return DynamoBackend.open({
    tableName: env.tableName,
    region: env.region,
    ...(env.dynamoEndpoint ? { endpoint: env.dynamoEndpoint } : {}),
    maxAttempts: 3,
    // A Lambda neither watches nor sweeps: no stream reads, no stream permissions.
    background: false,
  });
}
