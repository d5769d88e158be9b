/**
 * DynamoDB Local for tests: the process (sim/aws/dynamodb-local.ts) and what tests read from it:
 * a table's items, a stream's records, and the events Lambda would build from them.
 */

import { AttributeValue, DescribeTableCommand, ScanCommand } from '@aws-sdk/client-dynamodb';
import { DescribeStreamCommand, DynamoDBStreamsClient, GetRecordsCommand, GetShardIteratorCommand, _Record } from '@aws-sdk/client-dynamodb-streams';
import { DynamoDbLocal, LOCAL_CREDENTIALS, LOCAL_REGION } from '../../sim/aws/dynamodb-local';
import { lambdaJson } from '../../sim/lambda/streams';

export { DYNAMODB_LOCAL_DIR, DynamoDbLocal, LOCAL_CREDENTIALS, LOCAL_REGION } from '../../sim/aws/dynamodb-local';
export type { DynamoDbLocalOptions } from '../../sim/aws/dynamodb-local';

/** Every item of a table, binary attributes as UTF-8 text: for tests that look for what must not be stored. */
export async function scanTable(local: DynamoDbLocal, table: string): Promise<Record<string, string>[]> {
  const client = local.client();
  const text = (v: AttributeValue): string => (v.B ? Buffer.from(v.B).toString('utf8') : v.S ?? v.N ?? JSON.stringify(v));
  try {
    const items: Record<string, string>[] = [];
    let start: Record<string, AttributeValue> | undefined;
    do {
      const out = await client.send(new ScanCommand({ TableName: table, ConsistentRead: true, ...(start ? { ExclusiveStartKey: start } : {}) }));
      for (const item of out.Items ?? []) items.push(Object.fromEntries(Object.entries(item).map(([k, v]) => [k, text(v)])));
      start = out.LastEvaluatedKey;
    } while (start);
    return items;
  } finally {
    client.destroy();
  }
}

/** Every record of a table's stream so far, oldest first (each shard from its trim horizon to its end), as the SDK returns them. */
export async function readStream(local: DynamoDbLocal, table: string): Promise<{ streamArn: string; records: _Record[] }> {
  const db = local.client();
  const streams = new DynamoDBStreamsClient({ endpoint: local.endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS, maxAttempts: 2 });
  try {
    const streamArn = (await db.send(new DescribeTableCommand({ TableName: table }))).Table?.LatestStreamArn;
    if (!streamArn) throw new Error(`table ${table} has no stream`);
    const shards = (await streams.send(new DescribeStreamCommand({ StreamArn: streamArn }))).StreamDescription?.Shards ?? [];
    const records: _Record[] = [];
    for (const shard of shards) {
      let iterator = (await streams.send(new GetShardIteratorCommand({ StreamArn: streamArn, ShardId: shard.ShardId, ShardIteratorType: 'TRIM_HORIZON' }))).ShardIterator;
      while (iterator) {
        const page = await streams.send(new GetRecordsCommand({ ShardIterator: iterator }));
        records.push(...(page.Records ?? []));
        // An open shard hands out an iterator forever: its end, for now, is the first empty page.
        iterator = page.Records?.length ? page.NextShardIterator : undefined;
      }
    }
    return { streamArn, records };
  } finally {
    db.destroy();
    streams.destroy();
  }
}

/** The event Lambda's event source mapping builds from stream records: `{ Records }`, each with its `eventSourceARN`. */
export function lambdaStreamEvent(records: _Record[], streamArn: string): { Records: Record<string, any>[] } {
  return { Records: records.map((r) => ({ ...(lambdaJson(r) as Record<string, any>), eventSourceARN: streamArn })) };
}

/**
 * Whether a Lambda event filter pattern (`FilterCriteria.Filters[].Pattern`) matches a record: each
 * key of the pattern must match, an array lists the accepted values (exact, or `{ prefix }`).
 * Any other operator is refused, so a filter this cannot evaluate fails the test instead of passing it.
 */
export function matchesFilter(pattern: Record<string, unknown>, record: unknown): boolean {
  return Object.entries(pattern).every(([k, want]) => {
    const got = (record as Record<string, unknown> | undefined)?.[k];
    if (Array.isArray(want)) {
      return want.some((w) => {
        if (typeof w !== 'object' || w === null) return got === w;
        const ops = Object.keys(w);
        if (ops.length === 1 && ops[0] === 'prefix') return typeof got === 'string' && got.startsWith((w as { prefix: string }).prefix);
        throw new Error(`filter operator not evaluated here: ${JSON.stringify(w)}`);
      });
    }
    if (want && typeof want === 'object') return matchesFilter(want as Record<string, unknown>, got);
    throw new Error(`not a filter pattern value: ${JSON.stringify(want)}`);
  });
}

/** The `storage:` lines of a teleport.yaml for a cluster on DynamoDB Local: its state in `table`, its audit events in `eventsTable` when given. */
export function dynamoDbStorage(local: DynamoDbLocal, o: { table?: string; eventsTable?: string; pollStreamPeriod?: string } = {}): string[] {
  return [
    'storage:',
    '  type: dynamodb',
    `  region: ${LOCAL_REGION}`,
    `  endpoint: ${local.endpoint}`,
    `  table_name: ${o.table ?? 'teleport-state'}`,
    '  access_key: local',
    '  secret_key: local',
    ...(o.pollStreamPeriod ? [`  poll_stream_period: ${o.pollStreamPeriod}`] : []),
    ...(o.eventsTable ? [`  audit_events_uri: ["dynamodb://${o.eventsTable}"]`] : []),
  ];
}
