/**
 * The control plane Lambdas' environment: which cluster, which state table,
 * and how to reach it. One zod shape per need (the cluster alone, or the
 * cluster and its state), checked once per invocation, so a misconfigured
 * function fails with a message naming the variable.
 */
import { z } from 'zod';
import { DynamoBackend } from '../backend/dynamodb';
import { ConfVars } from '../contract/aws';
import { BadParameterError } from '../utils/errors';

/** Not a conf variable: only tests (DynamoDB Local) set it. */
export const DYNAMO_ENDPOINT_VAR = 'TELEPORT_DYNAMO_ENDPOINT';

/** What every control plane function reads: which cluster, in which region. */
const clusterShape = {
  [ConfVars.clusterName]: z.string().min(1, 'is required'),
  AWS_REGION: z.string().min(1, 'is required'),
};

/** The functions that open the cluster state also need the table (and the rotator its key). */
const stateShape = {
  ...clusterShape,
  [ConfVars.stateTable]: z.string().min(3, 'is required'),
  [ConfVars.ssmKeyArn]: z.string().min(1).optional(),
  [DYNAMO_ENDPOINT_VAR]: z.string().url().optional(),
};

export interface ClusterEnv {
  clusterName: string;
  region: string;
}

export interface ControlPlaneEnv extends ClusterEnv {
  tableName: string;
  /** KMS key for the SecureString token parameters; the account's `alias/aws/ssm` without it. */
  ssmKeyId?: string;
  dynamoEndpoint?: string;
}

function parse<S extends z.ZodRawShape>(shape: S, env: NodeJS.ProcessEnv): z.output<z.ZodObject<S>> {
  // Empty strings (an unset CloudFormation parameter) count as absent.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = z.object(shape).safeParse(present);
  if (!parsed.success) {
    throw new BadParameterError(`control plane environment: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}

/** The cluster and region only (the CA pin publisher, which reads no table). */
export function readClusterEnv(env: NodeJS.ProcessEnv = process.env): ClusterEnv {
  const e = parse(clusterShape, env);
  return { clusterName: e[ConfVars.clusterName], region: e.AWS_REGION };
}

/** The cluster, its state table and the SecureString key (the rotator and the lifecycle function). */
export function readEnv(env: NodeJS.ProcessEnv = process.env): ControlPlaneEnv {
  const e = parse(stateShape, env);
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
