/**
 * The DynamoDB layouts (formats.md §5.3 and §6.4) that the runtime creates when a table is missing
 * (runtime/backend/dynamodb.ts, runtime/events/dynamodb.ts) and that the CDK app declares (lib/storage.ts).
 */

/** Cluster state: one partition, items sorted by key; a TTL and a NEW_IMAGE stream. */
export const StateTableSchema = { partitionKey: 'HashKey', sortKey: 'FullPath', ttl: 'Expires' } as const;

/** Audit events: by session and index, with a time-search index. */
export const EventsTableSchema = {
  partitionKey: 'SessionID',
  sortKey: 'EventIndex',
  ttl: 'Expires',
  timeSearchIndex: 'timesearch',
  indexPartitionKey: 'EventNamespace',
  indexSortKey: 'CreatedAt',
} as const;
