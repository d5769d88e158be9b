/**
 * The CA pin publisher: the Lambda that the state table's DynamoDB stream invokes when the
 * cluster's host CA record is written (created by the first auth server, changed by a CA
 * rotation). It writes the pins of that CA (both during a rotation) to `SsmPaths.caPin(cluster)` within seconds, so proxies
 * and nodes that boot right after the auth tier find it; the token rotator's hourly run stays as
 * the safety net.
 *
 * The event source mapping's filter (lib/control-plane.ts) delivers only INSERT/MODIFY records of
 * the key `Keys.certAuthority('host', cluster)`, so the function reads no table: the CA comes from
 * the record's new image (the stream is NEW_IMAGE) and is decoded with the backend's own record
 * decoder (runtime/backend/dynamodb.ts), the pins computed with `caPins` as `tctl status` computes
 * it. Records of other keys, should any arrive, are ignored. Within a batch the last record of the
 * CA wins (a batch is in stream order).
 *
 * The record carries the CA's private keys: nothing of it is logged or returned, and an error
 * about a malformed record names the key only. A malformed event or record fails the invocation
 * (the mapping retries it, then moves on).
 */
import { AttributeValue } from '@aws-sdk/client-dynamodb';
import { _Record } from '@aws-sdk/client-dynamodb-streams';
import { SSMClient } from '@aws-sdk/client-ssm';
import { z } from 'zod';
import { Authority } from '../auth/authorities';
import { CertAuthority } from '../auth/resources';
import { decodeRecord } from '../backend/dynamodb';
import { Item, OpType } from '../backend/types';
import { SsmPaths } from '../contract/aws';
import { Keys } from '../contract/keys';
import { caPins } from '../tlsca/pin';
import { BadParameterError } from '../utils/errors';
import { logger } from '../utils/logger';
import { readClusterEnv } from './env';
import { publishCaPin } from './publish';

const log = logger('ca-pin');

/**
 * An item image as Lambda delivers it: DynamoDB JSON with binary values in base64. Only the
 * scalar types of the state table's attributes are read (S, N, B).
 */
const imageSchema = z.record(
  z.string(),
  z
    .object({
      S: z.string().optional(),
      N: z.string().optional(),
      B: z
        .string()
        .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'is not base64')
        .transform((b) => Buffer.from(b, 'base64'))
        .optional(),
    })
    .passthrough(),
);

/** A DynamoDB stream event as Lambda delivers it (the fields used here). */
const eventSchema = z.object({
  Records: z.array(
    z.object({
      eventName: z.enum(['INSERT', 'MODIFY', 'REMOVE']),
      dynamodb: z.object({ Keys: imageSchema, NewImage: imageSchema.optional() }),
    }),
  ),
});

/** The stream records of a Lambda event, in the SDK's shape (binary values as bytes). */
export function parseStreamEvent(event: unknown): _Record[] {
  const parsed = eventSchema.safeParse(event);
  if (!parsed.success) {
    throw new BadParameterError(`not a DynamoDB stream event: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return parsed.data.Records.map((r) => ({
    eventName: r.eventName,
    dynamodb: {
      Keys: r.dynamodb.Keys as Record<string, AttributeValue>,
      ...(r.dynamodb.NewImage ? { NewImage: r.dynamodb.NewImage as Record<string, AttributeValue> } : {}),
    },
  }));
}

/** The pin of the host CA in `item`; a BadParameterError naming only the key when it is not one. */
function pinOf(item: Item, clusterName: string): string {
  const problem = `the ${item.key} record is not the host certificate authority of cluster "${clusterName}" with a TLS certificate`;
  try {
    const ca = new Authority(JSON.parse(item.value.toString()) as CertAuthority);
    if (ca.type !== 'host' || ca.clusterName !== clusterName) throw new BadParameterError(problem);
    return caPins(ca.tlsCerts());
  } catch {
    // Parse errors quote the input, which holds the CA's private keys: say what, not why.
    throw new BadParameterError(problem);
  }
}

export interface PinPublication {
  /** Records in the event. */
  records: number;
  /** The pin written, when the event held a write of the cluster's host CA. */
  caPin?: string;
  parameter?: string;
}

export interface PinDeps {
  ssm: SSMClient;
  clusterName: string;
}

/** Publishes the pin of the last write of the cluster's host CA in the event, if any. */
export async function publishFromStream(event: unknown, deps: PinDeps): Promise<PinPublication> {
  const records = parseStreamEvent(event);
  const key = Keys.certAuthority('host', deps.clusterName);
  let latest: Item | undefined;
  for (const record of records) {
    const change = decodeRecord(record);
    if (change?.type === OpType.Put && change.item.key === key) latest = change.item;
  }
  if (!latest) {
    log.info('no write of the host CA in the event: nothing to publish', { cluster: deps.clusterName, records: records.length });
    return { records: records.length };
  }
  const pin = pinOf(latest, deps.clusterName);
  await publishCaPin(deps.ssm, deps.clusterName, pin);
  return { records: records.length, caPin: pin, parameter: SsmPaths.caPin(deps.clusterName) };
}

/** The Lambda handler: the cluster from the environment, SSM with the function's role. */
export async function handler(event: unknown): Promise<PinPublication> {
  const env = readClusterEnv();
  const ssm = new SSMClient({ region: env.region });
  try {
    return await publishFromStream(event, { ssm, clusterName: env.clusterName });
  } finally {
    ssm.destroy();
  }
}
