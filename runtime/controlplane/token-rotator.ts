/**
 * The join-token rotator (the Lambda that replaces the 4.x auth hosts'
 * `teleport-ssm-publish-tokens` timer). Runs on a schedule and as a
 * CloudFormation custom resource (through the CDK `custom_resources.Provider`
 * framework, whose onEvent handler returns `{ PhysicalResourceId, Data }`).
 *
 * Each run:
 * 1. mints a fresh random token per role in JOIN_ROLES, stored in the state table exactly as
 *    `tctl tokens add` stores it (runtime/auth/tokens.ts: keyed by its SHA-256 and named by its ID,
 *    never its value, with the role and an expiry JOIN_TOKEN_TTL_MS from now). Earlier tokens are left alone: they stay valid until
 *    their own TTL, so an instance that read the previous token a minute ago still joins;
 * 2. writes each token to SSM as a SecureString at `SsmPaths.token(cluster, role)`, overwriting
 *    (with TELEPORT_SSM_KEY_ARN as the KMS key when set);
 * 3. writes the CA pin (`caPins` of the host CA's TLS certificates, two during a rotation, what `tctl status` shows) as a
 *    String at `SsmPaths.caPin(cluster)`. The CA pin publisher (ca-pin.ts) writes it within seconds
 *    of the CA's creation or rotation; this run is the safety net.
 *
 * Two runs at once (the schedule during a deployment's run) do no harm, so nothing serialises them:
 * each stores its tokens before publishing them and every stored token stays valid until its own
 * expiry, so whichever run writes a parameter last leaves a valid token there; both write the
 * same pin; SSM's refusal of a concurrent write is retried (publish.ts).
 *
 * Before the first auth server has started there is no CA: tokens are still minted and published
 * (they are plain records; the auth server honours them once it runs), but the pin cannot be.
 * - A scheduled run then fails with a NotFoundError, so the failure is visible and the next run
 *   (or the asynchronous invocation's retries) publishes the pin.
 * - The custom resource succeeds with `Data.CaPinPublished = "false"`: at stack creation the auth
 *   instances usually are not up yet, and failing would roll the whole stack back. The schedule
 *   publishes the pin once the CA exists.
 *
 * Token values never appear in logs or in the custom resource's Data.
 */
import { SSMClient } from '@aws-sdk/client-ssm';
import { Authorities } from '../auth/authorities';
import { Tokens } from '../auth/tokens';
import { Backend } from '../backend';
import { JOIN_ROLES, JOIN_TOKEN_TTL_MS, JoinRole, SsmPaths } from '../contract/aws';
import { caPins } from '../tlsca/pin';
import { isReason, NotFoundError } from '../utils/errors';
import { logger } from '../utils/logger';
import { ControlPlaneEnv, openState, readEnv } from './env';
import { publishCaPin, putParameter } from './publish';

const log = logger('token-rotator');

/** The custom resource's physical id: one rotator resource per cluster. */
export const physicalResourceId = (cluster: string) => `teleport-token-rotator-${cluster}`;

export interface RotationResult {
  /** The SSM parameters written, by role (names, not values). */
  tokenParameters: Record<JoinRole, string>;
  tokenExpires: Date;
  /** The published pin, or undefined when the cluster has no CA yet. */
  caPin?: string;
}

export interface RotateDeps {
  backend: Backend;
  ssm: SSMClient;
  clusterName: string;
  ssmKeyId?: string;
}

