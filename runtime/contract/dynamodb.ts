/**
 * The DynamoDB layouts (formats.md §5.3 and §6.4) that the runtime creates when a table is missing
 * (runtime/backend/dynamodb.ts, runtime/events/dynamodb.ts) and that the CDK app declares (lib/storage.ts).
 */

/**
 * Cluster state: one partition (every item's `HashKey` is `hashKeyValue`), items sorted by `FullPath`,
 * `hashKeyValue` followed by the backend key (runtime/contract/keys.ts); a TTL and a NEW_IMAGE stream.
 */
export const StateTableSchema = { partitionKey: 'HashKey', sortKey: 'FullPath', ttl: 'Expires', hashKeyValue: 'teleport' } as const;

/** The `FullPath` of the state table item holding backend key `key` (e.g. `teleport/authorities/host/acme`). */
export function stateFullPath(key: string): string {
  return StateTableSchema.hashKeyValue + key;
}

/** Audit events: by session and index, with a time-search index. */
export const EventsTableSchema = {
  partitionKey: 'SessionID',
  sortKey: 'EventIndex',
  ttl: 'Expires',
  timeSearchIndex: 'timesearch',
  indexPartitionKey: 'EventNamespace',
  indexSortKey: 'CreatedAt',
} as const;
