/**
 * The gateway's DynamoDB and DynamoDB Streams route (both signed as `dynamodb`; `X-Amz-Target`
 * `DynamoDB_20120810.<Op>` or `DynamoDBStreams_20120810.<Op>`), forwarded to DynamoDB Local.
 *
 * IAM calls: `dynamodb:<Op>` on the table (`TableName`, a name or an ARN), on
 * `table/<t>/index/<IndexName>` for a Query or Scan of an index, once per table of a batch's
 * `RequestItems`; a transaction is checked as its items' own actions (`PutItem`, `UpdateItem`,
 * `DeleteItem`, `ConditionCheckItem`, `GetItem`) with `dynamodb:EnclosingOperation`, as AWS does.
 * Streams calls are on the stream ARN (`StreamArn`, or the one a shard iterator starts with),
 * ListStreams on `table/<t>/stream/*`. Calls without a table (ListTables, ...) are on `*`.
 *
 * DynamoDB Local names its ARNs `arn:aws:dynamodb:ddblocal:000000000000:...`: the route rewrites
 * them to the deployment's region and account in answers (and back in requests), so callers see
 * the ARNs AWS would give them (`arn.table`, `arn.stream`), shard iterators included.
 */
import { crc32 } from 'node:zlib';
import type { AwsCall } from '../types';
import { ACCOUNT, arn, PARTITION, REGION } from '../types';
import type { ServiceHandler } from './gateway';
import { Upstream } from './forward';
import { jsonRequest, refusal } from './protocol';

const LOCAL_PREFIX = `arn:${PARTITION}:dynamodb:ddblocal:000000000000:`;
const OUR_PREFIX = `arn:${PARTITION}:dynamodb:${REGION}:${ACCOUNT}:`;

type Call = Omit<AwsCall, 'caller'>;
type Input = Record<string, any>;

const tableArn = (nameOrArn: string) => (nameOrArn.startsWith('arn:') ? nameOrArn : arn.table(nameOrArn));

const TRANSACT_ACTIONS: Readonly<Record<string, string>> = {
  Put: 'dynamodb:PutItem',
  Update: 'dynamodb:UpdateItem',
  Delete: 'dynamodb:DeleteItem',
  ConditionCheck: 'dynamodb:ConditionCheckItem',
  Get: 'dynamodb:GetItem',
};

/** The IAM calls of one DynamoDB operation. */
export function dynamodbCalls(op: string, input: Input): Call[] {
  const action = `dynamodb:${op}`;
  if (op === 'TransactWriteItems' || op === 'TransactGetItems') {
    const seen = new Map<string, Call>();
    for (const item of (input.TransactItems ?? []) as Input[]) {
      for (const [kind, spec] of Object.entries(item)) {
        const call = { action: TRANSACT_ACTIONS[kind] ?? `dynamodb:${kind}`, resource: tableArn(String(spec?.TableName)), context: { 'dynamodb:EnclosingOperation': op } };
        seen.set(`${call.action} ${call.resource}`, call);
      }
    }
    return [...seen.values()];
  }
  if (op === 'BatchGetItem' || op === 'BatchWriteItem') return Object.keys(input.RequestItems ?? {}).map((t) => ({ action, resource: tableArn(t) }));
  if (op === 'ListStreams') return [{ action, resource: input.TableName ? `${tableArn(input.TableName)}/stream/*` : '*' }];
  if (typeof input.StreamArn === 'string') return [{ action, resource: input.StreamArn }];
  if (typeof input.ShardIterator === 'string') return [{ action, resource: input.ShardIterator.split('|')[0] }];
  if (typeof input.TableName === 'string') {
    const table = tableArn(input.TableName);
    return [{ action, resource: (op === 'Query' || op === 'Scan') && input.IndexName ? `${table}/index/${input.IndexName}` : table }];
  }
  const other = input.TableArn ?? input.ResourceArn ?? input.ExportArn ?? input.BackupArn;
  return [{ action, resource: typeof other === 'string' ? other : '*' }];
}

/** The DynamoDB route over DynamoDB Local at `endpoint`. */
export function dynamodbRoute(endpoint: string): { handler: ServiceHandler; close: () => void } {
  const upstream = new Upstream('DynamoDB Local', endpoint);
  const handler: ServiceHandler = async (req, authorize) => {
    const { op, input } = jsonRequest(req, ['DynamoDB_20120810', 'DynamoDBStreams_20120810']);
    const denied = refusal('dynamodb', req.caller, authorize, dynamodbCalls(op, input));
    if (denied) return denied;
    const body = Buffer.from(req.body.toString('utf8').split(OUR_PREFIX).join(LOCAL_PREFIX));
    const answer = await upstream.send('POST', '/', req.headers, body);
    const text = Buffer.from(answer.body).toString('utf8').split(LOCAL_PREFIX).join(OUR_PREFIX).split('"awsRegion":"ddblocal"').join(`"awsRegion":"${REGION}"`);
    const out = Buffer.from(text);
    return { ...answer, headers: { ...answer.headers, 'x-amz-crc32': String(crc32(out) >>> 0) }, body: out };
  };
  return { handler, close: () => upstream.close() };
}