/** Mints and publishes the tokens, then the CA pin when the CA exists. */
export async function rotate(deps: RotateDeps): Promise<RotationResult> {
  const tokens = new Tokens(deps.backend);
  const tokenParameters = {} as Record<JoinRole, string>;
  let tokenExpires = new Date(0);
  for (const role of JOIN_ROLES) {
    const minted = await tokens.create({ roles: [role], ttlMs: JOIN_TOKEN_TTL_MS });
    const name = SsmPaths.token(deps.clusterName, role);
    await putParameter(deps.ssm, {
      Name: name,
      Value: minted.token,
      Type: 'SecureString',
      Overwrite: true,
      ...(deps.ssmKeyId ? { KeyId: deps.ssmKeyId } : {}),
      Description: `Teleport join token for ${role}s of ${deps.clusterName}, rotated by the control plane`,
    });
    tokenParameters[role] = name;
    tokenExpires = minted.expires!;
    log.info('published a new join token', { cluster: deps.clusterName, role, parameter: name, expires: tokenExpires.toISOString() });
  }
  let pin: string | undefined;
  try {
    pin = caPins((await new Authorities(deps.backend).get('host', deps.clusterName)).tlsCerts());
  } catch (err) {
    if (!isReason(err, 'not_found')) throw err;
    log.warn('the cluster has no host CA yet (no auth server has started): the CA pin is not published', { cluster: deps.clusterName });
  }
  if (pin) await publishCaPin(deps.ssm, deps.clusterName, pin);
  return { tokenParameters, tokenExpires, ...(pin ? { caPin: pin } : {}) };
}

/** What the Provider framework passes to onEvent (the fields used here). */
export interface CustomResourceEvent {
  RequestType: 'Create' | 'Update' | 'Delete';
  PhysicalResourceId?: string;
  ResourceProperties?: Record<string, unknown>;
}

export interface CustomResourceResponse {
  PhysicalResourceId: string;
  Data?: Record<string, string>;
}

function isCustomResourceEvent(event: unknown): event is CustomResourceEvent {
  return !!event && typeof event === 'object' && 'RequestType' in event;
}

async function rotateIn(env: ControlPlaneEnv): Promise<RotationResult> {
  const ssm = new SSMClient({ region: env.region });
  const backend = await openState(env);
  try {
    return await rotate({ backend, ssm, clusterName: env.clusterName, ...(env.ssmKeyId ? { ssmKeyId: env.ssmKeyId } : {}) });
  } finally {
    await backend.close();
    ssm.destroy();
  }
}

/**
 * The Lambda handler: a custom resource event (has `RequestType`) or anything else (the schedule's
 * EventBridge event, or a manual invoke), which rotates.
 */
export async function handler(event: unknown): Promise<CustomResourceResponse | RotationSummary> {
  if (isCustomResourceEvent(event) && event.RequestType === 'Delete') {
    // Nothing to undo: the tokens expire on their own, and the parameters are overwritten by the next
    // stack's rotator. Reads no environment, so a broken configuration never blocks a stack deletion.
    log.info('custom resource delete: nothing to do');
    return { PhysicalResourceId: event.PhysicalResourceId ?? 'teleport-token-rotator' };
  }
  const env = readEnv();
  const result = await rotateIn(env);
  if (isCustomResourceEvent(event)) {
    return { PhysicalResourceId: event.PhysicalResourceId ?? physicalResourceId(env.clusterName), Data: customResourceData(result, env.clusterName) };
  }
  if (!result.caPin) {
    throw new NotFoundError(
      `join tokens were published, but the cluster "${env.clusterName}" has no certificate authority yet, so the CA pin was not: start an auth server; the next run publishes it`,
    );
  }
  return summary(result);
}

/** A scheduled run's result (no secrets). */
export interface RotationSummary {
  tokenParameters: Record<JoinRole, string>;
  tokenExpires: string;
  caPin: string;
}

function summary(r: RotationResult): RotationSummary {
  return { tokenParameters: r.tokenParameters, tokenExpires: r.tokenExpires.toISOString(), caPin: r.caPin! };
}

function customResourceData(r: RotationResult, cluster: string): Record<string, string> {
  return {
    CaPinPublished: r.caPin ? 'true' : 'false',
    ...(r.caPin ? { CaPin: r.caPin } : {}),
    CaPinParameter: SsmPaths.caPin(cluster),
    TokenExpires: r.tokenExpires.toISOString(),
    ...Object.fromEntries(Object.entries(r.tokenParameters).map(([role, name]) => [`TokenParameter_${role}`, name])),
  };
}
